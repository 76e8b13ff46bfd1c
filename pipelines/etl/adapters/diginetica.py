"""DIGINETICA (CIKM Cup 2016, track 2): item views in the source's own sessions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.core.config import IngestConfig
from pipelines.etl.adapters.common import Parsed, to_events, input_files, read_text_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def read(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """DIGINETICA item views: ``session_id;user_id;item_id;timeframe;eventdate`` with header.

    The source has days, not clocks: ``ts`` = the day of the session's first event + ``timeframe``
    (ms since the session started), so a session that crosses midnight keeps its order. A session
    belongs to its known user (a few log in midway); anonymous ones (``NA``) get the user id
    ``anon:<session_id>``. The source's session id is kept as ``session_hint``, so sessionize
    keeps the source's sessions.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    files = input_files(path, "diginetica", (".csv",))
    domain = cfg.domain if cfg.domain != "default" else "diginetica"
    df = read_text_table(spark, files, ["session_id", "user_id", "item_id", "timeframe", "eventdate"], ";", header=True)
    session = Window.partitionBy("session_id")
    day = F.min(F.try_to_timestamp(F.col("eventdate"), F.lit("yyyy-MM-dd"))).over(session)
    known = F.min(F.when((F.col("user_id") != "NA") & (F.trim(F.col("user_id")) != ""), F.col("user_id"))).over(session)
    offset = F.col("timeframe").try_cast("bigint")
    ts = F.timestamp_micros(F.unix_micros(day) + offset * 1000)
    err = F.when(day.isNull() | offset.isNull(), F.concat(
        F.lit("ts: cannot parse eventdate/timeframe "), F.coalesce(F.col("eventdate"), F.lit("null")), F.lit("/"),
        F.coalesce(F.col("timeframe"), F.lit("null"))))
    user = F.coalesce(known, F.concat(F.lit("anon:"), F.col("session_id")))
    events = to_events(df, user=user, item=F.col("item_id"), event_type=F.lit("view"), ts=ts,
                     domain=F.lit(domain), session_hint=F.col("session_id"), errors=[err])
    return Parsed(events, None, files, {
        "users": "a session's known user, else anon:<session_id>", "sessions": "source session ids kept",
        "clock": "day of the session's first event + timeframe (ms since session start)"})
