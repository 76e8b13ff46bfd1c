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
    assert [t.task_id for t in dag.topological_sort()] == ["ingest", "clean", "sessionize", "sequences", "graphs"]
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert {t.task_id for t in dag.tasks if t.depends_on_past} == {"sessionize", "sequences"}
    # No heavy import at module top level: parsing the file must not load Spark, torch or pandas.
    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
            "print(','.join(m for m in ('pyspark', 'torch', 'pandas', 'pipelines.ingest') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(DAGS / "seqrep_nightly.py")], capture_output=True,
                         text=True, env={**os.environ}, check=True).stdout.strip().splitlines()[-1:]
    assert out in ([], [""]), f"heavy modules imported by the DAG file: {out}"


def test_nightly_dag_runs_two_days_end_to_end(airflow_home, tmp_path):
    """Synthetic logs (the demo's generator), two nightly runs through dag.test()."""
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.config import SyntheticConfig
    from pipelines.synthetic import write_logs
    from pipelines.warehouse import Warehouse

    logs, wh = tmp_path / "logs", tmp_path / "wh"
    write_logs(SyntheticConfig(days=2, events_per_day=3000, users=300, items_per_domain=200, start_date=date(2024, 1, 1)), logs)
    cfg_file = tmp_path / "seqrep.yaml"
    cfg_file.write_text(f"spark:\n  shuffle_partitions: 2\ningest:\n  source: synthetic\n  input: {logs}/dt={{date}}\n")
    dag = DagBag(dag_folder=str(DAGS)).get_dag("seqrep_nightly")
    conf = {"warehouse": str(wh), "config": str(cfg_file), "driver_memory": "1g"}
    for day in (date(2024, 1, 1), date(2024, 1, 2)):
        # A run processes its data interval: the day before its logical time.
        run = dag.test(logical_date=datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1),
                       run_conf=conf)
        assert str(run.state).endswith("success"), f"run for {day}: {run.state}"
    w = Warehouse(wh)
    for table in ("raw/events/source=synthetic", "clean/events", "quarantine/events", "sessions", "sequences",
                  "splits", "vocab/items", "graphs/item_transitions", "graphs/user_item"):
        assert w.partition_dates(table)[-2:] == [date(2024, 1, 1), date(2024, 1, 2)] or table.startswith("vocab"), table
    m1, m2 = (w.read_manifest("clean", f"dt=2024-01-0{i}") for i in (1, 2))
    assert m2["quarantine_by_reason"].get("late_arrival", 0) > 0, "day 1's late events arrive in day 2's log"
    for m in (m1, m2):
        assert m["rows_in"] == m["rows_out"] + m["rows_quarantined"] > 0
    s2 = w.read_manifest("sessionize", "dt=2024-01-02")
    assert s2["rows_in"] == m2["rows_out"] == s2["rows_out"]
