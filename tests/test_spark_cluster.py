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


def _logs(data_dir, root: Path) -> Path:
    """ml-100k's ratings of ``DAYS``, one Parquet log per day (the ``parquet`` adapter's input)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = np.loadtxt(data_dir("ml-100k") / "u.data", dtype=np.int64)
    for day in DAYS:
        lo = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())
        rows = raw[(raw[:, 3] >= lo) & (raw[:, 3] < lo + 86400)]
        (root / f"dt={day}").mkdir(parents=True)
        pq.write_table(pa.table({"event_id": [f"{u}-{i}" for u, i in rows[:, :2]], "user_id": rows[:, 0].astype(str),
                                 "item_id": rows[:, 1].astype(str), "event_type": ["rate"] * len(rows),
                                 "ts": rows[:, 3]}), root / f"dt={day}" / "part-0.parquet")
    return root


def _config(path: Path, logs: Path, events: Path | None = None) -> Path:
    conf = (f"  conf: {{spark.eventLog.enabled: 'true', spark.eventLog.dir: 'file://{events}', "
            f"spark.executor.memory: 768m}}\n" if events else "")
    path.write_text(f"spark:\n  shuffle_partitions: 4\n  driver_memory: 1g\n{conf}"
                    f"ingest:\n  source: parquet\n  name: ml100k\n  input: {logs}/dt={{date}}\n"
                    f"  columns: {{event_id: event_id}}\n")
    return path


def _etl(config: Path, wh: Path, env: dict[str, str]) -> None:
    for day in DAYS:
        cmd = [sys.executable, "-m", "pipelines.cli", "ingest", "--date", str(day), "--config", str(config),
               "--warehouse", str(wh)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    cmd = [sys.executable, "-m", "pipelines.cli", "etl", "--from", str(DAYS[0]), "--to", str(DAYS[-1]), "--no-gates",
           "--config", str(config), "--warehouse", str(wh)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]


def test_the_etl_on_a_two_worker_cluster_equals_local_mode(cluster, data_dir, tmp_path):
    logs = _logs(data_dir, tmp_path / "logs")
    events = tmp_path / "events"
    events.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SEQREP_SPARK_REMOTE")}
    _etl(_config(tmp_path / "cluster.yaml", logs, events), tmp_path / "on-cluster",
         {**env, "SEQREP_SPARK_MASTER": cluster.url})
    _etl(_config(tmp_path / "local.yaml", logs), tmp_path / "local", {**env, "SEQREP_SPARK_MASTER": "local[2]"})
    for table in ref.TABLES:
        a, b = ref.digest(tmp_path / "on-cluster", table), ref.digest(tmp_path / "local", table)
        assert a["rows"] > 0 or table == "quarantine/events", table
        assert a == b, f"{table}: the cluster's rows differ from local mode's"
    # the event logs: each application's tasks ran on both workers' executors
    apps = sorted(events.iterdir())
    assert len(apps) == 4  # three ingests and the ETL
    executors = set()
    for line in apps[-1].read_text().splitlines():
        event = json.loads(line)
        if event["Event"] == "SparkListenerTaskEnd":
            executors.add(event["Task Info"]["Executor ID"])
    assert len(executors) == 2, executors
    assert sum(w["state"] == "ALIVE" for w in cluster.workers()) == 2
