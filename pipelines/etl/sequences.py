"""Sequences: append-only vocabularies, per-user histories as of each day, and evaluation splits.

Vocabularies (``vocab/items/dt=D``, ``vocab/users/dt=D``) hold the ids first seen on day D with
their integer index. Indexes start at 1 (0 is padding for models) and are given in order of
first appearance (time, then event id), after every index of earlier days: an index never
changes once given, so embeddings of two days are comparable and incremental training can
grow its tables. The vocabulary as of D is the union of the partitions up to D.

``sequences/dt=D`` has one row per user active on D: the user's history up to the end of D,
bounded to the last ``sequences.max_length`` events (ordered by time, then event id), as arrays
of item index, event type and time, plus the total event count and ``n_new``, how many of the
kept events happened on D. The history of *every* user as of D is each user's latest row with
``dt <= D`` (``sql/sequences_asof.sql``): a day stores only what changed, so a long, sparse
history (Last.fm's six years) costs its active user-days, not users x days.

``splits/dt=D`` makes the evaluation protocols explicit, identical for every method compared:

- ``loo`` (leave-one-out): ``test`` predicts a user's last event from everything before it,
  ``valid`` the second-to-last from everything before that (users with at least 3 events); as of
  D it is, like the sequences, each user's latest row up to D;
- ``temporal``: ``test`` predicts the distinct items of day D from the history before D,
  ``valid`` the last event before D from the events before it (users active on D).

Each row is (user_idx, protocol, split, history_len, target_idx): the model reads the first
``history_len`` events of the user's sequence and is scored on ``target_idx``.

A range run computes every day of the range from the day before it in one pass, and gives the
same rows as day-by-day runs.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.runs import transaction
from pipelines.core.errors import AccountingError, WarehouseError
from pipelines.core.warehouse import Warehouse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def _read_before(spark: "SparkSession", wh: Warehouse, table: str, day: date, schema) -> "DataFrame":
    """All partitions of ``table`` strictly before ``day`` (an empty frame if none)."""
    days = wh.days_before(table, day)
    if not days:
        return spark.createDataFrame([], schema)
    from pipelines.etl.spark import read_partitions

    df = read_partitions(spark, wh, table, days)
    return df.select(*schema.names)


def extend_vocab(
    events: "DataFrame", known: "DataFrame", keys: list[str], idx: str, wh: Warehouse, table: str, days: list[date]
) -> tuple["DataFrame", dict]:
    """Give new ids (``keys``) of ``events`` the next indexes; write them by first-seen day.

    Returns the vocabulary as of the range's last day and the write statistics.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from pipelines.etl.spark import read_partitions, write_daily

    start = known.agg(F.max(idx)).collect()[0][0] or 0
    first = events.groupBy(*keys).agg(F.min(F.struct("ts", "event_id")).alias("_first"))
    new = first.join(known.select(*keys), keys, "left_anti")
    order = Window.orderBy(F.col("_first.ts"), F.col("_first.event_id"), *keys)
    new = new.select(
        (F.lit(start) + F.row_number().over(order)).cast("int").alias(idx), *keys,
        F.col("_first.ts").alias("first_seen"), F.to_date(F.col("_first.ts")).alias("dt"),
    )
    stats = write_daily(new, wh, table, days)
    later = [d for d in wh.partition_dates(table) if d > days[-1]]
    if later:
        # Indexes of later days were given after the old version of this range; they must be rebuilt.
        first_later = events.sparkSession.read.parquet(str(wh.partition(table, later[0])))
        low = first_later.agg(F.min(idx)).collect()[0][0]
        top = start + sum(int(s["rows"]) for s in stats.values())
        if low is not None and low <= top:
            raise WarehouseError(
                f"{table}: rebuilt {days[0]}..{days[-1]} now ends at index {top}, but {later[0]} starts at {low}; "
                f"rerun the ETL from {days[0]} to {later[-1]} so later indexes follow")
    vocab = read_partitions(events.sparkSession, wh, table, wh.days_upto(table, days[-1]))
    return vocab, stats


def build_snapshots(events: "DataFrame", prev: "DataFrame", max_length: int) -> "DataFrame":
    """One row per (user, day) for the days of ``events`` on which the user is active.

    ``events`` (user_idx, user_id, item_idx, event_type, ts, event_id, dt) are the range's events;
    ``prev`` is every user's latest sequence row before the range (the state to continue).
    """
    from pyspark.sql import functions as F

    elem = lambda ts, eid, item, kind: F.struct(  # noqa: E731
        ts.alias("ts"), eid.alias("event_id"), item.alias("item_idx"), kind.alias("event_type"))
    new = events.groupBy("user_idx", "user_id").agg(
        F.array_sort(F.collect_list(elem(F.col("ts"), F.col("event_id"), F.col("item_idx"), F.col("event_type")))).alias("new"),
        F.collect_set("dt").alias("active"),
    )
    # The previous state's events are all earlier than the range: they go first, as they are.
    old = prev.select(
        "user_idx", "n_events",
        F.transform(F.arrays_zip("ts", "item_idx", "event_type"),
                    lambda z: elem(z["ts"], F.lit(""), z["item_idx"], z["event_type"])).alias("old"),
    )
    users = new.join(old, ["user_idx"], "left").select(
        "user_idx", "user_id", "new", F.explode("active").alias("dt"),
        F.coalesce("old", F.array().cast(new.schema["new"].dataType)).alias("old"),
        F.coalesce("n_events", F.lit(0).cast("long")).alias("n_old"),
    )
    upto = F.filter("new", lambda e: e["ts"] < F.to_timestamp(F.date_add(F.col("dt"), 1)))
    snap = users.select("user_idx", "user_id", "dt", "n_old", F.concat("old", upto).alias("hist"), F.size(upto).alias("n_upto"))
    kept = F.slice("hist", F.greatest(F.lit(1), F.size("hist") - max_length + 1), max_length)
    snap = snap.select("user_idx", "user_id", "dt", (F.col("n_old") + F.col("n_upto")).alias("n_events"), kept.alias("kept"))
    return snap.select(
        F.col("user_idx").cast("int"), "user_id",
        F.transform("kept", lambda e: e["item_idx"]).alias("item_idx"),
        F.transform("kept", lambda e: e["event_type"]).alias("event_type"),
        F.transform("kept", lambda e: e["ts"]).alias("ts"),
        F.size("kept").cast("int").alias("length"),
        F.col("n_events").cast("long"),
        F.size(F.filter("kept", lambda e: e["ts"] >= F.to_timestamp(F.col("dt")))).cast("int").alias("n_new"),
        "dt",
    )


def latest_before(spark: "SparkSession", wh: Warehouse, table: str, key: str, day: date, schema) -> "DataFrame":
    """Each ``key``'s latest row in the partitions of ``table`` strictly before ``day``."""
    from pyspark.sql import functions as F

    rows = _read_before(spark, wh, table, day, schema)
    cols = [c for c in rows.columns if c != key]
    latest = rows.groupBy(key).agg(F.max_by(F.struct(*cols), "dt").alias("_r"))
    return latest.select(key, *[F.col("_r")[c].alias(c) for c in cols])


def build_splits(seq: "DataFrame") -> "DataFrame":
    """Leave-one-out and temporal targets from the snapshots (see the module docstring)."""
    from pyspark.sql import functions as F

    L, n_new = F.col("length"), F.col("n_new")
    at = lambda pos: F.array(F.element_at("item_idx", pos))  # noqa: E731  (1-based)
    rows = [
        ("loo", "valid", L - 2, at(L - 1), L >= 3),
        ("loo", "test", L - 1, at(L), L >= 3),
        ("temporal", "valid", L - n_new - 1, at(L - n_new), L - n_new >= 2),
        ("temporal", "test", L - n_new, F.array_distinct(F.slice("item_idx", L - n_new + 1, n_new)),
         (n_new > 0) & (L - n_new >= 1)),
    ]
    parts = [
        seq.where(cond).select(
            "user_idx", F.lit(protocol).alias("protocol"), F.lit(split).alias("split"),
            hist.cast("int").alias("history_len"), target.alias("target_idx"), "dt")
        for protocol, split, hist, target, cond in rows
    ]
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def run(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse | None = None) -> None:
    """Vocabularies, sequences and splits for ``days`` from ``sessions``.

    In the run of ``wh`` (the ETL's), or in a run of its own (``pipelines/core/runs.py``)."""
    with transaction(wh or Warehouse(cfg.warehouse), "etl") as wh:
        _write(spark, cfg, days, wh)


def _write(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse) -> None:
    """The stage's reads and writes, in the run of ``wh``."""
    from pipelines.core.schema import SEQUENCE, VOCAB_ITEM, VOCAB_USER
    from pipelines.etl.spark import read_partitions, write_daily

    wh.require_partitions(layout.SESSIONS, days, who="sequences", hint="run sessionize first")
    prev_day = days[0] - timedelta(days=1)
    if wh.has_partition(layout.SESSIONS, prev_day) and not wh.has_partition(layout.SEQUENCES, prev_day):
        raise WarehouseError(f"sequences {days[0]}: sequences of {prev_day} are missing but its sessions exist; "
                             f"build {prev_day} first (or run a range that starts earlier)")
    prev = latest_before(spark, wh, layout.SEQUENCES, "user_idx", days[0], SEQUENCE)

    events = read_partitions(spark, wh, layout.SESSIONS, days).select(
        "event_id", "user_id", "item_id", "domain", "event_type", "ts", "dt").persist()
    try:
        items, item_stats = extend_vocab(events, _read_before(spark, wh, layout.VOCAB_ITEMS, days[0], VOCAB_ITEM),
                                         ["domain", "item_id"], "item_idx", wh, layout.VOCAB_ITEMS, days)
        users, user_stats = extend_vocab(events, _read_before(spark, wh, layout.VOCAB_USERS, days[0], VOCAB_USER),
                                         ["user_id"], "user_idx", wh, layout.VOCAB_USERS, days)
        indexed = (events.join(items.select("domain", "item_id", "item_idx"), ["domain", "item_id"])
                   .join(users.select("user_id", "user_idx"), ["user_id"]))
        seq = build_snapshots(indexed, prev, cfg.sequences.max_length).persist()
        try:
            seq_stats = write_daily(seq, wh, layout.SEQUENCES, days)
            split_stats = write_daily(build_splits(seq), wh, layout.SPLITS, days)
        finally:
            seq.unpersist()
        per_day = {r["dt"]: int(r["count"]) for r in events.groupBy("dt").count().collect()}
        joined = {r["dt"]: int(r["count"]) for r in indexed.groupBy("dt").count().collect()}
    finally:
        events.unpersist()
    for d in days:
        if per_day.get(d, 0) != joined.get(d, 0):
            raise AccountingError(f"sequences {d}: {per_day.get(d, 0)} events, {joined.get(d, 0)} found in the vocabularies")
        wh.write_stage_manifest(
            "sequences", d, rows_in=per_day.get(d, 0), rows_out=int(seq_stats[d]["rows"]),
            outputs={layout.SEQUENCES: seq_stats[d], layout.SPLITS: split_stats[d], layout.VOCAB_ITEMS: item_stats[d],
                     layout.VOCAB_USERS: user_stats[d]},
            inputs=[str(wh.partition(layout.SESSIONS, d))], config=cfg.sequences,
            new_items=int(item_stats[d]["rows"]), new_users=int(user_stats[d]["rows"]),
        )
