"""Clean: every raw event of a day becomes a clean event or a quarantined one with a reason.

Rules, first match wins (so each quarantined row has exactly one reason):

==================== ==========================================================================
reason               rule
==================== ==========================================================================
parse_error          the adapter could not parse a field (detail kept in ``parse_error``)
null_id              user_id, item_id or domain null or empty
unknown_event_type   event_type not in ``clean.event_types``
ts_out_of_window     ts outside [``clean.ts_min``, ``clean.ts_max``)
ts_future            ts after the end of the partition's day
late_arrival         ts before the start of the partition's day (logged a day or more late)
negative_value       value < 0 (ratings, play counts and prices are never negative)
duplicate            an earlier row (by ts, then source) has the same event_id
bot_user             the user has more than ``clean.bot_max_events_per_day`` valid events that day
==================== ==========================================================================

Rows in = rows out + rows quarantined, per day, always: the stage checks it before it returns.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.errors import AccountingError
from pipelines.core.warehouse import Warehouse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

REASONS = (
    "parse_error", "null_id", "unknown_event_type", "ts_out_of_window", "ts_future",
    "late_arrival", "negative_value", "duplicate", "bot_user",
)


def read_raw(spark: "SparkSession", wh: Warehouse, days: list[date]) -> "DataFrame":
    """Raw events of every source for the days (an empty frame when there are none)."""
    from pyspark.sql import functions as F

    from pipelines.core.schema import EVENT

    paths = wh.raw_paths(days)
    if not paths:
        empty = spark.createDataFrame([], EVENT).withColumn("parse_error", F.lit(None).cast("string"))
        return empty.withColumn("source", F.lit(None).cast("string"))
    return spark.read.option("basePath", str(wh.table(layout.RAW_EVENTS))).parquet(*paths)


def label(raw: "DataFrame", cfg: Config) -> "DataFrame":
    """Add ``reason`` (null for a clean row) by the rules of the module docstring."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    c = cfg.clean
    day_start = F.to_timestamp(F.col("dt"))
    day_end = F.to_timestamp(F.date_add(F.col("dt"), 1))
    empty = lambda col: F.col(col).isNull() | (F.trim(F.col(col)) == "")  # noqa: E731
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
        .when(F.col("value") < 0, "negative_value")
    )
    df = raw.withColumn("reason", reason)
    # Duplicates: among rows that passed the row rules, keep the first per event_id.
    first = Window.partitionBy("event_id").orderBy(
        F.col("reason").isNotNull(), "ts", "source", "user_id", "item_id", "event_type", "value")
    df = df.withColumn("reason", F.when(
        F.col("reason").isNull() & (F.row_number().over(first) > 1), F.lit("duplicate")).otherwise(F.col("reason")))
    # Bot-like users: too many valid events in one day. Their ids are few: broadcast them.
    bots = (df.where(F.col("reason").isNull()).groupBy("user_id", "dt").count()
            .where(F.col("count") > c.bot_max_events_per_day).select("user_id", "dt", F.lit(True).alias("_bot")))
    df = df.join(F.broadcast(bots), ["user_id", "dt"], "left")
    return df.withColumn("reason", F.when(F.col("reason").isNull() & F.col("_bot"), F.lit("bot_user"))
                         .otherwise(F.col("reason"))).drop("_bot")


def run(spark: "SparkSession", cfg: Config, days: list[date]) -> None:
    """Clean the raw events of ``days`` into ``clean/events`` and ``quarantine/events``."""
    from pyspark.sql import functions as F

    from pipelines.core.schema import EVENT_COLUMNS
    from pipelines.etl.spark import write_daily

    wh = Warehouse(cfg.warehouse)
    inputs = wh.raw_paths(days)
    labeled = label(read_raw(spark, wh, days), cfg).persist()
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
