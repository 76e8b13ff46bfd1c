"""Clean: every raw event of a day becomes a clean event or a quarantined one with a reason.

Rules, first match wins (so each quarantined row has exactly one reason):

==================== ==========================================================================
reason               rule
==================== ==========================================================================
parse_error          the adapter could not parse a field (detail kept in ``parse_error``), or
                     its time is outside years 1..9999
null_id              user_id, item_id or domain null, empty or only whitespace (tabs, CR/LF,
                     Unicode spaces included)
unknown_event_type   event_type not in ``clean.event_types``
ts_out_of_window     ts outside [``clean.ts_min``, ``clean.ts_max``)
ts_future            ts after the end of the partition's day
late_arrival         ts before the start of the partition's day (logged a day or more late)
invalid_value        value is NaN or infinite
negative_value       value < 0 (ratings, play counts and prices are never negative)
duplicate            another row with the same event_id passed the rules above earlier on the
                     same day (by ts, then source, ...) or on one of the ``clean.duplicate_window_days``
                     days before it
bot_user             the user has more than ``clean.bot_max_events_per_day`` valid events that day
==================== ==========================================================================

Rows in = rows out + rows quarantined, per day, always: the stage checks it before it returns.

Duplicates are judged over a window that does not depend on how days are grouped into runs: the
day, plus the ``duplicate_window_days`` days before it, committed or in the same range; so a range
run and day-by-day runs give the same rows.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.runs import transaction
from pipelines.core.errors import AccountingError
from pipelines.core.warehouse import Warehouse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

REASONS = (
    "parse_error", "null_id", "unknown_event_type", "ts_out_of_window", "ts_future",
    "late_arrival", "invalid_value", "negative_value", "duplicate", "bot_user",
)
#: An id made only of whitespace is no id (Java regex: ``\s`` with Unicode spaces and the BOM).
BLANK = r"^[\s\p{Z}\x{FEFF}]*$"


def read_raw(spark: "SparkSession", wh: Warehouse, days: list[date]) -> "DataFrame":
    """Raw events of every source for the days (an empty frame when there are none)."""
    from pyspark.sql import functions as F

    from pipelines.core.schema import EVENT

    paths = wh.raw_paths(days)
    if not paths:
        empty = spark.createDataFrame([], EVENT).withColumn("parse_error", F.lit(None).cast("string"))
        return empty.withColumn("source", F.lit(None).cast("string"))
    from pipelines.etl.spark import read_paths

    return read_paths(spark, wh, paths)


def label(raw: "DataFrame", cfg: Config, seen: "DataFrame | None" = None) -> "DataFrame":
    """Add ``reason`` (null for a clean row) by the rules of the module docstring. ``seen``: the
    (event_id, dt) of rows of earlier days that passed the row rules (the duplicate window's
    committed days before the run's)."""
    from pyspark.sql import functions as F

    c = cfg.clean
    day_start = F.to_timestamp(F.col("dt"))
    day_end = F.to_timestamp(F.date_add(F.col("dt"), 1))
    empty = lambda col: F.col(col).isNull() | F.col(col).rlike(BLANK)  # noqa: E731
    in_window = F.lit(True)
    if c.ts_min is not None:
        in_window = in_window & (F.col("ts") >= F.lit(c.ts_min))
    if c.ts_max is not None:
        in_window = in_window & (F.col("ts") < F.lit(c.ts_max))
    reason = (
        F.when(F.col("parse_error").isNotNull(), "parse_error")
        .when(empty("user_id") | empty("item_id") | empty("domain"), "null_id")
        .when(~F.col("event_type").isin(*c.event_types) | F.col("event_type").isNull(), "unknown_event_type")
        .when(F.col("ts").isNull(), "parse_error")
        .when(~in_window, "ts_out_of_window")
        .when(F.col("ts") >= day_end, "ts_future")
        .when(F.col("ts") < day_start, "late_arrival")
        .when(F.isnan("value") | (F.abs("value") == float("inf")), "invalid_value")
        .when(F.col("value") < 0, "negative_value")
    )
    df = _duplicates(raw.withColumn("reason", reason), c.duplicate_window_days, seen)
    # Bot-like users: too many valid events in one day. Their ids are few: broadcast them.
    bots = (df.where(F.col("reason").isNull()).groupBy("user_id", "dt").count()
            .where(F.col("count") > c.bot_max_events_per_day).select("user_id", "dt", F.lit(True).alias("_bot")))
    df = df.join(F.broadcast(bots), ["user_id", "dt"], "left")
    return df.withColumn("reason", F.when(F.col("reason").isNull() & F.col("_bot"), F.lit("bot_user"))
                         .otherwise(F.col("reason"))).drop("_bot")


def _duplicates(df: "DataFrame", window_days: int, seen: "DataFrame | None") -> "DataFrame":
    """Mark ``duplicate`` the rows (that passed the row rules) whose event_id passed them earlier
    on their day, or on one of the ``window_days`` days before (in ``df`` or in ``seen``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ok = F.col("reason").isNull()
    # Rows that passed come first, so the first of them is row 1 whatever failed before it.
    first = Window.partitionBy("event_id", "dt").orderBy(
        ok.desc(), "ts", "source", "user_id", "item_id", "event_type", "value")
    df = df.withColumn("_n", F.when(ok, F.row_number().over(first)))
    if window_days > 0:
        passed = df.where(ok).select("event_id", F.col("dt").alias("_seen_dt"))
        if seen is not None:
            passed = passed.unionByName(seen.select("event_id", F.col("dt").alias("_seen_dt")))
        earlier = (df.where(ok).select("event_id", "dt").distinct().join(passed.distinct(), "event_id")
                   .where((F.col("_seen_dt") < F.col("dt")) & (F.col("_seen_dt") >= F.date_sub(F.col("dt"), window_days)))
                   .select("event_id", "dt").distinct().withColumn("_earlier", F.lit(True)))
        df = df.join(earlier, ["event_id", "dt"], "left")
    else:
        df = df.withColumn("_earlier", F.lit(None).cast("boolean"))
    dup = ok & ((F.col("_n") > 1) | F.col("_earlier").isNotNull())
    return df.withColumn("reason", F.when(dup, F.lit("duplicate")).otherwise(F.col("reason"))).drop("_n", "_earlier")


def seen_before(spark: "SparkSession", wh: Warehouse, days: list[date], window_days: int) -> "DataFrame | None":
    """(event_id, dt) of the rows that passed the row rules on the committed days of the duplicate
    window before ``days``: clean events, and quarantined ones marked duplicate or bot_user."""
    from pyspark.sql import functions as F

    from pipelines.etl.spark import read_partitions

    start = min(days)
    before = [start - timedelta(days=k) for k in range(window_days, 0, -1)]
    before = [d for d in before if wh.has_partition(layout.CLEAN_EVENTS, d) and d not in days]
    if not before:
        return None
    clean = read_partitions(spark, wh, layout.CLEAN_EVENTS, before).select("event_id", "dt")
    frames = [clean]
    if [d for d in before if wh.has_partition(layout.QUARANTINE_EVENTS, d)]:
        q = read_partitions(spark, wh, layout.QUARANTINE_EVENTS, before)
        frames.append(q.where(F.col("reason").isin("duplicate", "bot_user")).select("event_id", "dt"))
    return frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])


def run(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse | None = None) -> None:
    """Clean the raw events of ``days`` into ``clean/events`` and ``quarantine/events``.

    In the run of ``wh`` (the ETL's), or in a run of its own (``pipelines/core/runs.py``)."""
    with transaction(wh or Warehouse(cfg.warehouse), "etl") as wh:
        _write(spark, cfg, days, wh)


def _write(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse) -> None:
    """The stage's reads and writes, in the run of ``wh``."""
    from pyspark.sql import functions as F

    from pipelines.core.schema import EVENT_COLUMNS
    from pipelines.etl.spark import write_daily

    inputs = wh.raw_paths(days)
    seen = seen_before(spark, wh, days, cfg.clean.duplicate_window_days)
    labeled = label(read_raw(spark, wh, days), cfg, seen).persist()
    try:
        tally: dict[date, dict[str, int]] = defaultdict(dict)
        for row in labeled.groupBy("dt", "reason").count().collect():
            tally[row["dt"]][row["reason"] or "ok"] = int(row["count"])
        clean = labeled.where(F.col("reason").isNull()).select(*EVENT_COLUMNS)
        quarantine = labeled.where(F.col("reason").isNotNull()).select(
            *EVENT_COLUMNS[:-1], "source", "parse_error", "reason", "dt")
        q_stats = write_daily(quarantine, wh, layout.QUARANTINE_EVENTS, days)
        c_stats = write_daily(clean, wh, layout.CLEAN_EVENTS, days)
    finally:
        labeled.unpersist()
    for d in days:
        counts = tally.get(d, {})
        rows_in = sum(counts.values())
        out, quarantined = int(c_stats[d]["rows"]), int(q_stats[d]["rows"])
        if rows_in != out + quarantined:
            raise AccountingError(f"clean {d}: rows in {rows_in} != out {out} + quarantined {quarantined}")
        wh.write_stage_manifest(
            "clean", d, rows_in=rows_in, rows_out=out, rows_quarantined=quarantined,
            by_reason={r: n for r, n in counts.items() if r != "ok"},
            outputs={layout.CLEAN_EVENTS: c_stats[d], layout.QUARANTINE_EVENTS: q_stats[d]},
            inputs=[p for p in inputs if p.endswith(f"dt={d.isoformat()}")], config=cfg.clean,
        )
