"""``make demo``: synthetic logs through the whole nightly Airflow DAG, then the report and a query.

Everything stays under the project: logs and warehouse in ``demo/``, Airflow's SQLite metadata
database in ``.airflow/``. Each day runs as ``airflow dags test seqrep_nightly <day + 1>`` (a run
processes the day before its logical time, like the scheduled run at the next midnight): the ETL
(seven ``spark-submit`` tasks, gates included), then for each method of the demo profile
train -> evaluate -> regression gate -> infer -> embeddings gate -> publish, then the report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from pipelines.config import Config, load_config
from pipelines.warehouse import PROJECT_ROOT, daterange

DEMO_CONFIG = PROJECT_ROOT / "configs" / "demo.yaml"


def airflow_env(config_file: Path, warehouse: Path) -> dict[str, str]:
    """Environment for running the project's DAGs with an embedded SQLite Airflow."""
    bin_dir = str(Path(sys.executable).parent)
    home = PROJECT_ROOT / ".airflow"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
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


def run_demo(cfg: Config | None = None) -> None:
    import pyarrow.parquet as pq

    from pipelines.cli import print_summary
    from pipelines.synthetic import write_logs

    cfg = load_config(DEMO_CONFIG) if cfg is None or cfg == Config() else cfg
    cfg_file = Path(os.environ.get("SEQREP_CONFIG") or DEMO_CONFIG)
    logs = Path(str(cfg.ingest.input)).parent
    warehouse = Path(cfg.warehouse)
    t0 = time.perf_counter()
    for folder in (logs, warehouse):
        shutil.rmtree(folder, ignore_errors=True)
    files = write_logs(cfg.synthetic, logs)
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    print(f"[demo] wrote {rows:,} synthetic events in {len(files)} daily logs under {logs}")
    env = airflow_env(cfg_file, warehouse)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "airflow", "pools", "set", "gpu", "1", "seqrep torch tasks (train, infer)"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    days = daterange(cfg.synthetic.start_date, cfg.synthetic.start_date + timedelta(days=cfg.synthetic.days - 1))
    for day in days:
        t = time.perf_counter()
        print(f"[demo] airflow dags test seqrep_nightly {day + timedelta(days=1)}  (processes {day})", flush=True)
        proc = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "seqrep_nightly",
                               (day + timedelta(days=1)).isoformat()], env=env, capture_output=True, text=True)
        if proc.returncode != 0:  # `airflow dags test` exits non-zero when the run failed
            sys.stdout.write(proc.stdout[-4000:])
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"[demo] the DAG run for {day} failed (exit {proc.returncode})")
        print(f"[demo]   done in {time.perf_counter() - t:.0f}s", flush=True)
    print_summary(cfg, days)
    show_results(cfg, days[-1])
    print(f"[demo] finished in {time.perf_counter() - t0:.0f}s; warehouse: {warehouse}")


def show_results(cfg: Config, day) -> None:
    """The last day's report path and a sample query on the published tables."""
    from pipelines.query import Query
    from pipelines.report import report_folder

    print(f"[demo] run report: {report_folder(cfg, day) / 'index.html'}")
    with Query(cfg.warehouse) as q:
        metrics = q.sql("SELECT method, round(value, 4) AS ndcg10 FROM metrics WHERE dt = ? AND split = 'test' "
                        "AND metric = 'ndcg' AND k = 10 ORDER BY method", [day]).to_pylist()
        print("[demo] test NDCG@10 as of", day, ", ".join(f"{r['method']} {r['ndcg10']}" for r in metrics))
        method = cfg.nightly.methods[0]
        user = q.sql("SELECT user_id FROM user_embeddings WHERE model = ? AND dt = ? ORDER BY n_events DESC LIMIT 1",
                     [method, day]).column(0)[0].as_py()
        print(f"[demo] seqrep query recommend {user} --method {method} --k 5 --config configs/demo.yaml")
        for r in q.recommend(user, method, k=5):
            print(f"         {r['rank']}. {r['domain']}/{r['item_id']}  score {r['score']:.3f}")
