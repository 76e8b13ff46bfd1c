"""The social graph: ``graphs/social/dt=D``, the user-user edges first seen on D, from ``raw/social``.

A raw row (``user_id`` befriends or follows ``friend_id``, from any source) becomes the edge
(``user_idx``, ``friend_idx``) of the user vocabulary as of its day, on the first day it is seen:
a repeat of an edge seen before (on an earlier day, or earlier the same day) adds nothing, so the
graph as of D is the union of the partitions up to D (``sql/social_asof.sql``). Edges are directed
as the source gives them; a source of mutual friendships lists both directions (Last.fm does).

A row no edge can be made of goes to ``quarantine/social/dt=D`` with its ``reason``:

- ``null_id``: the user or the friend id is null or blank;
- ``self_loop``: a user befriends themselves;
- ``unknown_user`` / ``unknown_friend``: an id that is not in ``vocab/users`` as of the row's day
  (a user is in the vocabulary from their first clean event; an edge to someone who has never
  acted is no use to a model, and is kept here rather than dropped).

Each day's graphs manifest counts them: rows in = new edges + repeats + quarantined.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from pipelines.core import warehouse as layout
from pipelines.core.warehouse import Warehouse

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

REASONS = ("null_id", "self_loop", "unknown_user", "unknown_friend")


def has_social(wh: Warehouse) -> bool:
    """Whether any source ingested social edges (the graphs stage builds the table only then)."""
    return bool(wh.raw_sources(layout.RAW_SOCIAL))


def _blank(c: str) -> "Column":
    from pyspark.sql import functions as F

    return F.col(c).isNull() | (F.trim(F.col(c)) == "")


def judge(raw: "DataFrame", users: "DataFrame") -> "DataFrame":
    """Raw social rows with ``user_idx``, ``friend_idx`` and ``reason`` (null for a usable row;
    module docstring), from the user vocabulary rows ``users`` (user_id, user_idx, dt)."""
    from pyspark.sql import functions as F

    u = users.select("user_id", "user_idx", F.col("dt").alias("_u_dt"))
    f = users.select(F.col("user_id").alias("friend_id"), F.col("user_idx").alias("friend_idx"), F.col("dt").alias("_f_dt"))
    rows = raw.join(u, "user_id", "left").join(f, "friend_id", "left")
    reason = (F.when(_blank("user_id") | _blank("friend_id"), F.lit("null_id"))
              .when(F.col("user_id") == F.col("friend_id"), F.lit("self_loop"))
              .when(F.col("user_idx").isNull() | (F.col("_u_dt") > F.col("dt")), F.lit("unknown_user"))
              .when(F.col("friend_idx").isNull() | (F.col("_f_dt") > F.col("dt")), F.lit("unknown_friend")))
    return rows.withColumn("reason", reason).drop("_u_dt", "_f_dt")


def new_edges(judged: "DataFrame", prior: "DataFrame | None") -> "DataFrame":
    """The edges of the usable ``judged`` rows that ``prior`` (the graph's partitions of other
    days) lacks before the row's day, each on the first day it is seen, with the earliest time of
    that day (its day's start when the source gives no time)."""
    from pyspark.sql import functions as F

    usable = judged.where(F.col("reason").isNull())
    if prior is not None:
        p = prior.select(F.col("user_idx").alias("_pu"), F.col("friend_idx").alias("_pf"), F.col("dt").alias("_pdt"))
        seen = (usable.user_idx == p._pu) & (usable.friend_idx == p._pf) & (p._pdt < usable.dt)
        usable = usable.join(p, seen, "left_anti")
    first = usable.groupBy("user_idx", "friend_idx").agg(
        F.min(F.struct("dt", F.coalesce(F.col("ts"), F.col("dt").cast("timestamp")).alias("ts"))).alias("f"))
    return first.select(F.col("user_idx").cast("int"), F.col("friend_idx").cast("int"),
                        F.col("f.ts").alias("first_ts"), F.col("f.dt").alias("dt"))


def write(spark: "SparkSession", wh: Warehouse, days: list[date], users: "DataFrame") -> dict[date, dict[str, Any]]:
    """``graphs/social`` and ``quarantine/social`` for ``days`` in the run of ``wh``, from every
    source's ``raw/social`` of those days; returns each day's counts and write stats."""
    from pyspark.sql import functions as F

    from pipelines.core.schema import QUARANTINE_SOCIAL, RAW_SOCIAL, SOCIAL_EDGE
    from pipelines.etl.spark import read_partitions, read_paths, write_daily

    paths = [p for s in wh.raw_sources(layout.RAW_SOCIAL) for p in wh.existing_partitions(f"{layout.RAW_SOCIAL}/source={s}", days)]
    raw_cols = [f.name for f in RAW_SOCIAL.fields]
    if paths:
        raw = read_paths(spark, wh, paths).select(*raw_cols)
    else:
        raw = spark.createDataFrame([], RAW_SOCIAL)
    # Days not rerun (before the range, or between the days of an erasure's rerun): their edges are known.
    others = [d for d in wh.partition_dates(layout.SOCIAL) if d < days[-1] and d not in set(days)]
    prior = read_partitions(spark, wh, layout.SOCIAL, others) if others else None
    judged = judge(raw, users).persist()
    try:
        edges = new_edges(judged, prior)
        q_cols = [f.name for f in QUARANTINE_SOCIAL.fields]
        stats = {
            layout.SOCIAL: write_daily(edges.select(*[f.name for f in SOCIAL_EDGE.fields]), wh, layout.SOCIAL, days),
            layout.QUARANTINE_SOCIAL: write_daily(judged.where(F.col("reason").isNotNull()).select(*q_cols), wh,
                                                  layout.QUARANTINE_SOCIAL, days),
        }
        counts = {(r["dt"], r["reason"]): int(r["count"]) for r in judged.groupBy("dt", "reason").count().collect()}
    finally:
        judged.unpersist()
    return {d: _day_counts(d, counts, stats) for d in days}


def _day_counts(d: date, counts: dict[tuple[date, str | None], int], stats: dict[str, dict[date, Any]]) -> dict[str, Any]:
    """One day's social entry of the graphs manifest."""
    by_reason = {r: n for (day, r), n in counts.items() if day == d and r is not None}
    rows_in = sum(n for (day, _), n in counts.items() if day == d)
    edges = int(stats[layout.SOCIAL][d]["rows"])
    return {"rows_in": rows_in, "edges": edges, "repeats": rows_in - edges - sum(by_reason.values()),
            "rows_quarantined": sum(by_reason.values()), "quarantine_by_reason": dict(sorted(by_reason.items())),
            "outputs": {name: s[d] for name, s in stats.items()}}
