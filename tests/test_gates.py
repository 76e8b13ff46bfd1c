"""Quality gates on real data: the Taobao sample passes; each kind of corruption fails with a clear message."""

from __future__ import annotations

import json
import shutil
from datetime import date

import pytest

from pipelines.gates.check import GateFailed

from pipelines.gates.registry import run_gate
from pipelines.etl.spark import write_daily
from pipelines.core.warehouse import Warehouse

DAY = date(2017, 11, 28)


@pytest.fixture
def tb(taobao_wh, tmp_path):
    """A private copy of the Taobao warehouse, to corrupt."""
    shutil.copytree(taobao_wh.warehouse, tmp_path / "wh")
    return taobao_wh.with_overrides(warehouse=tmp_path / "wh")


def _rewrite(spark, cfg, table, fn, day=DAY):
    wh = Warehouse(cfg.warehouse)
    df = spark.read.option("basePath", str(wh.table(table))).parquet(str(wh.partition(table, day)))
    write_daily(fn(df).localCheckpoint(), wh, table, [day])


def test_the_real_data_passes_every_gate_and_writes_results(spark, taobao_wh):
    wh = Warehouse(taobao_wh.warehouse)
    for gate in ("raw", "clean", "sessions", "sequences", "graphs"):
        report = run_gate(spark, taobao_wh, gate, [DAY])
        assert report.passed, report.summary()
        result = json.loads((wh.root / "_gates" / f"stage={gate}" / f"dt={DAY}.json").read_text())
        assert result["passed"] is True and len(result["outcomes"]) >= 5
        assert "| ok |" in (wh.root / "_gates" / f"stage={gate}" / f"dt={DAY}.md").read_text()


def _fails(spark, cfg, gate, *needles):
    with pytest.raises(GateFailed) as exc:
        run_gate(spark, cfg, gate, [DAY])
    msg = str(exc.value)
    assert msg.startswith(f"gate {gate} {DAY}: FAILED")
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_schema_drift_fails(spark, tb):
    from pyspark.sql import functions as F

    _rewrite(spark, tb, "clean/events", lambda df: df.withColumn("campaign", F.lit("x")))
    _fails(spark, tb, "clean", "ExpectTableColumnsToMatchSet", "campaign")


def test_a_wrong_type_fails(spark, tb):
    from pyspark.sql import functions as F

    _rewrite(spark, tb, "clean/events", lambda df: df.withColumn("value", F.col("value").cast("string")))
    _fails(spark, tb, "clean", "ExpectColumnValuesToBeOfType(column='value', type_='DoubleType')", "StringType")


def test_null_ids_fail(spark, tb):
    from pyspark.sql import functions as F

    _rewrite(spark, tb, "clean/events", lambda df: df.withColumn(
        "user_id", F.when(F.col("event_id") < "1", None).otherwise(F.col("user_id"))))
    _fails(spark, tb, "clean", "ExpectColumnValuesToNotBeNull(column='user_id')", "rows")


def test_unknown_event_types_fail(spark, tb):
    from pyspark.sql import functions as F

    _rewrite(spark, tb, "clean/events", lambda df: df.withColumn(
        "event_type", F.when(F.col("event_id") < "2", F.lit("hover")).otherwise(F.col("event_type"))))
    _fails(spark, tb, "clean", "ExpectColumnValuesToBeInSet(column='event_type'", "'hover'")


def test_times_outside_the_day_fail(spark, tb):
    from pyspark.sql import functions as F

    _rewrite(spark, tb, "clean/events", lambda df: df.withColumn(
        "ts", F.when(F.col("event_id") < "1", F.col("ts") + F.expr("INTERVAL 1 DAY")).otherwise(F.col("ts"))))
    _fails(spark, tb, "clean", "ExpectColumnValuesToBeInSet(column='in_day', value_set=[True])")


def test_duplicate_event_ids_fail(spark, tb):
    _rewrite(spark, tb, "clean/events", lambda df: df.unionByName(df.limit(3)))
    msg = _fails(spark, tb, "clean", "ExpectColumnValuesToBeUnique(column='event_id')", "6 of")
    assert "ExpectColumnPairValuesToBeEqual(column_A='clean_rows', column_B='rows_out')" in msg


def test_an_unreadable_file_fails_the_gate_naming_the_file(spark, tb):
    part = next(Warehouse(tb.warehouse).partition("clean/events", DAY).glob("*.parquet"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: Hadoop's checksum beside the file no longer matches
    part.write_bytes(bytes(data))
    msg = _fails(spark, tb, "clean", "could not be evaluated", "FAILED_READ_FILE", part.name)
    assert "An error occurred while calling" not in msg  # the reason, not py4j's wrapper


def test_row_accounting_fails_when_rows_vanish(spark, tb):
    _rewrite(spark, tb, "clean/events", lambda df: df.limit(100))
    _fails(spark, tb, "clean", "ExpectColumnPairValuesToBeEqual(column_A='clean_rows', column_B='rows_out')",
           "ExpectColumnPairValuesToBeEqual(column_A='raw_rows', column_B='out_plus_quarantined')")


def test_session_invariants_fail(spark, tb):
    from pyspark.sql import functions as F

    _rewrite(spark, tb, "sessions", lambda df: df.withColumn(
        "gap_s", F.when(F.col("session_seq") == 2, F.lit(99999.0)).otherwise(F.col("gap_s"))).withColumn(
        "session_start", F.when(F.col("session_seq") == 3, F.col("ts") + F.expr("INTERVAL 1 HOUR")).otherwise(F.col("session_start"))))
    _fails(spark, tb, "sessions", "ExpectColumnValuesToBeBetween(column='gap_s', min_value=0.0, max_value=1800.0)",
           "99999.0", "ExpectColumnPairValuesAToBeGreaterThanB(column_A='ts', column_B='session_start'")


def test_sequence_invariants_fail(spark, tb):
    from pyspark.sql import functions as F

    _rewrite(spark, tb, "sequences", lambda df: df.withColumn(
        "item_idx", F.when(F.col("user_idx") % 10 == 0, F.transform("item_idx", lambda x: x + 10_000_000))
        .otherwise(F.col("item_idx"))).withColumn(
        "length", F.when(F.col("user_idx") % 10 == 1, F.col("length") + 1).otherwise(F.col("length"))))
    _fails(spark, tb, "sequences", "ExpectColumnValuesToBeBetween(column='max_item'",
           "ExpectColumnValuesToBeInSet(column='sizes_match'")


def test_graph_invariants_fail(spark, tb):
    from pyspark.sql import functions as F

    _rewrite(spark, tb, "graphs/item_transitions", lambda df: df.withColumn(
        "weight", F.when(F.col("count") > 1, F.lit(-1.0)).otherwise(F.col("weight"))).withColumn(
        "dst_idx", F.when(F.col("src_idx") % 7 == 0, F.col("src_idx")).otherwise(F.col("dst_idx"))))
    _fails(spark, tb, "graphs", "ExpectColumnValuesToBeBetween(column='weight', min_value=0.0, strict_min=True)",
           "ExpectColumnValuesToBeInSet(column='self_loop', value_set=[False])")


def test_drift_warns_by_default_and_fails_when_configured(spark, tb):
    strict = tb.with_overrides(gates={"max_row_change": 1.01, "max_quarantine_share": 0.0})
    report = run_gate(spark, strict, "clean", [DAY])
    assert report.passed and any("row_change" in w.line() for w in report.warnings), report.summary()
    _fails(spark, strict.with_overrides(gates={"drift": "fail"}), "clean", "clean drift", "row_change")


def test_new_item_drift_is_a_recount_warns_by_default_and_fails_when_configured(spark, tb):
    """The new-item rate of a day is the items first seen that day (its vocabulary partition) over
    the distinct items of its sessions."""
    import pyarrow.parquet as pq

    wh = Warehouse(tb.warehouse)
    new = pq.read_table(wh.partition("vocab/items", DAY)).num_rows
    sessions = pq.read_table(wh.partition("sessions", DAY), columns=["domain", "item_id"])
    rate = new / len(set(zip(*(sessions.column(c).to_pylist() for c in ("domain", "item_id")))))
    assert 0 < rate < 1
    strict = tb.with_overrides(gates={"max_new_item_rate": round(rate, 6) - 1e-6})
    report = run_gate(spark, strict, "sequences", [DAY])
    warned = [w for w in report.warnings if "new_item_rate" in w.line()]
    assert report.passed and len(warned) == 1, report.summary()
    assert warned[0].sample == [pytest.approx(rate)], warned[0].line()
    loose = run_gate(spark, tb.with_overrides(gates={"max_new_item_rate": round(rate, 6) + 1e-6}), "sequences", [DAY])
    assert not any("new_item_rate" in w.line() for w in loose.warnings), loose.summary()
    _fails(spark, strict.with_overrides(gates={"drift": "fail"}), "sequences", "sequences drift", "new_item_rate")


def test_a_gate_of_pandas_frames_starts_no_spark():
    """The embeddings gate validates pandas frames: its process (a DAG task) must not pay for a JVM
    that GX's Spark data source would start; a failed expectation is still reported."""
    import subprocess
    import sys

    code = ("import pandas as pd, pyspark; from great_expectations import expectations as gxe; "
            "from pipelines.gates.check import Frame, validate; "
            "out = validate([Frame('numbers', pd.DataFrame({'x': [1, None]}), "
            "[(gxe.ExpectColumnValuesToNotBeNull(column='x'), 'critical')])]); "
            "print(out[0].success, out[0].unexpected, pyspark.SparkContext._active_spark_context is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["False", "1", "True"], out.stdout[-500:]
