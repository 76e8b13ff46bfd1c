"""The bad-input corpus (tests/corpus.py): every case ends as expected, with 0 rows unaccounted for."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from corpus import CASES, DAY, good_rows, write

from pipelines.etl import ingest

from pipelines.nightly import etl
from pipelines.gates.check import GateFailed
from pipelines.gates.registry import run_gate
from pipelines.etl.ingest import InputError
from pipelines.etl.spark import write_daily
from pipelines.core.warehouse import Warehouse

PREV = DAY - timedelta(days=1)


@pytest.fixture(scope="module")
def baseline(spark, tmp_path_factory):
    """A warehouse holding one good day before the corpus day, through the whole ETL."""
    from pipelines.core.config import load_config

    root = tmp_path_factory.mktemp("corpus")
    cfg = load_config(warehouse=root / "wh").with_overrides(ingest={"source": "synthetic"})
    write(root / "logs" / f"dt={PREV}", "part-0.parquet", good_rows(day=PREV, prefix="p"))
    ingest.run(spark, cfg, input_path=root / "logs" / f"dt={PREV}", day=PREV)
    etl.run(spark, cfg, [PREV])
    return cfg


def _stages(case) -> list[str]:
    return ["clean", "sessionize"] if case.check is not None and "session" in case.name else ["clean"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(spark, baseline, tmp_path, case):
    shutil.copytree(baseline.warehouse, tmp_path / "wh")
    cfg = baseline.with_overrides(warehouse=tmp_path / "wh", **case.config)
    wh = Warehouse(cfg.warehouse)
    logs = tmp_path / "logs" / f"dt={DAY}"
    written = case.build(logs)

    if case.outcome == "error":
        with pytest.raises(InputError) as exc:
            ingest.run(spark, cfg, input_path=logs, day=DAY)
        assert case.message in str(exc.value), str(exc.value)
        assert str(logs) in str(exc.value) or "column" in str(exc.value), "the error names the file"
        assert not wh.has_partition("raw/events/source=synthetic", DAY), "nothing written for the day"
        return

    m = ingest.run(spark, cfg, input_path=logs, day=DAY)
    file_rows = sum(pq.read_metadata(f).num_rows for f in logs.glob("*.parquet"))
    assert m["rows_in"] == file_rows == written, "every row of the log reached the raw partition"
    if case.raw_override is not None:  # another tool rewrites the raw partition
        from pyspark.sql import functions as F

        table = "raw/events/source=synthetic"
        raw = spark.read.parquet(str(wh.partition(table, DAY))).localCheckpoint()
        write_daily(case.raw_override(spark, raw).withColumn("dt", F.lit(DAY)), wh, table, [DAY])

    if case.outcome == "gate":
        with pytest.raises(GateFailed) as exc:
            etl.run(spark, cfg, [DAY], _stages(case))
        msg = str(exc.value)
        assert msg.startswith(f"gate {case.gate} {DAY}: FAILED") and case.message in msg, msg
        downstream = {"raw": "clean/events", "clean": "sessions"}[case.gate]
        assert not wh.has_partition(downstream, DAY), "nothing after the failed gate was written"
        assert (wh.root / "_gates" / f"stage={case.gate}" / f"dt={DAY}.md").is_file()
        if case.gate == "clean":
            _accounted(wh, written)
        return

    etl.run(spark, cfg, [DAY], _stages(case))
    _accounted(wh, written)
    clean_m = wh.read_manifest("clean", f"dt={DAY}")
    reasons = clean_m["quarantine_by_reason"]
    if case.outcome == "quarantine":
        assert reasons == case.reasons
    else:
        assert reasons == {}, reasons
    if case.check is not None:
        case.check(spark, wh)
    if case.name == "empty partition":
        report = run_gate(spark, cfg, "raw", [DAY])
        assert report.passed and any("row_change" in w.line() for w in report.warnings), report.summary()
    if case.name == "extra column in the log":
        assert m["notes"]["ignored_columns"] == ["campaign"]


def _accounted(wh: Warehouse, written: int) -> None:
    clean_m = wh.read_manifest("clean", f"dt={DAY}")
    assert clean_m["rows_in"] == written == clean_m["rows_out"] + clean_m["rows_quarantined"], clean_m
