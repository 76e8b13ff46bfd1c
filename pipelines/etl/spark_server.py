"""A long-lived Spark Connect server: one driver JVM for many short ``seqrep`` processes.

Each Spark task of the nightly DAG is otherwise a ``spark-submit`` that starts a JVM and a
driver (15-25 s on 2 cores) for a few seconds of work. With a server started once (by
``seqrep spark-server start``, ``seqrep demo``, the compose stack or a test fixture), tasks
are Spark Connect clients (``SPARK_REMOTE=sc://host:port``): a gRPC channel, no JVM of their
own. The server is ``spark-submit --class ...SparkConnectServer`` of the installed pyspark, with
the settings of ``pipelines.etl.spark.spark_settings``; on a cluster, give it the cluster's
master (``spark.master`` of the config) and it runs its jobs there.

Its pid and log live in the state folder (``SEQREP_CACHE``, default ``~/.cache/seqrep``), one
pair per port, so ``stop`` finds the process it started and no other.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pipelines.core.config import SparkConfig
from pipelines.core.errors import UsageError
from pipelines.etl.localfs import cache_dir
from pipelines.etl.processes import alive_pid, listening, require_free, stop_group
from pipelines.etl.spark import REMOTE_ENV, spark_settings

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
DEFAULT_PORT = 15002


def url(port: int, host: str = "127.0.0.1") -> str:
    return f"sc://{host}:{port}"


def pid_file(port: int) -> Path:
    return cache_dir() / f"spark-connect-{port}.pid"


def log_file(port: int) -> Path:
    return cache_dir() / f"spark-connect-{port}.log"


def running_pid(port: int) -> int | None:
    """The pid of the server this folder started on ``port``, if that process is alive."""
    return alive_pid(pid_file(port))


def command(cfg: SparkConfig, port: int) -> list[str]:
    """The ``spark-submit`` command line of the server."""
    import pyspark

    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    settings = {**spark_settings(cfg), "spark.connect.grpc.binding.port": str(port)}
    conf = [a for k, v in settings.items() for a in ("--conf", f"{k}={v}")]
    return [str(submit), "--class", SERVER_CLASS, "--master", cfg.master, "--driver-memory", cfg.driver_memory,
            "--name", f"seqrep Spark Connect :{port}", *conf, "spark-internal"]


def start(cfg: SparkConfig, port: int = DEFAULT_PORT, timeout: float = 180.0) -> tuple[int, bool]:
    """Start the server on ``port`` unless this folder's one runs there; ``(pid, started)``.
    Returns once it accepts connections; a server that dies or stays deaf is a clear error."""
    pid = running_pid(port)
    if pid:
        return pid, False
    require_free(port, "Spark Connect server")
    import pyspark

    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "MALLOC_ARENA_MAX": "2",
           "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop(REMOTE_ENV, None)  # the server is no client
    log_file(port).parent.mkdir(parents=True, exist_ok=True)
    with open(log_file(port), "w") as log:
        # A session of its own: the server outlives the command that started it, and a Ctrl-C
        # in that terminal does not reach it.
        proc = subprocess.Popen(command(cfg, port), stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file(port).write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while not listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(port)
            tail = log_file(port).read_text()[-2000:]
            raise UsageError(f"the Spark Connect server on port {port} did not start "
                             f"({'exited ' + str(proc.returncode) if proc.returncode is not None else 'timed out'}); "
                             f"its log, {log_file(port)}, ends:\n{tail}")
        time.sleep(0.5)
    return proc.pid, True


def stop(port: int = DEFAULT_PORT, timeout: float = 30.0) -> bool:
    """Stop this folder's server on ``port`` (SIGTERM, then SIGKILL); False when none ran."""
    pid = running_pid(port)
    pid_file(port).unlink(missing_ok=True)
    if pid is None:
        return False
    stop_group(pid, timeout)
    return True
