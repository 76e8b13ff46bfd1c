"""Gate ``sequences``: arrays of equal size = length <= max length, indexes inside the
vocabularies, one row per user and day, splits well-formed, vocabulary indexes unique and
contiguous, and the new-item rate of each day (drift)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.warehouse import Warehouse
from pipelines.gates.check import CRITICAL, WARNING, Frame
from pipelines.gates.expect import columns, numbers_frame, read_table, unique, vocab_max

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def frames(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse) -> list[Frame]:
    items_max = vocab_max(spark, wh, layout.VOCAB_ITEMS, "item_idx", days[-1])
    users_max = vocab_max(spark, wh, layout.VOCAB_USERS, "user_idx", days[-1])
    rate = new_item_rate(spark, cfg, wh, days)
    return [*sequence_frames(spark, cfg, wh, days, items_max, users_max), splits_frame(spark, wh, days, items_max),
            vocabulary_frame(spark, wh, days[-1], items_max), *([rate] if rate else [])]


def sequence_frames(spark: "SparkSession", cfg: Config, wh: Warehouse, days: list[date], items_max: int,
                    users_max: int) -> list[Frame]:
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    from pipelines.core.schema import SEQUENCE

    checked = read_table(spark, wh, layout.SEQUENCES, days).select(
        "*", F.array_min("item_idx").alias("min_item"), F.array_max("item_idx").alias("max_item"),
        ((F.size("item_idx") == F.col("length")) & (F.size("ts") == F.col("length"))
         & (F.size("event_type") == F.col("length"))).alias("sizes_match"),
        (F.col("n_new") <= F.col("length")).alias("new_within_length"),
        (F.col("n_events") >= F.col("length")).alias("count_covers_length"),
        F.concat_ws("/", F.col("user_idx").cast("string"), F.col("dt").cast("string")).alias("user_day"),
    )
    return [
        Frame(layout.SEQUENCES, checked, [
            *columns(SEQUENCE, extra=("min_item", "max_item", "sizes_match", "new_within_length",
                                      "count_covers_length", "user_day")),
            (gxe.ExpectColumnValuesToBeBetween(column="length", min_value=1, max_value=cfg.sequences.max_length), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="min_item", min_value=1), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="max_item", max_value=items_max), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="user_idx", min_value=1, max_value=users_max), CRITICAL),
            *[(gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[True]), CRITICAL)
              for c in ("sizes_match", "new_within_length", "count_covers_length")],
        ]),
        unique(layout.SEQUENCES, checked, "user_day"),
    ]


def splits_frame(spark: "SparkSession", wh: Warehouse, days: list[date], items_max: int) -> Frame:
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    splits = read_table(spark, wh, layout.SPLITS, days).select(
        "*", F.size("target_idx").alias("targets"), F.array_max("target_idx").alias("max_target"))
    return Frame(layout.SPLITS, splits, [
        (gxe.ExpectColumnValuesToBeInSet(column="protocol", value_set=["loo", "temporal"]), CRITICAL),
        (gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["valid", "test"]), CRITICAL),
        (gxe.ExpectColumnValuesToBeBetween(column="history_len", min_value=1), CRITICAL),
        (gxe.ExpectColumnValuesToBeBetween(column="targets", min_value=1), CRITICAL),
        (gxe.ExpectColumnValuesToBeBetween(column="max_target", min_value=1, max_value=items_max), CRITICAL),
    ])


def vocabulary_frame(spark: "SparkSession", wh: Warehouse, last: date, items_max: int) -> Frame:
    """The item vocabulary as of ``last``: indexes unique and contiguous 1..max, keys unique."""
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    from pipelines.etl.spark import read_partitions

    vocab = read_partitions(spark, wh, layout.VOCAB_ITEMS, wh.days_upto(layout.VOCAB_ITEMS, last))
    return Frame(layout.VOCAB_ITEMS, vocab.select("item_idx", "domain", "item_id",
                                                  F.concat_ws("\u001f", "domain", "item_id").alias("item_key")), [
        (gxe.ExpectColumnValuesToBeUnique(column="item_idx"), CRITICAL),
        (gxe.ExpectColumnValuesToBeUnique(column="item_key"), CRITICAL),
        (gxe.ExpectColumnMaxToBeBetween(column="item_idx", min_value=items_max, max_value=items_max), CRITICAL),
        (gxe.ExpectTableRowCountToEqual(value=items_max), CRITICAL),
    ])


def new_item_rate(spark: "SparkSession", cfg: Config, wh: Warehouse, days: list[date]) -> Frame | None:
    """Items first seen on a day among the items active that day (drift; not on the first day,
    when every item is new)."""
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    sessions = read_table(spark, wh, layout.SESSIONS, days)
    active = {r["dt"]: int(r["n"]) for r in sessions.groupBy("dt").agg(F.countDistinct("domain", "item_id").alias("n")).collect()}
    first_day = min(wh.partition_dates(layout.VOCAB_ITEMS), default=None)
    rows = []
    for d in days:
        m = wh.read_manifest("sequences", f"dt={d.isoformat()}") or {}
        if active.get(d) and d != first_day:
            rows.append({"dt": d.isoformat(), "new_item_rate": m.get("new_items", 0) / active[d]})
    if not rows:
        return None
    severity = CRITICAL if cfg.gates.drift == "fail" else WARNING
    return Frame("sequences drift", numbers_frame(rows), [
        (gxe.ExpectColumnValuesToBeBetween(column="new_item_rate", max_value=cfg.gates.max_new_item_rate), severity)])
