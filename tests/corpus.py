"""The bad-input corpus: one day of a product's Parquet log gone wrong in a known way, and what
seqrep must do with it: quarantine rows with a reason, stop at a gate with a message, or refuse
the input with a clear error. Every case starts from a good previous day (for drift checks).

A case builds its files into a folder (``build(folder) -> rows written``). The log format is
the synthetic generator's (``pipelines.etl.synthetic_logs.SYNTHETIC_COLUMNS``), read by the ``synthetic``
adapter on the nightly path (``--date``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

DAY = date(2024, 2, 2)
T0 = int(datetime(DAY.year, DAY.month, DAY.day, tzinfo=timezone.utc).timestamp() * 1000)
HOUR = 3_600_000


def good_rows(n: int = 400, day: date = DAY, users: int = 40, items: int = 60, prefix: str = "r") -> dict[str, list]:
    """A plain day of views and carts, spread over the day."""
    t0 = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
    return {
        "request_id": [f"{prefix}{day:%m%d}-{i}" for i in range(n)],
        "uid": [f"u{i % users}" for i in range(n)],
        "sku": [f"s{(i * 7) % items}" for i in range(n)],
        "action": ["add_to_cart" if i % 9 == 0 else "page_view" for i in range(n)],
        "event_time_ms": [t0 + (i * 86_000_000) // n + 1 for i in range(n)],
        "site": ["books"] * n,
        "price": [float(1 + i % 20) for i in range(n)],
    }


def write(folder: Path, name: str, cols: dict[str, list], schema: pa.Schema | None = None) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(cols, schema=schema)
    pq.write_table(table, folder / name)
    return table.num_rows


@dataclass
class Case:
    name: str
    build: Callable[[Path], int]
    #: "quarantine" (clean quarantines rows), "gate" (a gate stops the day), "error" (ingest refuses
    #: the input), "accepted" (the day passes untouched).
    outcome: str
    reasons: dict[str, int] = field(default_factory=dict)  # quarantine: exact counts by reason
    gate: str | None = None                                 # gate: which gate stops the day
    message: str = ""                                       # a substring of the error / gate message
    config: dict[str, Any] = field(default_factory=dict)    # config overrides for the case
    raw_override: Callable[[Any, Any], Any] | None = None   # rewrite the raw partition (as another tool would)
    check: Callable[[Any, Any], None] | None = None         # extra assertions (spark, warehouse)


def _edit(**changes: Callable[[int, Any], Any]) -> Callable[[Path], int]:
    """A good day with some cells changed: ``column=lambda i, v: new value`` (return v to keep)."""

    def build(folder: Path) -> int:
        cols = good_rows()
        for col, fn in changes.items():
            cols[col] = [fn(i, v) for i, v in enumerate(cols[col])]
        return write(folder, "part-0.parquet", cols)

    return build


def _append(extra: dict[str, list]) -> Callable[[Path], int]:
    def build(folder: Path) -> int:
        cols = good_rows()
        return write(folder, "part-0.parquet", {k: v + extra[k] for k, v in cols.items()})

    return build


def _without(column: str) -> Callable[[Path], int]:
    def build(folder: Path) -> int:
        return write(folder, "part-0.parquet", {k: v for k, v in good_rows().items() if k != column})

    return build


def _renamed(old: str, new: str) -> Callable[[Path], int]:
    def build(folder: Path) -> int:
        return write(folder, "part-0.parquet", {(new if k == old else k): v for k, v in good_rows().items()})

    return build


def _extra_column(folder: Path) -> int:
    cols = good_rows()
    cols["campaign"] = ["spring"] * len(cols["uid"])
    return write(folder, "part-0.parquet", cols)


def _bot(folder: Path) -> int:
    n = 100_000
    bot = {
        "request_id": [f"bot-{i}" for i in range(n)], "uid": ["crawler"] * n, "sku": [f"s{i % 60}" for i in range(n)],
        "action": ["page_view"] * n, "event_time_ms": [T0 + i * 800 for i in range(n)], "site": ["books"] * n,
        "price": [1.0] * n,
    }
    cols = good_rows()
    return write(folder, "part-0.parquet", {k: v + bot[k] for k, v in cols.items()})


def _ids(folder: Path) -> int:
    """Unicode ids (valid UTF-8) and latin-1 bytes in a binary id column (not valid UTF-8)."""
    cols = good_rows(20)
    users = [s.encode() for s in cols["uid"]]
    users[0] = "José-ü-東京-🎧".encode("utf-8")
    users[1] = "Jos\xe9".encode("latin-1")  # b"Jos\xe9": not UTF-8
    cols["uid"] = users
    cols["sku"][0] = "книга-1"
    schema = pa.schema([("request_id", pa.string()), ("uid", pa.binary()), ("sku", pa.string()), ("action", pa.string()),
                        ("event_time_ms", pa.int64()), ("site", pa.string()), ("price", pa.float64())])
    return write(folder, "part-0.parquet", cols, schema)


def _long_session(folder: Path) -> int:
    n = 4_500  # one user clicking every 2 s for 2.5 hours: one gap-session, cut every max_events
    cols = good_rows()
    extra = {
        "request_id": [f"long-{i}" for i in range(n)], "uid": ["binge"] * n, "sku": [f"s{i % 50}" for i in range(n)],
        "action": ["page_view"] * n, "event_time_ms": [T0 + 10 * HOUR + 2000 * i for i in range(n)],
        "site": ["books"] * n, "price": [2.0] * n,
    }
    return write(folder, "part-0.parquet", {k: v + extra[k] for k, v in cols.items()})


def _corrupt(folder: Path) -> int:
    write(folder, "part-0.parquet", good_rows())
    (folder / "part-1.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4)
    return 0


def _mixed(folder: Path) -> int:
    write(folder, "part-0.parquet", good_rows())
    cols = good_rows(10)
    cols["event_time_ms"] = [str(v) for v in cols["event_time_ms"]]
    write(folder, "part-1.parquet", cols)
    return 0


def _empty(folder: Path) -> int:
    schema = pa.schema([("request_id", pa.string()), ("uid", pa.string()), ("sku", pa.string()), ("action", pa.string()),
                        ("event_time_ms", pa.int64()), ("site", pa.string()), ("price", pa.float64())])
    return write(folder, "part-0.parquet", {n: [] for n in schema.names}, schema)


def _raw_with_extra_column(spark, raw):
    from pyspark.sql import functions as F

    return raw.withColumn("campaign", F.lit("spring"))


def _raw_without_value(spark, raw):
    return raw.drop("value")


def _check_ids(spark, wh) -> None:
    clean = spark.read.parquet(str(wh.partition("clean/events", DAY)))
    users = {r.user_id for r in clean.collect()}
    assert "José-ü-東京-🎧" in users
    assert "книга-1" in {r.item_id for r in clean.collect()}
    q = spark.read.parquet(str(wh.partition("quarantine/events", DAY))).collect()
    assert [r.parse_error for r in q] == ["user_id: not valid UTF-8: 4a6f73e9"]


def _check_long_session(spark, wh) -> None:
    s = spark.read.parquet(str(wh.partition("sessions", DAY))).where("user_id = 'binge'")
    sizes = sorted(r["count"] for r in s.groupBy("session_id").count().collect())
    assert sizes == [500, 1000, 1000, 1000, 1000]


CASES = [
    Case("extra column in the log", _extra_column, "accepted",
         check=lambda spark, wh: None),
    Case("missing column", _without("sku"), "error", message="part-0.parquet has no column 'sku' (mapped from 'item_id')"),
    Case("renamed column", _renamed("uid", "user"), "error", message="has no column 'uid' (mapped from 'user_id')"),
    Case("extra column in a raw partition", _extra_column, "gate", gate="raw",
         message="ExpectTableColumnsToMatchSet", raw_override=_raw_with_extra_column),
    Case("missing column in a raw partition", _extra_column, "gate", gate="raw",
         message="ExpectTableColumnsToMatchSet", raw_override=_raw_without_value),
    Case("null and empty ids", _edit(uid=lambda i, v: None if i % 50 == 0 else v, sku=lambda i, v: "" if i % 40 == 1 else v),
         "quarantine", reasons={"null_id": 8 + 10}),
    Case("duplicate event ids", _edit(request_id=lambda i, v: "dup" if i in (5, 6, 7) else v), "quarantine",
         reasons={"duplicate": 2}),
    Case("out-of-window and future timestamps",
         _edit(event_time_ms=lambda i, v: 0 if i == 3 else (v + 30 * HOUR if i in (4, 5) else v)), "quarantine",
         reasons={"ts_out_of_window": 1, "ts_future": 2}, config={"clean": {"ts_min": "2020-01-01T00:00:00Z"}}),
    Case("timezone-shifted day (local UTC+8 written as UTC)", _edit(event_time_ms=lambda i, v: v - 8 * HOUR), "gate",
         gate="clean", message="quarantine_share", config={"gates": {"drift": "fail"}}),
    Case("empty partition", _empty, "accepted", config={}),
    Case("bot-like user with 100k events", _bot, "quarantine", reasons={"bot_user": 100_000}),
    Case("latin-1 and unicode ids", _ids, "quarantine", reasons={"parse_error": 1}, check=_check_ids),
    Case("negative values", _edit(price=lambda i, v: -v if i % 100 == 0 else v), "quarantine",
         reasons={"negative_value": 4}),
    Case("extremely long session", _long_session, "accepted", check=_check_long_session),
    Case("corrupt Parquet file", _corrupt, "error", message="part-1.parquet is not a readable Parquet file"),
    Case("mixed types in a column", _mixed, "error",
         message="column 'event_time_ms' has type int64 in"),
    Case("unparseable value and unknown action", _edit(action=lambda i, v: "hover" if i < 3 else v), "quarantine",
         reasons={"unknown_event_type": 3}),
]
