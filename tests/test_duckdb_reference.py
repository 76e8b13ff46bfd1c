"""The DuckDB reference of the whole ETL (``bench/etl_duckdb.py``) gives Spark's tables, row for row.

- ml-100k (the session's ``movielens_wh``: ``seqrep ingest`` + ``seqrep etl --all``): every table's
  order-free digest, the column types and the clean manifests agree;
- three crafted days of a product log with bad rows of every kind (null and blank ids with Unicode
  spaces, unknown event types, times outside the day both ways and outside the window, NaN,
  infinite and negative values, duplicate event ids in a day, across sources and across days of the
  window, a bot, a session over midnight cut by ``max_events``) through Spark's ``ingest`` and
  ``pipelines.nightly.etl.run``, as one range and day by day: the same tables, and each quarantined
  row's reason is the one the rules of ``pipelines/etl/clean.py`` give it (``EXPECTED``);
- without Spark: the reference alone on the same days (raw partitions written as ``ingest`` writes
  them), its blank-id pattern against Java's, and its table columns against the Spark schemas.
"""

from __future__ import annotations

import importlib.util
import math
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus import good_rows

from pipelines.core.config import load_config

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("etl_duckdb", ROOT / "bench" / "etl_duckdb.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

D1, D2, D3 = date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)
DAYS = [D1, D2, D3]
CONFIG = {
    "ingest": {"source": "synthetic"},
    "clean": {"ts_min": "2020-01-01T00:00:00Z", "bot_max_events_per_day": 30},
    "sessionize": {"max_events": 5},
    "sequences": {"max_length": 8},
}
LOG_SCHEMA = pa.schema([("request_id", pa.string()), ("uid", pa.string()), ("sku", pa.string()),
                        ("action", pa.string()), ("event_time_ms", pa.int64()), ("site", pa.string()),
                        ("price", pa.float64())])


def _ms(day: date, hours: float = 0, minutes: float = 0) -> int:
    t0 = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
    return int(t0 * 1000 + hours * 3_600_000 + minutes * 60_000)


def _ev(rid: str, day: date, h: float = 9, m: float = 0, *, uid: str | None = "u1", sku: str | None = "s1",
        action: str | None = "page_view", site: str | None = "books", price: float | None = 1.0,
        ms: int | None = None) -> dict:
    """One row of the synthetic generator's log format (``SYNTHETIC_COLUMNS``)."""
    return {"request_id": rid, "uid": uid, "sku": sku, "action": action,
            "event_time_ms": _ms(day, h, m) if ms is None else ms, "site": site, "price": price}


def _good(day: date, prefix: str) -> list[dict]:
    cols = good_rows(n=120, day=day, users=40, items=30, prefix=prefix)  # ids like a0304-5: 3 events per user
    return [dict(zip(cols, values)) for values in zip(*cols.values())]


def _day1() -> list[dict]:
    return _good(D1, "a") + [
        _ev("night-1", D1, 23, 50, uid="night", sku="s7"),
        *[_ev(f"binge-{i}", D1, 23, 30 + 4 * i, uid="binge", sku=f"s{10 + i}") for i in range(7)],
        _ev("games-1", D1, 12, uid="u3", sku="s1", site="games"),  # the same item id in another domain
    ]


def _day2_ids_types_times_values() -> list[dict]:
    return [
        _ev("null-user", D2, uid=None), _ev("empty-item", D2, sku=""), _ev("nbsp-user", D2, uid="\u00a0\u2003"),
        _ev("bom-item", D2, sku="\ufeff"), _ev("ideo-site", D2, site=" \u3000\t"),
        _ev("vt-user", D2, uid="\x0b"),  # Java's \s has the vertical tab (RE2's has not)
        _ev("nel-user", D2, uid="\u0085"),  # Java's $ matches before a final NEL: blank
        _ev("nel-nel-user", D2, 9, 1, uid="\u0085\u0085"), _ev("zwsp-user", D2, 9, 2, uid="\u200b"),
        _ev("nbsp-inside", D2, 9, 3, uid="u\u00a01"),  # these three are ids
        _ev("hover", D2, action="hover"), _ev("null-action", D2, action=None),
        _ev("purchase", D2, 9, 4, action="purchase"), _ev("no-price", D2, 9, 5, price=None),
        _ev("far-future", D2, ms=2 ** 62), _ev("epoch", D2, ms=0), _ev("tomorrow", D2, 30),
        _ev("midnight", D2, 24), _ev("yesterday", D2, -2),
        _ev("nan", D2, price=math.nan), _ev("inf", D2, price=math.inf), _ev("-inf", D2, price=-math.inf),
        _ev("neg", D2, price=-1.0),
    ]


def _day2_duplicates_bots_sessions() -> list[dict]:
    return [
        *[_ev("dup-a", D2, h, uid="u5") for h in (1, 2, 3)],  # the first kept
        _ev("dup-b", D2, 1, uid="u6", price=-2.0), _ev("dup-b", D2, 2, uid="u6"), _ev("dup-b", D2, 3, uid="u6"),
        _ev("dup-tie", D2, 4, uid="u2"), _ev("dup-tie", D2, 4, uid="u1"),  # a tie: the smaller user id kept
        _ev("dup-null", D2, 5, uid="u7", price=2.0), _ev("dup-null", D2, 5, uid="u7", price=None),  # null first
        _ev("dup-src", D2, 6, uid="u8", sku="s3"),  # also in source app2, which sorts first
        _ev("a0304-5", D2, 7, uid="u9"),  # an id of the day before
        *[_ev(f"bot-{i}", D2, 10, i, uid="crawler", sku=f"s{i % 20}") for i in range(31)],
        _ev("bot-neg", D2, 11, uid="crawler", price=-1.0),
        *[_ev(f"busy-{i}", D2, 12, i, uid="busy", sku=f"s{i % 20}") for i in range(30)],
        _ev("busy-0", D2, 13, uid="busy"),  # 30 valid events and a duplicate: not a bot
        _ev("rep-1", D2, 14, 0, uid="repeat", sku="s5"), _ev("rep-2", D2, 14, 1, uid="repeat", sku="s5"),
        _ev("rep-3", D2, 14, 2, uid="repeat", sku="s6"),
        _ev("night-2", D2, 0, 10, uid="night", sku="s8"), _ev("night-3", D2, 23, 40, uid="night", sku="s9"),
        *[_ev(f"binge-{7 + i}", D2, 0, 1 + 4 * i, uid="binge", sku=f"s{17 + i}") for i in range(4)],
    ]


def _day3() -> list[dict]:
    return _good(D3, "c") + [
        _ev("night-4", D3, 0, 20, uid="night", sku="s7"),
        _ev("a0304-6", D3, 8, uid="u9"),  # seen two days before: outside the window, clean
        _ev("dup-a", D3, 8, 1, uid="u5"),  # passed the day before: duplicate
        _ev("neg", D3, 8, 2),  # quarantined the day before (negative): clean
        _ev("bot-3", D3, 8, 3, uid="crawler"),  # bot_user the day before, but it passed the row rules: duplicate
        _ev("a0304-5", D3, 8, 4),  # a duplicate the day before, which passed the row rules too: duplicate
    ]


def crafted_logs() -> dict[tuple[str, date], list[dict]]:
    """(source, day) -> the rows of that day's log."""
    return {
        ("synthetic", D1): _day1(),
        ("synthetic", D2): _good(D2, "b") + _day2_ids_types_times_values() + _day2_duplicates_bots_sessions(),
        ("app2", D2): [_ev("dup-src", D2, 6, uid="u8", sku="s3"), _ev("app2-only", D2, 6, 30, uid="u8", sku="s4")],
        ("synthetic", D3): _day3(),
    }


def _expected() -> Counter:
    """(day, source, event_id, reason) of every quarantined row, by the rules of clean.py."""
    d2, d3 = str(D2), str(D3)
    rows = [(d2, "synthetic", e, "null_id") for e in
            ("null-user", "empty-item", "nbsp-user", "bom-item", "ideo-site", "vt-user", "nel-user")]
    rows += [(d2, "synthetic", e, r) for e, r in (
        ("hover", "unknown_event_type"), ("null-action", "unknown_event_type"), ("far-future", "parse_error"),
        ("epoch", "ts_out_of_window"), ("tomorrow", "ts_future"), ("midnight", "ts_future"),
        ("yesterday", "late_arrival"), ("nan", "invalid_value"), ("inf", "invalid_value"),
        ("-inf", "invalid_value"), ("neg", "negative_value"), ("dup-a", "duplicate"), ("dup-a", "duplicate"),
        ("dup-b", "negative_value"), ("dup-b", "duplicate"), ("dup-tie", "duplicate"), ("dup-null", "duplicate"),
        ("dup-src", "duplicate"), ("a0304-5", "duplicate"), ("bot-neg", "negative_value"), ("busy-0", "duplicate"))]
    rows += [(d2, "synthetic", f"bot-{i}", "bot_user") for i in range(31)]
    rows += [(d3, "synthetic", e, "duplicate") for e in ("dup-a", "bot-3", "a0304-5")]
    return Counter(rows)


EXPECTED = _expected()


def write_crafted_logs(root: Path) -> dict[tuple[str, date], Path]:
    """The crafted logs as Parquet, one folder per (source, day)."""
    folders = {}
    for (source, day), rows in crafted_logs().items():
        folder = root / source / f"dt={day}"
        folder.mkdir(parents=True)
        cols = {name: [r[name] for r in rows] for name in LOG_SCHEMA.names}
        pq.write_table(pa.table(cols, schema=LOG_SCHEMA), folder / "part-0.parquet")
        folders[(source, day)] = folder
    return folders


def quarantined(root: Path) -> Counter:
    files = ref.parquet_files(str(root / "quarantine" / "events" / "dt=*" / "*.parquet"))
    rows = duckdb.sql("SELECT CAST(dt AS VARCHAR), source, event_id, reason FROM read_parquet($f, hive_partitioning = true)",
                      params={"f": files}).fetchall() if files else []
    return Counter(rows)


def assert_kept(root: Path) -> None:
    """Which row of each duplicated id stayed clean, and the ids that are no blank ones."""
    files = ref.parquet_files(str(root / "clean" / "events" / "dt=*" / "*.parquet"))
    rows = duckdb.sql("SELECT CAST(dt AS VARCHAR), event_id, user_id, hour(ts AT TIME ZONE 'UTC'), value "
                      "FROM read_parquet($f, hive_partitioning = true)", params={"f": files}).fetchall()
    kept = {(d, e): (u, h, v) for d, e, u, h, v in rows}
    assert len(kept) == len(rows), "one clean row per (day, event id)"
    d2 = str(D2)
    assert kept[(d2, "dup-a")] == ("u5", 1, 1.0) and kept[(d2, "dup-b")] == ("u6", 2, 1.0)
    assert kept[(d2, "dup-tie")] == ("u1", 4, 1.0) and kept[(d2, "dup-null")] == ("u7", 5, None)
    assert kept[(d2, "busy-0")] == ("busy", 12, 1.0)
    users = {u for u, _, _ in kept.values()}
    assert {"\u0085\u0085", "\u200b", "u\u00a01"} <= users and "crawler" not in {kept[k][0] for k in kept if k[0] == d2}
    assert {(str(D3), "a0304-6"), (str(D3), "neg"), (d2, "purchase"), (d2, "no-price")} <= set(kept)


# -- with Spark ------------------------------------------------------------------------------------

def test_the_reference_equals_spark_on_movielens(movielens_wh, tmp_path):
    cfg = load_config(ROOT / "configs" / "movielens.yaml", warehouse=movielens_wh)
    out = tmp_path / "ref"
    ref.run_reference(movielens_wh, cfg, out, threads=2)
    results = {r["table"]: r for r in ref.check_tables(movielens_wh, out, threads=2)}
    assert [f"{t}: {d}" for t, r in results.items() for d in r["differences"]] == []
    rows = {t: r["spark_rows"] for t, r in results.items()}
    assert (rows["clean/events"], rows["quarantine/events"], rows["sessions"]) == (100_000, 0, 100_000)
    assert (rows["vocab/items"], rows["vocab/users"], rows["graphs/user_item"]) == (1682, 943, 100_000)
    assert rows["sequences"] > 0 and rows["splits"] > 0 and rows["graphs/item_transitions"] > 0


@pytest.mark.parametrize("mode", ["range", "day_by_day"])
def test_crafted_bad_days_give_the_same_tables_and_reasons_as_spark(spark, tmp_path, mode):
    from pipelines.etl import ingest
    from pipelines.nightly import etl

    cfg = load_config(warehouse=tmp_path / "wh").with_overrides(**CONFIG)
    for (source, day), folder in write_crafted_logs(tmp_path / "logs").items():
        ingest.run(spark, cfg, source="synthetic", input_path=folder, day=day, name=source)
    for days in ([DAYS] if mode == "range" else [[d] for d in DAYS]):
        etl.run(spark, cfg, days, gates=False)
    out = tmp_path / "ref"
    ref.run_reference(cfg.warehouse, cfg, out, threads=2)
    assert ref.compare(cfg.warehouse, out, threads=2) == []
    assert quarantined(cfg.warehouse) == EXPECTED
    assert quarantined(out) == EXPECTED
    assert_kept(cfg.warehouse)
    sessions = ref.digest(cfg.warehouse, "sessions")
    assert sessions["rows"] == ref.digest(cfg.warehouse, "clean/events")["rows"] > 0


# -- without Spark ---------------------------------------------------------------------------------

def write_raw_as_ingest(logs: dict[tuple[str, date], Path], wh: Path) -> None:
    """What ``seqrep ingest --date D`` of the synthetic source writes for these logs (its adapter:
    columns mapped, event types through ``SYNTHETIC_EVENT_TYPES``, ms times outside years 1..9999
    a parse error), for the reference alone."""
    from pipelines.etl.synthetic_logs import SYNTHETIC_EVENT_TYPES

    for (source, day), folder in logs.items():
        log = pq.read_table(folder / "part-0.parquet").to_pydict()
        ok = [-62_135_596_800_000 <= ms <= 253_402_300_799_999 for ms in log["event_time_ms"]]
        cols = {
            "event_id": log["request_id"], "user_id": log["uid"], "item_id": log["sku"],
            "event_type": [SYNTHETIC_EVENT_TYPES.get(a, a) if a is not None else None for a in log["action"]],
            "ts": pa.array([ms * 1000 if good else None for ms, good in zip(log["event_time_ms"], ok)],
                           pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "domain": log["site"], "value": pa.array(log["price"], pa.float64()),
            "session_hint": pa.array([None] * len(ok), pa.string()),
            "parse_error": pa.array([None if good else f"ts: out of range (years 1..9999) in ms: {ms}"
                                     for ms, good in zip(log["event_time_ms"], ok)], pa.string()),
        }
        part = wh / "raw" / "events" / f"source={source}" / f"dt={day}"
        part.mkdir(parents=True)
        pq.write_table(pa.table(cols), part / "part-00000.parquet")


def test_the_reference_alone_quarantines_the_crafted_rows_by_the_rules(tmp_path):
    cfg = load_config(warehouse=tmp_path / "wh").with_overrides(**CONFIG)
    write_raw_as_ingest(write_crafted_logs(tmp_path / "logs"), tmp_path / "wh")
    out = tmp_path / "ref"
    times = ref.run_reference(tmp_path / "wh", cfg, out, threads=1)
    assert list(times) == ["clean", "sessionize", "sequences", "graphs"]
    assert quarantined(out) == EXPECTED
    assert_kept(out)
    sessions = duckdb.sql(f"SELECT event_id, session_seq, session_id FROM read_parquet('{out}/sessions/*/*.parquet') "
                          "WHERE user_id = 'binge' ORDER BY ts").fetchall()
    assert [s for _, s, _ in sessions] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1], "cut every 5 events, over midnight"
    assert len({sid for _, _, sid in sessions}) == 3
    self_loops = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/graphs/item_transitions/*/*.parquet') "
                            "WHERE src_idx = dst_idx").fetchall()[0][0]
    assert self_loops == 0
    seq = duckdb.sql(f"SELECT max(length), max(n_events) FROM read_parquet('{out}/sequences/*/*.parquet')").fetchall()[0]
    assert seq[0] == 8 and seq[1] > 8, "histories cut to sequences.max_length"


#: Java 17's ``^[\s\p{Z}\x{FEFF}]*$`` (``pipelines/etl/clean.py``'s BLANK, as Spark's rlike runs it)
#: matches these single code points...
JAVA_BLANK = {0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
              0x202F, 0x205F, 0x3000, 0xFEFF}
#: ...and of these strings, those marked True (its ``$`` also matches before a final line terminator).
JAVA_CASES = {" \u0085": True, "\u0085 ": False, "\u0085\u0085": False, "\r\n": True, "a\n": False,
              "\n\u0085": True, "\u0085\n": False, "\u001c": False, "": True, "\u200b": False}


def test_the_blank_id_pattern_is_javas():
    con = ref.connect(1)
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    got = con.execute("SELECT list(cp) FROM (SELECT unnest($p::INTEGER[]) AS cp) WHERE blank(chr(cp))",
                      {"p": points}).fetchone()[0]
    assert set(got) == JAVA_BLANK
    assert {s: con.execute("SELECT blank($s)", {"s": s}).fetchone()[0] for s in JAVA_CASES} == JAVA_CASES
    assert con.execute("SELECT blank(NULL)").fetchone()[0] is True


def test_the_reference_tables_have_the_warehouse_columns():
    from pipelines.core import schema

    expected = {
        "clean/events": schema.EVENT.names,
        "quarantine/events": [*schema.EVENT_COLUMNS[:-1], "source", "parse_error", "reason", "dt"],  # clean._write
        "sessions": schema.SESSION_EVENT.names, "vocab/items": schema.VOCAB_ITEM.names,
        "vocab/users": schema.VOCAB_USER.names, "sequences": schema.SEQUENCE.names, "splits": schema.SPLIT.names,
        "graphs/item_transitions": schema.ITEM_TRANSITION.names, "graphs/user_item": schema.USER_ITEM.names,
    }
    for table, names in expected.items():
        assert list(ref.TABLES[table]) == list(names), table
