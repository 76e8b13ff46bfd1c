"""The nightly DAG: integrity, and a real run with dag.test() (Airflow + SparkSubmitOperator + Spark)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """A throwaway SQLite Airflow, set up before anything imports airflow in this process."""
    from pipelines.demo import airflow_env

    home = tmp_path_factory.mktemp("airflow")
    env = airflow_env(Path(""), Path(""))
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_SEQREP_SPARK": '{"conn_type": "spark", "host": "local[2]"}',
    })
    for key in ("SEQREP_CONFIG", "SEQREP_WAREHOUSE"):
        env.pop(key)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AIRFLOW", "PYSPARK", "PATH", "SPARK"))})
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env={**os.environ}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return home


def test_dag_files_import_cleanly_and_stay_light(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.get_dag("seqrep_nightly")
    assert [t.task_id for t in dag.topological_sort()] == [
        "ingest", "gate_raw", "clean", "gate_clean", "sessionize", "gate_sessions", "sequences", "gate_sequences",
        "graphs", "gate_graphs"]
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert {t.task_id for t in dag.tasks if t.depends_on_past} == {"sessionize", "sequences"}
    # No heavy import at module top level: parsing the file must not load Spark, torch or pandas.
    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
            "print(','.join(m for m in ('pyspark', 'torch', 'pandas', 'pipelines.ingest') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(DAGS / "seqrep_nightly.py")], capture_output=True,
                         text=True, env={**os.environ}, check=True).stdout.strip().splitlines()[-1:]
    assert out in ([], [""]), f"heavy modules imported by the DAG file: {out}"


def test_nightly_dag_runs_a_day_and_a_bad_day_stops_at_its_gate(airflow_home, tmp_path):
    """Synthetic logs through dag.test(): day 1 passes every gate; day 2's log was written in local
    time (UTC+8) as if UTC, so its evening lands after the day and clean quarantines it as
    ts_future; with drift as a failure, the clean gate stops the day: nothing after it is written,
    and day 1's tables stay as they were."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.config import SyntheticConfig
    from pipelines.synthetic import write_logs
    from pipelines.warehouse import Warehouse

    logs, wh = tmp_path / "logs", tmp_path / "wh"
    write_logs(SyntheticConfig(days=2, events_per_day=3000, users=300, items_per_domain=200, start_date=date(2024, 1, 1)), logs)
    bad = logs / "dt=2024-01-02" / "part-0.parquet"
    table = pq.read_table(bad)
    shifted = pc.add(table.column("event_time_ms"), 8 * 3_600_000)  # local times read as UTC: 8 hours late
    pq.write_table(table.set_column(table.schema.get_field_index("event_time_ms"), "event_time_ms", shifted), bad)
    cfg_file = tmp_path / "seqrep.yaml"
    cfg_file.write_text(f"spark:\n  shuffle_partitions: 2\ngates:\n  drift: fail\n"
                        f"ingest:\n  source: synthetic\n  input: {logs}/dt={{date}}\n")
    dag = DagBag(dag_folder=str(DAGS)).get_dag("seqrep_nightly")
    conf = {"warehouse": str(wh), "config": str(cfg_file), "driver_memory": "1g"}

    def run_day(day: date):
        # A run processes its data interval: the day before its logical time.
        logical = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)
        return dag.test(logical_date=logical, run_conf=conf)

    w = Warehouse(wh)
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    run = run_day(d1)
    assert str(run.state).endswith("success"), f"day 1: {run.state}"
    day1 = {t: sorted(p.name for p in w.partition(t, d1).iterdir())
            for t in ("clean/events", "sessions", "sequences", "graphs/item_transitions")}
    for gate in ("raw", "clean", "sessions", "sequences", "graphs"):
        assert (w.root / "_gates" / f"stage={gate}" / f"dt={d1}.json").is_file(), gate

    run = run_day(d2)
    assert str(run.state).endswith("failed"), f"day 2: {run.state}"
    states = {ti.task_id: str(ti.state).rsplit(".", 1)[-1].lower() for ti in run.get_task_instances()}
    assert states["gate_clean"] == "failed" and states["clean"] == "success"
    assert all(states[t] == "upstream_failed" for t in ("sessionize", "gate_sessions", "sequences", "graphs")), states
    assert "quarantine_share" in (w.root / "_gates" / "stage=clean" / f"dt={d2}.md").read_text()
    for table in ("sessions", "sequences", "splits", "graphs/item_transitions", "graphs/user_item"):
        assert not w.has_partition(table, d2), f"{table} written for the failed day"
    for t, files in day1.items():
        assert sorted(p.name for p in w.partition(t, d1).iterdir()) == files, f"day 1's {t} changed"
    m2 = w.read_manifest("clean", f"dt={d2}")
    assert m2["quarantine_by_reason"].get("ts_future", 0) > 0.25 * m2["rows_in"]
    assert m2["rows_in"] == m2["rows_out"] + m2["rows_quarantined"]
