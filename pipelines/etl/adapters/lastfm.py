"""Last.fm HetRec 2011 (https://grouplens.org/datasets/hetrec-2011/): plays, tag events, artist metadata."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.core.config import IngestConfig
from pipelines.etl.adapters.common import (Parsed, file_order_ts, file_uri, need_file, number, read_text_table, to_events,
                                           to_social)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def read(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """Last.fm HetRec 2011: plays (``user_artists.dat``) and tag events (``user_taggedartists.dat``).

    Plays carry a play count (``value``) but no time: their ``ts`` is the configured base date plus
    file order in ms. Tag events have a day; tags and artist names become item metadata. Friend
    relations (``user_friends.dat``, each listed in both directions) are the social edges, seen
    at the base date (the file has no time either).
    """
    from pyspark.sql import functions as F

    what = "lastfm"
    domain = cfg.domain if cfg.domain != "default" else "music"
    plays_f = need_file(path / "user_artists.dat", what)
    plays = read_text_table(spark, [plays_f], ["user", "artist", "weight"], "\t", header=True)
    plays = file_order_ts(plays, cfg.synthetic_base_date, {file_uri(plays_f): 0})
    weight, w_err = number(F.col("weight"), "weight")
    play_events = to_events(plays, user=F.col("user"), item=F.col("artist"), event_type=F.lit("play"), ts=F.col("ts"),
                          domain=F.lit(domain), value=weight, errors=[w_err])
    files = [plays_f]
    frames = [play_events]
    tagged_f = path / "user_taggedartists.dat"
    if tagged_f.is_file():
        tagged = read_text_table(spark, [tagged_f], ["user", "artist", "tag", "day", "month", "year"], "\t", header=True)
        ts = F.try_to_timestamp(F.concat_ws("-", "year", "month", "day"), F.lit("yyyy-M-d"))
        err = F.when(ts.isNull(), F.concat(F.lit("ts: cannot parse day/month/year "), F.concat_ws("/", "day", "month", "year")))
        # A user tags an artist with several tags on one day: the tag makes each event distinct.
        tag_id = F.substring(F.sha2(F.concat_ws("|", F.lit("tag"), "user", "artist", "tag", "year", "month", "day"), 256), 1, 24)
        frames.append(to_events(tagged, user=F.col("user"), item=F.col("artist"), event_type=F.lit("tag"), ts=ts,
                              domain=F.lit(domain), event_id=tag_id, errors=[err]))
        files.append(tagged_f)
    items = _artists(spark, path, tagged if tagged_f.is_file() else None, domain, files)
    social = _friends(spark, path / "user_friends.dat", cfg)
    if social is not None:
        files.append(path / "user_friends.dat")
    events = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    notes = {"ts_synthetic": "plays only", "order": "plays: file order; tags: their day, ties by event_id",
             "base_date": cfg.synthetic_base_date.isoformat(),
             **({"social": "user_friends.dat: edges seen at the base date (no time in the file)"} if social else {})}
    return Parsed(events, items, files, notes, social=social)


def _friends(spark: "SparkSession", file: Path, cfg: IngestConfig) -> "DataFrame | None":
    """The friend relations of ``user_friends.dat`` as social edges seen at the base date (None
    without the file)."""
    from pyspark.sql import functions as F

    if not file.is_file():
        return None
    friends = read_text_table(spark, [file], ["user", "friend"], "\t", header=True)
    return to_social(friends, user=F.col("user"), friend=F.col("friend"),
                     ts=F.lit(cfg.synthetic_base_date).cast("timestamp"))


def _artists(spark: "SparkSession", path: Path, tagged: "DataFrame | None", domain: str,
             files: list[Path]) -> "DataFrame | None":
    """Item metadata from ``artists.dat`` (names, pictures) and the tag events' most used tags
    (``tags.dat`` names them); None without ``artists.dat``. The files read are added to ``files``."""
    from pyspark.sql import functions as F

    artists_f = path / "artists.dat"
    if not artists_f.is_file():
        return None
    artists = read_text_table(spark, [artists_f], ["id", "name", "url", "picture"], "\t", header=True)
    tags = None
    if tagged is not None and (path / "tags.dat").is_file():
        names = read_text_table(spark, [path / "tags.dat"], ["tag", "tag_value"], "\t", header=True, encoding="ISO-8859-1")
        counts = tagged.groupBy("artist", "tag").count().join(names.select("tag", "tag_value"), "tag")
        # Most used tags first, ties by name, at most 20 per artist.
        tags = counts.groupBy("artist").agg(
            F.slice(F.transform(F.sort_array(F.collect_list(F.struct((-F.col("count")).alias("n"), F.col("tag_value").alias("t")))),
                                lambda s: s["t"]), 1, 20).alias("tags"))
        files.append(path / "tags.dat")
    items = artists.select(F.col("id").alias("artist"), "name", "picture")
    if tags is not None:
        # Some tagged artists are missing from artists.dat: they get a row with their tags only.
        items = items.join(tags, "artist", "full_outer")
    else:
        items = items.withColumn("tags", F.lit(None).cast("array<string>"))
    items = items.select(
        F.lit(domain).alias("domain"), F.col("artist").alias("item_id"), F.col("name").alias("title"),
        F.element_at(F.col("tags"), 1).alias("category"), F.col("tags"),
        F.concat_ws(". ", F.col("name"), F.concat(F.lit("Tags: "), F.array_join(F.coalesce(F.col("tags"), F.array()), ", "))).alias("text"),
        F.col("picture").alias("image_url"),
    )
    files.append(artists_f)
    return items
