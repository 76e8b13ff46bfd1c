"""Graphs: the day's item-transition and user-item edge lists, and their node tables.

- ``graphs/item_transitions/dt=D``: (src_idx, dst_idx) for consecutive events of one session on
  D (the first event of D may follow the previous day's event of the same session), with
  ``count`` and ``weight`` (the summed ``graphs.event_weights`` of the destination events).
  Consecutive repeats of one item are not transitions unless ``graphs.drop_self_loops`` is off.
- ``graphs/user_item/dt=D``: (user_idx, item_idx) with count, weight, first and last time on D.
- ``graphs/item_nodes/dt=D``: item_idx, domain, item_id, events, users, out- and in-degree on D.
- ``graphs/user_nodes/dt=D``: user_idx, user_id, events, items, sessions on D.
- ``graphs/social/dt=D``: user-user edges first seen on D, when a source ingested any
  (``pipelines/etl/social.py``).

Counts and weights are additive, so the graph as of D is the sum over days up to D
(``sql/graph_asof.sql``). Node ids are vocabulary indexes (``vocab/items``, ``vocab/users``).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.runs import transaction
from pipelines.core.sqlfiles import spark_sql
from pipelines.core.warehouse import Warehouse
from pipelines.etl import social

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def _vocab(spark: "SparkSession", wh: Warehouse, table: str, last: date) -> "DataFrame":
    days = wh.require_upto(table, last, who="graphs", hint="run sequences first")
    from pipelines.etl.spark import read_partitions

    return read_partitions(spark, wh, table, days)


def build_graphs(
    sessions: "DataFrame", items: "DataFrame", users: "DataFrame", cfg: Config
) -> tuple[dict[str, "DataFrame"], list["DataFrame"]]:
    """The four tables of the module docstring from session rows and the vocabularies.

    Also returns the persisted intermediate frames, for the caller to unpersist after writing.
    """
    from pyspark.sql import functions as F

    g = cfg.graphs
    weight = F.create_map(*[F.lit(x) for kv in g.event_weights.items() for x in kv])[F.col("event_type")]
    sessions.withColumn("weight", weight.cast("double")).createOrReplaceTempView("steps")
    by_id = spark_sql(sessions.sparkSession, "item_transitions", drop_self_loops=g.drop_self_loops)
    idx = items.select("domain", "item_id", "item_idx")
    # Each of these feeds several tables: computed once, written from memory.
    transitions = (
        by_id.join(idx.toDF("src_domain", "src_item_id", "src_idx"), ["src_domain", "src_item_id"])
        .join(idx.toDF("dst_domain", "dst_item_id", "dst_idx"), ["dst_domain", "dst_item_id"])
    ).persist()
    ev = (sessions.join(idx, ["domain", "item_id"])
          .join(users.select("user_id", "user_idx"), ["user_id"])
          .select("dt", "user_idx", "user_id", "item_idx", "domain", "item_id", "session_id", "ts",
                  weight.cast("double").alias("w"))).persist()
    user_item = ev.groupBy("dt", "user_idx", "item_idx").agg(
        F.count(F.lit(1)).alias("count"), F.sum("w").alias("weight"),
        F.min("ts").alias("first_ts"), F.max("ts").alias("last_ts"))
    out_deg = transitions.groupBy("dt", F.col("src_idx").alias("item_idx")).agg(F.count(F.lit(1)).alias("out_degree"))
    in_deg = transitions.groupBy("dt", F.col("dst_idx").alias("item_idx")).agg(F.count(F.lit(1)).alias("in_degree"))
    item_nodes = (
        ev.groupBy("dt", "item_idx", "domain", "item_id")
        .agg(F.count(F.lit(1)).alias("events"), F.countDistinct("user_idx").alias("users"))
        .join(out_deg, ["dt", "item_idx"], "left").join(in_deg, ["dt", "item_idx"], "left")
        .fillna(0, ["out_degree", "in_degree"])
    )
    user_nodes = ev.groupBy("dt", "user_idx", "user_id").agg(
        F.count(F.lit(1)).alias("events"), F.countDistinct("item_idx").alias("items"),
        F.countDistinct("session_id").alias("sessions"))
    tables: dict[str, DataFrame] = {
        layout.ITEM_TRANSITIONS: transitions.select("src_idx", "dst_idx", F.col("count").cast("long"), "weight", "dt"),
        layout.USER_ITEM: user_item.select("user_idx", "item_idx", F.col("count").cast("long"), "weight",
                                             "first_ts", "last_ts", "dt"),
        layout.ITEM_NODES: item_nodes.select("item_idx", "domain", "item_id", "events", "users",
                                               F.col("out_degree").cast("long"), F.col("in_degree").cast("long"), "dt"),
        layout.USER_NODES: user_nodes.select("user_idx", "user_id", "events", "items", "sessions", "dt"),
    }
    return tables, [transitions, ev]


def run(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse | None = None) -> None:
    """Edge lists and node tables for ``days`` from ``sessions`` and the vocabularies.

    In the run of ``wh`` (the ETL's), or in a run of its own (``pipelines/core/runs.py``)."""
    with transaction(wh or Warehouse(cfg.warehouse), "etl") as wh:
        _write(spark, cfg, days, wh)


def _write(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse) -> None:
    """The stage's reads and writes, in the run of ``wh``."""
    from pipelines.etl.spark import read_partitions, write_daily

    wh.require_partitions(layout.SESSIONS, days, who="graphs", hint="run sessionize first")
    sessions = read_partitions(spark, wh, layout.SESSIONS, days)
    rows_in = {r["dt"]: int(r["count"]) for r in sessions.groupBy("dt").count().collect()}
    users = _vocab(spark, wh, layout.VOCAB_USERS, days[-1])
    tables, cached = build_graphs(sessions, _vocab(spark, wh, layout.VOCAB_ITEMS, days[-1]), users, cfg)
    try:
        stats = {name: write_daily(df, wh, name, days) for name, df in tables.items()}
    finally:
        for df in cached:
            df.unpersist()
    friends = social.write(spark, wh, days, users) if social.has_social(wh) else {}
    for d in days:
        wh.write_stage_manifest(
            "graphs", d, rows_in=rows_in.get(d, 0), rows_out=int(stats[layout.ITEM_TRANSITIONS][d]["rows"]),
            outputs={name: s[d] for name, s in stats.items()}, inputs=[str(wh.partition(layout.SESSIONS, d))],
            config=cfg.graphs,
            edges={"item_transitions": int(stats[layout.ITEM_TRANSITIONS][d]["rows"]),
                   "user_item": int(stats[layout.USER_ITEM][d]["rows"])},
            **({"social": friends[d]} if friends else {}),
        )
