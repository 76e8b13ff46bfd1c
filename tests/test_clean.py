"""Clean: one reason per quarantined row, rows in = out + quarantined, on crafted raw partitions."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from pipelines.etl import clean
from pipelines.core.schema import EVENT
from pipelines.etl.spark import write_daily
from pipelines.core.warehouse import Warehouse

D = date(2024, 1, 2)


def _raw(spark, cfg, rows, source="s1"):
    from pyspark.sql.types import StringType, StructField, StructType

    base = {"event_id": None, "user_id": "u", "item_id": "i", "event_type": "view",
            "ts": datetime(2024, 1, 2, 12, tzinfo=timezone.utc), "domain": "d", "value": None,
            "session_hint": None, "parse_error": None, "dt": D}
    full = [{**base, **r} for r in rows]
    for i, r in enumerate(full):
        r["event_id"] = r["event_id"] or f"e{i}"
    schema = StructType([*EVENT.fields[:-1], StructField("parse_error", StringType()), EVENT.fields[-1]])
    write_daily(spark.createDataFrame(full, schema), Warehouse(cfg.warehouse), f"raw/events/source={source}", [D])


def _reasons(spark, cfg):
    wh = Warehouse(cfg.warehouse)
    q = spark.read.parquet(str(wh.partition("quarantine/events", D)))
    return {r.event_id: r.reason for r in q.collect()}


def t(h, m=0, day=2):
    return datetime(2024, 1, day, h, m, tzinfo=timezone.utc)


def test_each_rule_quarantines_with_its_reason(spark, cfg):
    cfg = cfg.with_overrides(clean={"ts_min": "2024-01-02T01:00:00Z", "ts_max": "2024-01-02T23:00:00Z",
                                    "bot_max_events_per_day": 3})
    _raw(spark, cfg, [
        {"event_id": "ok"},
        {"event_id": "pe", "parse_error": "value: not a number: x"},
        {"event_id": "nu", "user_id": None},
        {"event_id": "eu", "user_id": "  "},
        {"event_id": "ni", "item_id": ""},
        {"event_id": "et", "event_type": "hover"},
        {"event_id": "early", "ts": t(0, 30)},          # inside the day, before ts_min
        {"event_id": "late", "ts": t(23, 30)},          # inside the day, after ts_max
        {"event_id": "neg", "value": -1.0},
        {"event_id": "ok", "ts": t(13)},                # same event id again: duplicate
        *[{"event_id": f"bot{i}", "user_id": "bot", "ts": t(10, i)} for i in range(4)],
    ])
    clean.run(spark, cfg, [D])
    reasons = _reasons(spark, cfg)
    assert reasons == {
        "pe": "parse_error", "nu": "null_id", "eu": "null_id", "ni": "null_id", "et": "unknown_event_type",
        "early": "ts_out_of_window", "late": "ts_out_of_window", "neg": "negative_value", "ok": "duplicate",
        **{f"bot{i}": "bot_user" for i in range(4)},
    }
    wh = Warehouse(cfg.warehouse)
    kept = spark.read.parquet(str(wh.partition("clean/events", D))).collect()
    assert [(r.event_id, r.ts) for r in kept] == [("ok", t(12).replace(tzinfo=None))], "the first duplicate is kept"
    m = wh.read_manifest("clean", "dt=2024-01-02")
    assert (m["rows_in"], m["rows_out"], m["rows_quarantined"]) == (14, 1, 13)
    assert m["quarantine_by_reason"]["bot_user"] == 4 and sum(m["quarantine_by_reason"].values()) == 13


def test_times_outside_the_partitions_day(spark, cfg):
    _raw(spark, cfg, [
        {"event_id": "future", "ts": t(0, 0, day=3)},  # exactly the next midnight: after the day
        {"event_id": "last_us", "ts": datetime(2024, 1, 2, 23, 59, 59, 999999, tzinfo=timezone.utc)},
        {"event_id": "first_us", "ts": t(0, 0)},
        {"event_id": "late", "ts": t(23, 59, day=1)},
    ])
    clean.run(spark, cfg, [D])
    assert _reasons(spark, cfg) == {"future": "ts_future", "late": "late_arrival"}


def test_the_bot_threshold_is_inclusive(spark, cfg):
    cfg = cfg.with_overrides(clean={"bot_max_events_per_day": 3})
    _raw(spark, cfg, [{"event_id": f"e{i}", "user_id": "heavy", "ts": t(10, i)} for i in range(3)])
    clean.run(spark, cfg, [D])
    assert _reasons(spark, cfg) == {}


def test_accounting_across_sources_and_an_empty_day(spark, cfg):
    _raw(spark, cfg, [{"event_id": "a"}, {"event_id": "b"}], source="s1")
    _raw(spark, cfg, [{"event_id": "a"}, {"event_id": "c", "event_type": None}], source="s2")
    empty = date(2024, 1, 3)
    clean.run(spark, cfg, [D, empty])
    wh = Warehouse(cfg.warehouse)
    m = wh.read_manifest("clean", "dt=2024-01-02")
    assert (m["rows_in"], m["rows_out"], m["rows_quarantined"]) == (4, 2, 2)
    assert m["quarantine_by_reason"] == {"duplicate": 1, "unknown_event_type": 1}
    assert len(m["input_files"]) >= 2
    q = spark.read.parquet(str(wh.partition("quarantine/events", D)))
    assert {r.source for r in q.where("reason = 'duplicate'").collect()} == {"s2"}, "ties keep the first source"
    m2 = wh.read_manifest("clean", "dt=2024-01-03")
    assert (m2["rows_in"], m2["rows_out"]) == (0, 0) and wh.has_partition("clean/events", empty)


def test_unknown_event_type_list_is_configurable(spark, cfg):
    cfg = cfg.with_overrides(clean={"event_types": ["buy"]},
                             graphs={"event_weights": {"buy": 1.0}})
    _raw(spark, cfg, [{"event_id": "v"}, {"event_id": "b", "event_type": "buy"}])
    clean.run(spark, cfg, [D])
    assert _reasons(spark, cfg) == {"v": "unknown_event_type"}


def test_config_rejects_a_weightless_event_type(cfg):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="no weight"):
        cfg.with_overrides(clean={"event_types": ["view", "zap"]})
