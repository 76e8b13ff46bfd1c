"""MovieLens 100K (https://grouplens.org/datasets/movielens/100k/): ratings and movie metadata."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.core.config import IngestConfig
from pipelines.etl.adapters.common import Parsed, epoch_ts, to_events, need_file, number, read_text_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def read(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """MovieLens 100K: ``u.data`` (user, item, rating, unix seconds) and ``u.item`` (latin-1)."""
    from pyspark.sql import functions as F

    what = "movielens"
    data = need_file(path / "u.data" if path.is_dir() else path, what)
    root = data.parent
    domain = cfg.domain if cfg.domain != "default" else "movies"
    df = read_text_table(spark, [data], ["user", "item", "rating", "ts"], "\t")
    ts, ts_err = epoch_ts(F.col("ts"), "s")
    value, v_err = number(F.col("rating"), "rating")
    events = to_events(df, user=F.col("user"), item=F.col("item"), event_type=F.lit("rate"), ts=ts,
                     domain=F.lit(domain), value=value, errors=[ts_err, v_err])
    items = None
    files = [data]
    if (root / "u.item").is_file():
        genres = [g.split("|")[0] for g in (root / "u.genre").read_text(encoding="latin-1").splitlines() if g.strip()] \
            if (root / "u.genre").is_file() else [f"genre{i}" for i in range(19)]
        cols = ["item", "title", "release", "video_release", "url", *[f"g{i}" for i in range(len(genres))]]
        it = read_text_table(spark, [root / "u.item"], cols, "|", encoding="ISO-8859-1")
        tag_list = F.filter(F.array(*[F.when(F.col(f"g{i}") == "1", F.lit(g)) for i, g in enumerate(genres)]),
                            lambda x: x.isNotNull())
        items = it.select(
            F.lit(domain).alias("domain"), F.col("item").alias("item_id"), F.col("title"),
            F.array_join(tag_list, "|").alias("category"), tag_list.alias("tags"),
            F.concat_ws(". ", F.col("title"), F.concat(F.lit("Genres: "), F.array_join(tag_list, ", "))).alias("text"),
            F.lit(None).cast("string").alias("image_url"),
        )
        files.append(root / "u.item")
    return Parsed(events, items, files, {"order": "timestamp; ties by event_id (hash of the row)"})
