"""The ETL on a real Spark standalone cluster (a master and two workers of the installed pyspark,
``seqrep spark-cluster``) gives the rows of local mode, and its tasks ran on both executors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DAYS = [date(1997, 11, 12), date(1997, 11, 13), date(1997, 11, 14)]
_spec = importlib.util.spec_from_file_location("etl_duckdb", ROOT / "bench" / "etl_duckdb.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from pipelines.etl import spark_cluster
    from pipelines.etl.processes import free_port

    port = free_port()
    found, started = spark_cluster.start(port, workers=2, cores=1, memory="1g")
    assert started and len(found.pids) == 3
    yield found
    assert spark_cluster.stop(port)
    assert spark_cluster.running(port) is None


def _log(data_dir, path: Path) -> Path:
    """ml-100k's ratings of ``DAYS`` as one Parquet log (bulk-imported: each row to its day)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = np.loadtxt(data_dir("ml-100k") / "u.data", dtype=np.int64)
    lo = int(datetime(DAYS[0].year, DAYS[0].month, DAYS[0].day, tzinfo=timezone.utc).timestamp())
    rows = raw[(raw[:, 3] >= lo) & (raw[:, 3] < lo + 86400 * len(DAYS))]
    pq.write_table(pa.table({"event_id": [f"{u}-{i}" for u, i in rows[:, :2]], "user_id": rows[:, 0].astype(str),
                             "item_id": rows[:, 1].astype(str), "event_type": ["rate"] * len(rows), "ts": rows[:, 3]}),
                   path)
    return path


def _config(path: Path, log: Path, events: Path | None = None) -> Path:
    conf = (f"  conf: {{spark.eventLog.enabled: 'true', spark.eventLog.dir: 'file://{events}', "
            f"spark.eventLog.compress: 'false', "
            f"spark.executor.memory: 768m}}\n" if events else "")
    path.write_text(f"spark:\n  shuffle_partitions: 4\n  driver_memory: 1g\n{conf}"
                    f"ingest:\n  source: parquet\n  name: ml100k\n  input: {log}\n  columns: {{event_id: event_id}}\n")
    return path


def _on_cluster(config: Path, wh: Path, env: dict[str, str]) -> None:
    """``seqrep ingest`` and ``seqrep etl`` as from a shell, their Spark driver's master the cluster."""
    for args in (["ingest"], ["etl", "--from", str(DAYS[0]), "--to", str(DAYS[-1]), "--no-gates"]):
        out = subprocess.run([sys.executable, "-m", "pipelines.cli", *args, "--config", str(config), "--warehouse", str(wh)],
                             env=env, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]


def _task_executors(app: Path) -> set[str]:
    """Executor ids of the tasks in one application's event log (a file, or Spark 4's rolling
    ``eventlog_v2_*`` folder of files)."""
    found = set()
    for part in sorted(app.glob("events_*")) if app.is_dir() else [app]:  # beside them: an appstatus marker
        for line in part.read_text().splitlines():
            event = json.loads(line)
            if event["Event"] == "SparkListenerTaskEnd":
                found.add(event["Task Info"]["Executor ID"])
    return found


def test_the_etl_on_a_two_worker_cluster_equals_local_mode(cluster, spark, data_dir, tmp_path):
    from pipelines.core.config import load_config
    from pipelines.etl import ingest
    from pipelines.nightly import etl

    log = _log(data_dir, tmp_path / "ratings.parquet")
    events = tmp_path / "events"
    events.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SEQREP_SPARK_REMOTE")}
    _on_cluster(_config(tmp_path / "cluster.yaml", log, events), tmp_path / "on-cluster",
                {**env, "SEQREP_SPARK_MASTER": cluster.url})
    cfg = load_config(_config(tmp_path / "local.yaml", log), warehouse=tmp_path / "local")  # this session's local[2]
    ingest.run(spark, cfg)
    etl.run(spark, cfg, DAYS, gates=False)
    for table in ref.TABLES:
        a, b = ref.digest(tmp_path / "on-cluster", table), ref.digest(tmp_path / "local", table)
        assert a["rows"] > 0 or table == "quarantine/events", table
        assert a == b, f"{table}: the cluster's rows differ from local mode's"
    # the event logs: the ETL's tasks ran on both workers' executors
    apps = sorted(events.iterdir())
    assert len(apps) == 2  # the ingest and the ETL
    assert _task_executors(apps[-1]) == {"0", "1"}
    assert sum(w["state"] == "ALIVE" for w in cluster.workers()) == 2
