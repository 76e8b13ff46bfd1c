"""Taobao UserBehavior (https://tianchi.aliyun.com/dataset/649): views, carts, favourites, buys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.core.config import IngestConfig
from pipelines.etl.adapters.common import Parsed, epoch_ts, to_events, input_files, read_text_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def read(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """Taobao UserBehavior CSV: ``user,item,category,behavior,unix seconds`` without header."""
    from pyspark.sql import functions as F

    files = input_files(path, "taobao", (".csv",))
    domain = cfg.domain if cfg.domain != "default" else "taobao"
    df = read_text_table(spark, files, ["user", "item", "category", "behavior", "ts"], ",")
    ts, ts_err = epoch_ts(F.col("ts"), "s")
    mapping = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy", **cfg.event_type_map}
    kind = F.coalesce(F.create_map(*[F.lit(x) for kv in mapping.items() for x in kv])[F.col("behavior")], F.col("behavior"))
    events = to_events(df, user=F.col("user"), item=F.col("item"), event_type=kind, ts=ts,
                     domain=F.lit(domain), errors=[ts_err])
    items = (
        df.where(F.col("item").isNotNull() & F.col("category").isNotNull())
        .groupBy("item").agg(F.min("category").alias("category"))
        .select(F.lit(domain).alias("domain"), F.col("item").alias("item_id"), F.lit(None).cast("string").alias("title"),
                F.col("category"), F.array(F.col("category")).alias("tags"),
                F.concat(F.lit("category "), F.col("category")).alias("text"), F.lit(None).cast("string").alias("image_url"))
    )
    return Parsed(events, items, files, {"timezone": "unix seconds (UTC); the dataset's days are UTC+8"})
