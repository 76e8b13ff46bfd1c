"""Sessionization edge cases on crafted events (Spark SQL over sql/sessionize.sql)."""

from __future__ import annotations

from datetime import date

from conftest import events_df

from pipelines.etl import sessionize
from pipelines.etl.spark import read_partitions, write_daily
from pipelines.core.warehouse import Warehouse


def _sessions(spark, cfg, rows, **sess):
    cfg = cfg.with_overrides(sessionize=sess) if sess else cfg
    out = sessionize.build_sessions(spark, events_df(spark, rows), None, cfg)
    return sorted(out.collect(), key=lambda r: (r.user_id, r.ts, r.event_id))


def test_gap_of_exactly_the_threshold_stays_in_the_session(spark, cfg):
    rows = _sessions(spark, cfg, [
        {"ts": "2024-01-01 10:00:00"},
        {"ts": "2024-01-01 10:30:00"},  # exactly 30 minutes later: same session
        {"ts": "2024-01-01 11:00:00.000001"},  # 30 min + 1 us: a new session
    ])
    assert rows[0].session_id == rows[1].session_id != rows[2].session_id
    assert [r.session_seq for r in rows] == [1, 2, 1]
    assert rows[1].gap_s == 1800.0
    assert rows[1].prev_item_id == rows[0].item_id and rows[2].prev_item_id is None


def test_equal_timestamps_are_ordered_by_event_id(spark, cfg):
    rows = _sessions(spark, cfg, [
        {"event_id": "b", "item_id": "B", "ts": "2024-01-01 10:00:00"},
        {"event_id": "a", "item_id": "A", "ts": "2024-01-01 10:00:00"},
        {"event_id": "c", "item_id": "C", "ts": "2024-01-01 10:00:00"},
    ])
    by_seq = sorted(rows, key=lambda r: r.session_seq)
    assert [r.event_id for r in by_seq] == ["a", "b", "c"]
    assert [r.prev_item_id for r in by_seq] == [None, "A", "B"]
    assert len({r.session_id for r in rows}) == 1


def test_single_event_sessions_and_users_never_mix(spark, cfg):
    rows = _sessions(spark, cfg, [
        {"user_id": "u1", "ts": "2024-01-01 08:00:00"},
        {"user_id": "u1", "ts": "2024-01-01 12:00:00"},
        {"user_id": "u2", "ts": "2024-01-01 08:00:01"},
    ])
    assert len({r.session_id for r in rows}) == 3
    assert all(r.session_seq == 1 and r.prev_item_id is None for r in rows)
    assert all(r.session_start == r.ts for r in rows)


def test_session_ids_are_deterministic_and_content_based(spark, cfg):
    evs = [{"event_id": "x1", "ts": "2024-01-01 10:00:00"}, {"event_id": "x2", "ts": "2024-01-01 10:05:00"}]
    a = _sessions(spark, cfg, evs)
    b = _sessions(spark, cfg, list(reversed(evs)))  # same events in another input order
    assert [r.session_id for r in a] == [r.session_id for r in b]
    assert len(a[0].session_id) == 16
    import hashlib
    assert a[0].session_id == hashlib.md5(b"u1||x1").hexdigest()[:16]


def test_max_events_cuts_a_long_session(spark, cfg):
    evs = [{"ts": f"2024-01-01 10:{m:02d}:00"} for m in range(7)]
    rows = _sessions(spark, cfg, evs, max_events=3)
    assert [r.session_seq for r in rows] == [1, 2, 3, 1, 2, 3, 1]
    assert len({r.session_id for r in rows}) == 3
    assert rows[3].prev_item_id is None  # a new session has no predecessor
    assert rows[4].session_start == rows[3].ts


def test_source_session_ids_are_boundaries(spark, cfg):
    rows = _sessions(spark, cfg, [
        {"ts": "2024-01-01 10:00:00", "session_hint": "s1"},
        {"ts": "2024-01-01 10:01:00", "session_hint": "s2"},
        {"ts": "2024-01-01 10:02:00", "session_hint": "s1"},
    ])
    by_hint = {}
    for r in rows:
        by_hint.setdefault(r.session_hint, set()).add(r.session_id)
    assert all(len(v) == 1 for v in by_hint.values())
    assert by_hint["s1"] != by_hint["s2"]
    s1 = [r for r in rows if r.session_hint == "s1"]
    assert [r.session_seq for r in s1] == [1, 2] and s1[1].prev_item_id == s1[0].item_id


def _midnight_events():
    return [
        {"user_id": "u1", "item_id": "A", "ts": "2024-01-01 23:50:00"},
        {"user_id": "u1", "item_id": "B", "ts": "2024-01-02 00:10:00"},  # 20 min later, after midnight
        {"user_id": "u1", "item_id": "C", "ts": "2024-01-02 00:20:00"},
        {"user_id": "u2", "item_id": "A", "ts": "2024-01-01 23:00:00"},
        {"user_id": "u2", "item_id": "B", "ts": "2024-01-02 00:10:00"},  # 70 min gap: new session
        {"user_id": "u3", "item_id": "X", "ts": "2024-01-02 12:00:00"},
    ]


def _write_clean(spark, cfg, rows, days):
    wh = Warehouse(cfg.warehouse)
    write_daily(events_df(spark, rows), wh, "clean/events", days)
    return wh


def test_a_session_continues_across_midnight_day_by_day_and_as_a_range(spark, cfg, tmp_path):
    days = [date(2024, 1, 1), date(2024, 1, 2)]
    by_day = cfg.with_overrides(warehouse=tmp_path / "by_day")
    ranged = cfg.with_overrides(warehouse=tmp_path / "range")
    for c in (by_day, ranged):
        _write_clean(spark, c, _midnight_events(), days)
    sessionize.run(spark, by_day, [days[0]])
    sessionize.run(spark, by_day, [days[1]])
    sessionize.run(spark, ranged, days)
    out = {}
    for name, c in (("by_day", by_day), ("range", ranged)):
        rows = read_partitions(spark, Warehouse(c.warehouse), "sessions", days).collect()
        out[name] = sorted((r.user_id, r.item_id, r.session_id, r.session_seq, r.prev_item_id, r.session_start, r.dt)
                           for r in rows)
    assert out["by_day"] == out["range"]
    u1 = [r for r in out["range"] if r[0] == "u1"]
    assert len({r[2] for r in u1}) == 1, "u1's session continues after midnight"
    assert [r[3] for r in u1] == [1, 2, 3] and u1[1][4] == "A"
    assert u1[1][6] == date(2024, 1, 2) and u1[1][5].day == 1, "row in day 2, session started on day 1"
    u2 = [r for r in out["range"] if r[0] == "u2"]
    assert len({r[2] for r in u2}) == 2 and u2[1][4] is None


def test_an_empty_day_gives_an_empty_partition(spark, cfg):
    days = [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
    wh = _write_clean(spark, cfg, [{"ts": "2024-01-01 10:00:00"}, {"ts": "2024-01-03 10:00:00"}], days)
    sessionize.run(spark, cfg, days)
    assert wh.has_partition("sessions", days[1])
    assert spark.read.parquet(str(wh.partition("sessions", days[1]))).count() == 0
    m = wh.read_manifest("sessionize", "dt=2024-01-02")
    assert m["rows_in"] == m["rows_out"] == 0
