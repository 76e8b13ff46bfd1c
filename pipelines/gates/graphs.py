"""Gate ``graphs``: counts >= 1, weights > 0, node ids inside the vocabularies, no self-loops
(when configured), first time <= last time of every user-item edge; on the social graph (when
the warehouse has one), both ends in the user vocabulary, no self-loops and each edge once."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.warehouse import Warehouse
from pipelines.gates.check import CRITICAL, Frame
from pipelines.etl.social import has_social
from pipelines.gates.expect import columns, read_table, unique, vocab_max

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def frames(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse) -> list[Frame]:
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    from pipelines.core.schema import ITEM_TRANSITION, USER_ITEM

    items_max = vocab_max(spark, wh, layout.VOCAB_ITEMS, "item_idx", days[-1])
    users_max = vocab_max(spark, wh, layout.VOCAB_USERS, "user_idx", days[-1])
    trans = read_table(spark, wh, layout.ITEM_TRANSITIONS, days).withColumn(
        "self_loop", F.col("src_idx") == F.col("dst_idx"))
    ui = read_table(spark, wh, layout.USER_ITEM, days)
    positive = lambda c: (gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True), CRITICAL)  # noqa: E731
    in_vocab = lambda c, top: (gxe.ExpectColumnValuesToBeBetween(column=c, min_value=1, max_value=top), CRITICAL)  # noqa: E731
    trans_checks = [*columns(ITEM_TRANSITION, extra=("self_loop",)), positive("count"), positive("weight"),
                    in_vocab("src_idx", items_max), in_vocab("dst_idx", items_max)]
    if cfg.graphs.drop_self_loops:
        trans_checks.append((gxe.ExpectColumnValuesToBeInSet(column="self_loop", value_set=[False]), CRITICAL))
    social = _social(spark, wh, days, users_max) if has_social(wh) else []
    return [
        *social,
        Frame(layout.ITEM_TRANSITIONS, trans, trans_checks),
        Frame(layout.USER_ITEM, ui, [*columns(USER_ITEM), positive("count"), positive("weight"),
                                     in_vocab("user_idx", users_max), in_vocab("item_idx", items_max),
                                     (gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                                         column_A="last_ts", column_B="first_ts", or_equal=True), CRITICAL)]),
    ]


def _social(spark: "SparkSession", wh: Warehouse, days: list[date], users_max: int) -> list[Frame]:
    """The social graph's frames: its edges, and their (user, friend) keys (an edge is new on one day only)."""
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    from pipelines.core.schema import SOCIAL_EDGE

    edges = read_table(spark, wh, layout.SOCIAL, days).withColumn("self_loop", F.col("user_idx") == F.col("friend_idx"))
    in_vocab = [(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=1, max_value=users_max), CRITICAL)
                for c in ("user_idx", "friend_idx")]
    return [
        Frame(layout.SOCIAL, edges, [*columns(SOCIAL_EDGE, extra=("self_loop",)), *in_vocab,
                                     (gxe.ExpectColumnValuesToBeInSet(column="self_loop", value_set=[False]), CRITICAL)]),
        unique(f"{layout.SOCIAL} edges", edges.select(F.concat_ws(":", "user_idx", "friend_idx").alias("edge")), "edge"),
    ]
