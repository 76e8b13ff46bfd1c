"""Sessionize: gap-based sessions per user with stable ids, continued across midnight.

Per (user_id, session_hint), events ordered by (ts, event_id) form one session until a gap
strictly longer than ``sessionize.gap_minutes`` (a gap of exactly the threshold stays in the
session), or until ``sessionize.max_events`` events, after which the next event starts a new
session. A source's own session ids (``session_hint``, e.g. DIGINETICA) are boundaries: events of
two source sessions never share a session.

Each row gets ``session_seq`` (1-based position), ``session_start``, and the previous event of
its session (``prev_item_id``, ``prev_domain``, ``gap_s`` in seconds; null for a session's first
event). A session id is ``md5(user | hint | first event id)[:16]``: the same events give the same id on
every run. A session still open at midnight continues the next day: the run for day D reads the
last event of each user from ``sessions/dt=D-1`` (when it ended within the gap of midnight) and
carries its id, position and start. A range run does the same once, before its first day, so a
range and day-by-day runs give the same rows. The window query is ``sql/sessionize.sql``.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.runs import transaction
from pipelines.core.errors import AccountingError, WarehouseError
from pipelines.core.sqlfiles import spark_sql
from pipelines.core.warehouse import Warehouse, day_bounds

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def carry_rows(spark: "SparkSession", wh: Warehouse, cfg: Config, first_day: date) -> "DataFrame | None":
    """Last event per (user, hint) of the day before ``first_day``, if it ended within the gap."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    prev = first_day - timedelta(days=1)
    if not wh.has_partition(layout.SESSIONS, prev):
        if wh.has_partition(layout.CLEAN_EVENTS, prev):
            raise WarehouseError(
                f"sessionize {first_day}: sessions of {prev} are missing but its clean events exist; "
                f"sessionize {prev} first (or run a range that starts earlier), so sessions can continue across midnight")
        return None
    cutoff = day_bounds(first_day)[0] - timedelta(minutes=cfg.sessionize.gap_minutes)
    last = Window.partitionBy("user_id", "session_hint").orderBy(F.col("ts").desc(), F.col("event_id").desc())
    prev_sessions = spark.read.parquet(str(wh.partition(layout.SESSIONS, prev)))
    return (
        prev_sessions.where(F.col("ts") >= F.lit(cutoff))
        .withColumn("_rn", F.row_number().over(last)).where("_rn = 1")
        .select(
            "event_id", "user_id", "item_id", "event_type", "ts", "domain", "value", "session_hint",
            F.lit(prev).alias("dt"), F.unix_micros("ts").alias("ts_us"), F.lit(1).alias("is_carry"),
            F.col("session_id").alias("carry_session_id"), F.col("session_seq").alias("carry_seq"),
            F.unix_micros("session_start").alias("carry_start_us"),
        )
    )


def build_sessions(spark: "SparkSession", events: "DataFrame", carry: "DataFrame | None", cfg: Config) -> "DataFrame":
    """Sessions of ``events`` (clean events), continuing the carried sessions."""
    from pyspark.sql import functions as F

    from pipelines.core.schema import SESSION_EVENT

    ev = events.select(
        "event_id", "user_id", "item_id", "event_type", "ts", "domain", "value", "session_hint", "dt",
        F.unix_micros("ts").alias("ts_us"), F.lit(0).alias("is_carry"),
        F.lit(None).cast("string").alias("carry_session_id"), F.lit(None).cast("int").alias("carry_seq"),
        F.lit(None).cast("bigint").alias("carry_start_us"),
    )
    if carry is not None:
        ev = ev.unionByName(carry)
    ev.createOrReplaceTempView("events")
    s = cfg.sessionize
    out = spark_sql(spark, "sessionize", gap_us=int(round(s.gap_minutes * 60_000_000)), max_events=s.max_events)
    out = out.withColumn("session_start", F.timestamp_micros("session_start_us")).drop("session_start_us")
    return out.select(*SESSION_EVENT.names)


def run(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse | None = None) -> None:
    """Sessionize the clean events of ``days`` into ``sessions/dt=D``.

    In the run of ``wh`` (the ETL's), or in a run of its own (``pipelines/core/runs.py``)."""
    with transaction(wh or Warehouse(cfg.warehouse), "etl") as wh:
        _write(spark, cfg, days, wh)


def _write(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse) -> None:
    """The stage's reads and writes, in the run of ``wh``."""
    from pyspark.sql import functions as F

    from pipelines.etl.spark import read_partitions, write_daily

    inputs = wh.require_partitions(layout.CLEAN_EVENTS, days, who="sessionize", hint="run clean first")
    events = read_partitions(spark, wh, layout.CLEAN_EVENTS, days)
    sessions = build_sessions(spark, events, carry_rows(spark, wh, cfg, days[0]), cfg)
    stats = write_daily(sessions, wh, layout.SESSIONS, days)
    rows_in = {r["dt"]: int(r["count"]) for r in events.groupBy("dt").count().collect()}
    n_sessions = {r["dt"]: int(r["s"]) for r in read_partitions(spark, wh, layout.SESSIONS, days)
                  .groupBy("dt").agg(F.countDistinct("session_id").alias("s")).collect()}
    for d in days:
        n_in, n_out = rows_in.get(d, 0), int(stats[d]["rows"])
        if n_in != n_out:
            raise AccountingError(f"sessionize {d}: {n_in} clean events in, {n_out} session rows out")
        wh.write_stage_manifest(
            "sessionize", d, rows_in=n_in, rows_out=n_out, outputs={layout.SESSIONS: stats[d]},
            inputs=[p for p in inputs if p.endswith(d.isoformat())], config=cfg.sessionize,
            sessions=n_sessions.get(d, 0),
        )
