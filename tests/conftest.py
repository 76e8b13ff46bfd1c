"""Shared fixtures: one local Spark session per test run, warehouses in tmp folders, real data."""

from __future__ import annotations

import os
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# PySpark turns timestamps into naive datetimes in the process's local time: make that UTC.
os.environ["TZ"] = "UTC"
time.tzset()
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def data_root() -> Path:
    return Path(os.environ.get("SEQREP_DATA", ROOT.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    """One marker for "needs ../shared/data": every test whose fixtures reach ``data_dir`` gets
    ``realdata`` (``-m "not realdata"`` runs the rest), so a marker can never disagree with the code."""
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line at the end of the run: how many tests were skipped, and why."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        parts = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        terminalreporter.write_line(f"seqrep: {sum(reasons.values())} test(s) skipped: {parts}", yellow=True)
    else:
        terminalreporter.write_line("seqrep: no test skipped")


@pytest.fixture(scope="session")
def data_dir():
    """``../shared/data`` (or ``SEQREP_DATA``). Missing: skip with a message, or fail in CI."""

    def need(name: str) -> Path:
        path = data_root() / name
        if not path.exists():
            msg = f"real dataset {name!r} not found at {path} (set SEQREP_DATA or put ../shared/data beside the project)"
            if os.environ.get("SEQREP_REQUIRE_DATA") == "1":
                pytest.fail(msg)
            pytest.skip(msg)
        return path

    return need


@pytest.fixture(scope="session")
def spark():
    from pipelines.core.config import SparkConfig
    from pipelines.etl.spark import get_spark

    session = get_spark(SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="3g"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def spark_connect():
    """The URL of a Spark Connect server (``seqrep spark-server``'s) on a free port, for tests
    whose Spark tasks are its clients; stopped by its pid after the session."""
    import socket

    from pipelines.core.config import SparkConfig
    from pipelines.etl import spark_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spark_server.start(SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="2g"), port)
    yield spark_server.url(port)
    spark_server.stop(port)
    spark_server.log_file(port).unlink(missing_ok=True)  # a random port's log: nobody would look for it


@pytest.fixture(scope="session")
def task_server():
    """The socket of a task server (``seqrep task-server``'s) for tests whose ``seqrep`` processes
    are its clients (``SEQREP_TASK_SERVER``); stopped by its pid after the session."""
    import tempfile

    from pipelines.nightly import task_server as server

    path, _, _ = server.start(Path(tempfile.mkdtemp(prefix="seqrep-ts-", dir="/tmp")) / "seqrep.sock")
    yield str(path)
    server.stop(path)


@pytest.fixture
def cfg(tmp_path):
    """A default config whose warehouse is a fresh tmp folder."""
    from pipelines.core.config import load_config

    return load_config(warehouse=tmp_path / "wh")


def ts(s: str) -> datetime:
    """'2024-01-01 23:59:00' -> aware UTC datetime."""
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)


def events_df(spark, rows: list[dict]):
    """Clean-event rows (defaults filled in) as a Spark DataFrame with the canonical schema."""
    from pipelines.core.schema import EVENT

    out = []
    for i, r in enumerate(rows):
        t = ts(r["ts"]) if isinstance(r["ts"], str) else r["ts"]
        out.append({
            "event_id": r.get("event_id", f"e{i:05d}"), "user_id": r.get("user_id", "u1"),
            "item_id": r.get("item_id", f"i{i}"), "event_type": r.get("event_type", "view"), "ts": t,
            "domain": r.get("domain", "d"), "value": r.get("value"), "session_hint": r.get("session_hint"),
            "dt": r.get("dt", t.date()),
        })
    return spark.createDataFrame(out, EVENT)


def all_raw_days(wh) -> list:
    return sorted({d for p in wh.table("raw/events").glob("source=*") for d in wh.partition_dates(str(p.relative_to(wh.root)))})


@pytest.fixture(scope="session")
def movielens_wh(spark, data_dir, tmp_path_factory):
    """ml-100k through the CLI: ingest, then the ETL over every day with events (a warehouse path).

    Without the gates, for the suite's time: ml-100k goes through every gate in test_dag.py
    (a slice, through the DAG's gate tasks), and test_gates.py runs them on the Taobao sample."""
    from pipelines.cli import main

    path = data_dir("ml-100k")
    wh = tmp_path_factory.mktemp("ml") / "wh"
    assert main(["ingest", "--source", "movielens", "--input", str(path), "--warehouse", str(wh)]) == 0
    assert main(["etl", "--all", "--no-gates", "--warehouse", str(wh), "--config", str(ROOT / "configs" / "movielens.yaml")]) == 0
    return wh


@pytest.fixture(scope="session")
def taobao_wh(spark, data_dir, tmp_path_factory):
    """The Taobao sample through ingest and the whole ETL (gates on), with its official window."""
    from pipelines.etl import ingest
    from pipelines.nightly import etl
    from pipelines.core.config import load_config
    from pipelines.core.warehouse import Warehouse

    csv = data_dir("taobao-userbehavior-sample") / "UserBehavior.sample.csv"
    cfg = load_config(ROOT / "configs" / "taobao.yaml", warehouse=tmp_path_factory.mktemp("tb") / "wh")
    ingest.run(spark, cfg, source="taobao", input_path=csv)
    wh = Warehouse(cfg.warehouse)
    etl.run(spark, cfg, all_raw_days(wh))
    return cfg


#: The days of the `published` fixture: ml-100k's last day, and an earlier one.
LAST = date(1998, 4, 22)
EARLY = date(1998, 1, 31)
SMALL = "methods:\n  sasrec:\n    model: {dim: 16, num_layers: 1}\n    train: {epochs: 2, seed: 3}\n"


@pytest.fixture(scope="session")
def published(movielens_wh, tmp_path_factory):
    """A small SASRec trained and inferred as of the last day (and one trained as of EARLY), in a
    copy of the session's ml-100k warehouse (other tests count its models): (warehouse, the
    CLI's ``--warehouse W --config C``). Tests that change it work on a copy."""
    import shutil

    from pipelines.cli import main

    wh = tmp_path_factory.mktemp("infer") / "wh"
    shutil.copytree(movielens_wh, wh, ignore=shutil.ignore_patterns("models", "metrics", "embeddings", "_staging"))
    cfg = tmp_path_factory.mktemp("cfg") / "small.yaml"
    cfg.write_text(SMALL)
    common = ["--warehouse", str(wh), "--config", str(cfg)]
    for day in (EARLY, LAST):
        assert main(["train", "--method", "sasrec", "--date", str(day), *common]) == 0
    assert main(["infer", "--method", "sasrec", "--date", str(LAST), *common]) == 0
    assert main(["publish", "--method", "sasrec", "--date", str(LAST), *common]) == 0  # gate, index, record
    return wh, common


@pytest.fixture(scope="session")
def source(data_dir):
    """ml-100k's (user ids, item ids) of every rating, as strings."""
    import numpy as np

    raw = np.loadtxt(data_dir("ml-100k") / "u.data", dtype=np.int64)
    return raw[:, 0].astype(str), raw[:, 1].astype(str)
