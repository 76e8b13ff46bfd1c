"""Atomic, idempotent partition writes; paths stay inside the warehouse; config errors are clear."""

from __future__ import annotations

from datetime import date

import pytest
from conftest import events_df

from pipelines.core.config import ConfigError, load_config
from pipelines.etl.spark import write_daily
from pipelines.core.warehouse import Warehouse, WarehouseError, _exchange

D = date(2024, 1, 1)


def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("new")
    (b / "x").write_text("old")
    _exchange(a, b)
    assert (b / "x").read_text() == "new" and (a / "x").read_text() == "old"


def test_table_names_cannot_escape_the_warehouse(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    with pytest.raises(WarehouseError, match="outside the warehouse"):
        wh.table("../etc")
    with pytest.raises(WarehouseError, match="outside the warehouse"):
        wh.table("/tmp/elsewhere")
    assert wh.table("clean/events") == (tmp_path / "wh" / "clean" / "events").resolve()


def test_rewrite_replaces_and_is_identical(spark, tmp_path):
    wh = Warehouse(tmp_path / "wh")
    df = events_df(spark, [{"ts": "2024-01-01 10:00:00"}, {"ts": "2024-01-01 11:00:00"}])
    first = write_daily(df, wh, "t", [D])
    files_before = sorted(p.name for p in wh.partition("t", D).iterdir())
    second = write_daily(df, wh, "t", [D])
    assert first == second, "same rows, same count and checksum"
    assert sorted(p.name for p in wh.partition("t", D).iterdir()) != files_before, "files were replaced"
    assert spark.read.parquet(str(wh.partition("t", D))).count() == 2, "replaced, not appended"
    assert not any((wh.root / "_staging").iterdir()), "no staging left behind"


def test_a_write_that_fails_midway_leaves_the_old_partition(spark, tmp_path):
    from pyspark.sql import functions as F

    wh = Warehouse(tmp_path / "wh")
    good = events_df(spark, [{"ts": f"2024-01-01 {h:02d}:00:00", "item_id": f"i{h}"} for h in range(10)])
    before = write_daily(good, wh, "t", [D])
    # Fail inside the Spark job, after some tasks have written their files.
    bad = good.repartition(4).withColumn(
        "item_id", F.when(F.col("item_id") == "i7", F.raise_error(F.lit("injected failure"))).otherwise(F.col("item_id")))
    with pytest.raises(Exception, match="injected failure"):
        write_daily(bad, wh, "t", [D])
    rows = spark.read.parquet(str(wh.partition("t", D)))
    assert rows.count() == 10 and sorted(r.item_id for r in rows.collect()) == sorted(f"i{h}" for h in range(10))
    assert not any((wh.root / "_staging").iterdir())
    assert write_daily(good, wh, "t", [D]) == before


def test_rows_outside_the_days_are_refused(spark, tmp_path):
    wh = Warehouse(tmp_path / "wh")
    df = events_df(spark, [{"ts": "2024-01-02 10:00:00"}])
    with pytest.raises(WarehouseError, match="outside the run"):
        write_daily(df, wh, "t", [D])
    assert not wh.has_partition("t", D) and not wh.has_partition("t", date(2024, 1, 2))


def test_config_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("sessionize:\n  gap_minute: 5\n")
    with pytest.raises(ConfigError, match=r"(?s)c.yaml.*sessionize.gap_minute: Extra inputs"):
        load_config(bad)
    bad.write_text("sessionize:\n  gap_minutes: -1\n")
    with pytest.raises(ConfigError, match="sessionize.gap_minutes"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    good = tmp_path / "sub" / "g.yaml"
    good.parent.mkdir()
    good.write_text("warehouse: wh\ningest:\n  input: logs/dt={date}\n")
    cfg = load_config(good)
    assert cfg.warehouse == (good.parent / "wh").resolve()
    assert cfg.ingest.input == str(good.parent / "logs" / "dt={date}")
