"""``make demo``: synthetic logs through the whole nightly Airflow DAG, then the report and a query.

Everything stays under the current folder (the project's, for ``make demo``): logs and warehouse
in ``demo/``, the demo's resolved config in ``demo/seqrep.yaml``, Airflow's SQLite metadata
database in ``.airflow/``. Each day runs as ``airflow dags test seqrep_nightly <day + 1>`` (a
run processes the day before its logical time, like the scheduled run at the next midnight): the
ETL (seven Spark tasks, gates included, each a client of one Spark Connect server that the demo
starts and stops: no JVM start per task), then for each method of the demo profile
train -> evaluate -> regression gate -> infer -> embeddings gate -> publish, then the report.
Every task's ``seqrep`` process is a client of a task server that the demo also starts and stops
(``pipelines/nightly/task_server.py``): no import of torch or Great Expectations per task.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import yaml

from pipelines.core.config import Config, load_config
from pipelines.core.privacy import read_key
from pipelines.core.resources import CONFIGS_DIR, DAGS_DIR
from pipelines.core.warehouse import Warehouse, daterange
from pipelines.etl import spark_server
from pipelines.nightly import task_server

#: The demo profile (``configs/demo.yaml``); its paths are replaced by ones under ``demo/``.
DEMO_CONFIG = CONFIGS_DIR / "demo.yaml"


def airflow_env(config_file: Path, warehouse: Path, home: Path | None = None) -> dict[str, str]:
    """Environment for running the project's DAGs with an embedded SQLite Airflow in ``home``
    (default ``./.airflow``)."""
    bin_dir = str(Path(sys.executable).parent)
    home = (home or Path.cwd() / ".airflow").resolve()
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_SEQREP_SPARK": os.environ.get("AIRFLOW_CONN_SEQREP_SPARK", '{"conn_type": "spark", "host": "local[2]"}'),
        "SEQREP_CONFIG": str(config_file),
        "SEQREP_WAREHOUSE": str(warehouse),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }


def demo_config(folder: Path, profile: Path = DEMO_CONFIG) -> Path:
    """The demo profile with its logs and warehouse under ``folder``, written as
    ``folder/seqrep.yaml`` (the DAG's tasks read it)."""
    data = yaml.safe_load(profile.read_text())
    data["warehouse"] = str(folder / "warehouse")
    data["ingest"]["input"] = str(folder / "logs" / "dt={date}")
    folder.mkdir(parents=True, exist_ok=True)
    if data.get("privacy", {}).get("pseudonymize"):
        data["privacy"]["key_file"] = str(demo_key(folder / "pseudonym.key"))
    path = folder / "seqrep.yaml"
    path.write_text(f"# {profile.name} with its paths under {folder} (written by `seqrep demo`)\n"
                    + yaml.safe_dump(data, sort_keys=False))
    return path


def demo_key(path: Path) -> Path:
    """The demo's pseudonym key: 32 random bytes (hex), readable by this user only, made once."""
    import secrets

    if not path.is_file():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32) + "\n")
    return path


def run_demo(config_file: Path | None = None) -> None:
    """Generate the logs, run the DAG for each day, print the summary, the report and a query.

    ``config_file``: a profile of one's own (synthetic source, ``ingest.input`` ending in
    ``dt={date}``); without one, the demo profile under ``./demo``."""
    import pyarrow.parquet as pq

    from pipelines.etl.summary import print_summary
    from pipelines.etl.synthetic_logs import write_logs

    t0 = time.perf_counter()
    cfg_file = Path(config_file).resolve() if config_file else demo_config(Path.cwd().resolve() / "demo")
    cfg = load_config(cfg_file)
    logs, warehouse = Path(str(cfg.ingest.input)).parent, Path(cfg.warehouse)
    for path in (logs, warehouse):
        shutil.rmtree(path, ignore_errors=True)
    files = write_logs(cfg.synthetic, logs)
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    print(f"[demo] wrote {rows:,} synthetic events in {len(files)} daily logs under {logs}")
    env = airflow_env(cfg_file, warehouse)
    Path(env["AIRFLOW_HOME"]).mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "airflow", "pools", "set", "gpu", "1", "seqrep torch tasks (train, infer)"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    start = cfg.synthetic.start_date
    days = daterange(start, start + timedelta(days=cfg.synthetic.days - 1))
    t = time.perf_counter()
    pid, started = spark_server.start(cfg.spark)
    env["SEQREP_SPARK_REMOTE"] = spark_server.url(spark_server.DEFAULT_PORT)
    print(f"[demo] Spark Connect server {env['SEQREP_SPARK_REMOTE']} (pid {pid}, "
          f"{f'started in {time.perf_counter() - t:.0f}s' if started else 'already running'}): the ETL tasks are its clients")
    t = time.perf_counter()
    sock, pid, forks = task_server.start()
    env[task_server.SERVER_ENV] = str(sock)
    print(f"[demo] task server {sock} (pid {pid}, {f'started in {time.perf_counter() - t:.0f}s' if forks else 'already running'}):"
          " each task's seqrep command is its fork, with torch and Great Expectations already imported")
    try:
        for day in days:
            run_day(day, env)
    finally:
        if started:
            spark_server.stop()
        if forks:
            task_server.stop(sock)
    print_summary(cfg, days)
    show_results(cfg, days[-1], cfg_file)
    print(f"[demo] finished in {time.perf_counter() - t0:.0f}s; warehouse: {warehouse}")


def run_day(day: date, env: dict[str, str]) -> None:
    """``airflow dags test seqrep_nightly <day + 1>``: the nightly run that processes ``day``."""
    t = time.perf_counter()
    print(f"[demo] airflow dags test seqrep_nightly {day + timedelta(days=1)}  (processes {day})", flush=True)
    proc = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "seqrep_nightly",
                           (day + timedelta(days=1)).isoformat()], env=env, capture_output=True, text=True)
    if proc.returncode != 0:  # `airflow dags test` exits non-zero when the run failed
        sys.stdout.write(proc.stdout[-4000:])
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"[demo] the DAG run for {day} failed (exit {proc.returncode})")
    print(f"[demo]   done in {time.perf_counter() - t:.0f}s", flush=True)


def show_results(cfg: Config, day: date, cfg_file: Path) -> None:
    """The last day's report path and a sample query on the published tables."""
    from pipelines.serving.query import Query

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    print(f"[demo] run report: {Warehouse(cfg.warehouse).report_folder(day) / 'index.html'}")
    # The most active user by the id in the logs (the warehouse may hold only its pseudonym).
    logs = pq.read_table(Path(str(cfg.ingest.input)).parent, columns=["uid"]).column("uid")
    counts = [c for c in pc.value_counts(logs).to_pylist() if c["values"] and c["values"].strip()]
    user = max(counts, key=lambda c: (c["counts"], c["values"]))["values"]
    key = read_key(cfg.privacy.key_env, cfg.privacy.key_file)
    with Query(cfg.warehouse, key=key) as q:
        metrics = q.sql("SELECT method, round(value, 4) AS ndcg10 FROM metrics WHERE dt = ? AND split = 'test' "
                        "AND metric = 'ndcg' AND k = 10 ORDER BY method", [day]).to_pylist()
        print("[demo] test NDCG@10 as of", day, ", ".join(f"{r['method']} {r['ndcg10']}" for r in metrics))
        method = cfg.nightly.methods[0]
        shown = os.path.relpath(cfg_file) if Path(cfg_file).is_relative_to(Path.cwd()) else cfg_file
        print(f"[demo] seqrep query recommend {user} --method {method} --k 5 --config {shown}")
        for r in q.recommend(user, method, k=5):
            print(f"         {r['rank']}. {r['domain']}/{r['item_id']}  score {r['score']:.3f}")
