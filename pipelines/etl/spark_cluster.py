"""A Spark standalone cluster on this machine: a master and N workers from the installed pyspark.

``seqrep spark-cluster start`` runs ``spark-class org.apache.spark.deploy.master.Master`` and
``...deploy.worker.Worker`` (the pyspark wheel has ``spark-class`` but no ``sbin`` scripts) on
loopback, each with its own ports and work folder, in sessions of their own; it returns once every
worker has registered with the master. The ETL then runs against ``spark://127.0.0.1:PORT``
through ``SEQREP_SPARK_MASTER`` (or ``spark.master``, or the Airflow connection ``seqrep_spark``)
with nothing else changed: the executors are other JVMs, so the warehouse must be a path they see
(here the same disk; on a real cluster a shared mount or object storage, README "Run on a
cluster"). The compose stack runs the same classes as services.

State (pids, logs, work folders) lives under the state folder (``SEQREP_CACHE``) in
``spark-cluster-<port>/``; ``stop`` kills the processes it started there, by pid.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipelines.core.errors import UsageError
from pipelines.etl.localfs import cache_dir
from pipelines.etl.processes import alive_pid, free_port, listening, require_free, stop_group

DEFAULT_PORT = 7077
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


@dataclass(frozen=True)
class Cluster:
    """A started cluster: its master URL, web UI port and the pids of its processes."""

    port: int
    ui_port: int
    pids: dict[str, int]

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def workers(self) -> list[dict]:
        """The master's view of its workers (its JSON status page)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
            return json.load(r).get("workers", [])


def state_dir(port: int) -> Path:
    return cache_dir() / f"spark-cluster-{port}"


def _env() -> dict[str, str]:
    import pyspark

    home = str(Path(pyspark.__file__).parent)
    return {**os.environ, "SPARK_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "true",
            "MALLOC_ARENA_MAX": "2", "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def _spawn(name: str, args: list[str], state: Path) -> int:
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    with open(state / f"{name}.log", "w") as log:
        proc = subprocess.Popen([str(spark_class), *args], stdout=log, stderr=subprocess.STDOUT, env=_env(),
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (state / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def running(port: int = DEFAULT_PORT) -> Cluster | None:
    """The cluster this state folder started on ``port``, if its master is alive."""
    state = state_dir(port)
    master = alive_pid(state / "master.pid")
    if master is None:
        return None
    pids = {p.stem: pid for p in sorted(state.glob("*.pid")) if (pid := alive_pid(p)) is not None}
    return Cluster(port, int((state / "ui_port").read_text()), pids)


def start(port: int = DEFAULT_PORT, workers: int = 2, cores: int = 1, memory: str = "2g",
          timeout: float = 120.0) -> tuple[Cluster, bool]:
    """Start a master on ``port`` and ``workers`` workers of ``cores`` cores and ``memory`` each,
    unless this folder's cluster runs there; ``(cluster, started)``. Returns once every worker is
    registered (a process that dies or a worker that never registers is a clear error)."""
    found = running(port)
    if found:
        return found, False
    require_free(port, "Spark standalone cluster")
    state = state_dir(port)
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    ui_port = free_port()
    (state / "ui_port").write_text(str(ui_port))
    pids = {"master": _spawn("master", [MASTER_CLASS, "--host", "127.0.0.1", "--port", str(port),
                                        "--webui-port", str(ui_port)], state)}
    cluster = Cluster(port, ui_port, pids)
    _wait(cluster, lambda: listening(port) and listening(ui_port), "the master", timeout)
    for i in range(1, workers + 1):
        (state / f"work-{i}").mkdir()
        pids[f"worker-{i}"] = _spawn(f"worker-{i}", [
            WORKER_CLASS, cluster.url, "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
            "--webui-port", str(free_port()), "--work-dir", str(state / f"work-{i}")], state)
    _wait(cluster, lambda: sum(w.get("state") == "ALIVE" for w in cluster.workers()) >= workers,
          f"{workers} worker(s) to register", timeout)
    return cluster, True


def _wait(cluster: Cluster, ready, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:  # the status page is not up yet
            pass
        dead = [name for name, pid in cluster.pids.items() if alive_pid(state_dir(cluster.port) / f"{name}.pid") != pid]
        if dead or time.monotonic() > deadline:
            stop(cluster.port)
            log = state_dir(cluster.port) / f"{(dead or ['master'])[0]}.log"
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise UsageError(f"the Spark cluster on port {cluster.port} did not start: waiting for {what}, "
                             f"{'exited: ' + ', '.join(dead) if dead else 'timed out'}; {log} ends:\n{tail}")
        time.sleep(0.5)


def stop(port: int = DEFAULT_PORT) -> bool:
    """Stop the workers, then the master, this folder started on ``port``; False when none ran."""
    state = state_dir(port)
    pid_files = sorted(state.glob("*.pid"), key=lambda p: p.stem == "master")  # workers first
    stopped = False
    for path in pid_files:
        pid = alive_pid(path)
        path.unlink(missing_ok=True)
        if pid is not None:
            stop_group(pid)
            stopped = True
    return stopped
