"""Cross-domain datasets: for each pair of ``cross_domain.pairs``, its aligned users, their mixed
sequences and its splits, as of each day.

A pair names a source and a target domain (values of the events' ``domain`` column). Its users
are keyed by ``user_id``: the target-domain id, so a user's representation is the target's.
Without a mapping, one ``user_id`` in both domains is one person. With one (Parquet rows of
source id, target id, one-to-one), a source user is the target user it maps to; a user absent
from it is unaligned (``aligned = false``) and keeps its own id, which must not be a target id.

Tables, per pair and day (``cross_domain/<table>/pair=P/dt=D``), one row per user of the pair
active on D, each the user's state as of D (the state as of D of every user is their latest row
up to D, as for ``sequences``):

- ``users``: ``role`` (``both``, ``source_only``, ``target_only``: which domains the user has
  events in, up to D), event counts per domain up to D, and ``cold``;
- ``sequences``: the mixed sequence: the user's events of both domains in time order (ties:
  the global order, time then event id; across the two ids of a mapped user, source first),
  each with its ``domain``, the last ``sequences.max_length`` of them, from ``sequences/dt=D``;
- ``splits``: ``warm`` users (every user not cold with at least 3 target events) are evaluated on
  the target's own leave-one-out: ``test`` predicts their last target event, ``valid`` the one
  before, from the mixed sequence before it; ``cold`` users are the cold-start-in-target set.

Cold-start-in-target (the protocol of PTUPCDR, Zhu et al. WSDM 2022, and CDRIB, Cao et al. ICDE
2022): a share ``cross_domain.cold_share`` of the overlapping users (role ``both``), chosen by a
seeded hash of the user id, whose target events are in no training table of the pair: their
mixed sequence holds their source events only, and their distinct target items are the targets
of one split (``valid`` or ``test``, by a second hash), predicted from that source history. A
user is cold or not for good: the hash is fixed and ``both`` never goes back. Rankings of the
target cover the target's items only (item keys are ``(domain, item_id)``).

The manifest of each pair and day carries the overlap statistics as of D: users and items per
domain, overlapping users, the share of target users with source history, and interactions
per role. A range is computed in one pass and gives the same rows as its days one by one.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config, CrossDomainConfig, CrossDomainPair
from pipelines.core.errors import AccountingError, InputError, WarehouseError
from pipelines.core.runs import transaction
from pipelines.core.warehouse import Warehouse, pair_table

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

ROLES = ("both", "source_only", "target_only")
#: Hash buckets of the cold draw: a user is cold when its bucket is below ``cold_share * BUCKETS``.
BUCKETS = 10_000


def run(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse | None = None) -> None:
    """Every configured pair's tables for ``days`` from ``sessions`` and ``sequences``; nothing
    when ``cross_domain.pairs`` is empty."""
    if not cfg.cross_domain.pairs:
        return
    with transaction(wh or Warehouse(cfg.warehouse), "etl") as wh:
        for pair in cfg.cross_domain.pairs:
            _write(spark, cfg, pair, days, wh)


def cold_bucket(user_id: "Column", seed: int, salt: str = "cold") -> "Column":
    """A user's hash bucket in [0, BUCKETS): the same for a user on every day and in every run."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(F.lit(seed), F.lit(salt), user_id), F.lit(BUCKETS))


def is_cold(role: "Column", user_id: "Column", cd: CrossDomainConfig) -> "Column":
    from pyspark.sql import functions as F

    return (role == "both") & (cold_bucket(user_id, cd.seed) < F.lit(round(cd.cold_share * BUCKETS)))


def read_mapping(spark: "SparkSession", pair: CrossDomainPair, cfg: Config) -> "DataFrame":
    """The pair's mapping as (``s``, ``t``) rows; a clear error for a missing file or column, a
    null id or an id mapped twice. In a pseudonymous warehouse the mapping's ids (the user's own
    file, outside the warehouse) are pseudonymized as ingest did the events'."""
    from pathlib import Path

    from pyspark.sql import functions as F

    src, tgt = pair.mapping_columns
    where = f"cross_domain pair {pair.name}: mapping {pair.mapping}"
    if "://" not in str(pair.mapping) and not Path(str(pair.mapping)).exists():
        raise InputError(f"{where}: not found")
    df = spark.read.parquet(str(pair.mapping))
    missing = [c for c in (src, tgt) if c not in df.columns]
    if missing:
        raise InputError(f"{where}: no column(s) {missing} (it has {df.columns}); set mapping_columns")
    m = df.select(F.col(src).cast("string").alias("s"), F.col(tgt).cast("string").alias("t"))
    if cfg.privacy.pseudonymize:
        from pipelines.core.privacy import require_key
        from pipelines.etl.privacy import pseudonym_column

        key = require_key(cfg.privacy.key_env, cfg.privacy.key_file, why=where)
        m = m.select(pseudonym_column(F.col("s"), key).alias("s"), pseudonym_column(F.col("t"), key).alias("t"))
    nulls = m.where(F.col("s").isNull() | F.col("t").isNull()).count()
    if nulls:
        raise InputError(f"{where}: {nulls} row(s) with a null id in {src} or {tgt}")
    for col, name in (("s", src), ("t", tgt)):
        dup = m.groupBy(col).count().where("count > 1").limit(3).collect()
        if dup:
            raise InputError(f"{where}: column {name}: ids mapped more than once (the mapping must be "
                             f"one-to-one), e.g. {[r[col] for r in dup]}")
    return m


def align(events: "DataFrame", pair: CrossDomainPair, mapping: "DataFrame | None") -> "DataFrame":
    """The pair's events (``user_id``, ``domain``, ...) with the pair's user key and its ids.

    Adds ``side`` (``source``/``target``) and replaces ``user_id`` by the pair's key; adds
    ``source_user_id`` and ``target_user_id`` (the user's ids in the events of each domain; null
    for an unaligned user's other side) and ``aligned``.
    """
    from pyspark.sql import functions as F

    side = F.when(F.col("domain") == pair.source, "source").otherwise("target")
    ev = events.where(F.col("domain").isin(pair.source, pair.target)).withColumn("side", side)
    if mapping is None:
        return ev.select("*", F.col("user_id").alias("source_user_id"), F.col("user_id").alias("target_user_id"),
                         F.lit(True).alias("aligned"))
    src = (ev.where("side = 'source'").join(mapping, F.col("user_id") == F.col("s"), "left")
           .select(*[c for c in ev.columns if c != "user_id"], F.coalesce("t", "user_id").alias("user_id"),
                   F.col("user_id").alias("source_user_id"), F.col("t").alias("target_user_id"),
                   F.col("t").isNotNull().alias("aligned")))
    tgt = (ev.where("side = 'target'").join(mapping, F.col("user_id") == F.col("t"), "left")
           .select(*[c for c in ev.columns if c != "user_id"], "user_id",
                   F.col("s").alias("source_user_id"), F.col("user_id").alias("target_user_id"),
                   F.col("s").isNotNull().alias("aligned")))
    return src.unionByName(tgt)


IDS = ["user_id", "source_user_id", "target_user_id", "aligned"]


def _check_ids(keyed: "DataFrame", mapping: "DataFrame", pair: CrossDomainPair) -> None:
    """An unaligned source user keeps its id: it must not be a target user's id too."""
    from pyspark.sql import functions as F

    targets = keyed.where("side = 'target'").select("user_id").union(mapping.select(F.col("t").alias("user_id")))
    clash = (keyed.where("NOT aligned AND side = 'source'").select("user_id")
             .join(targets, "user_id", "left_semi").limit(3).collect())
    if clash:
        raise InputError(f"cross_domain {pair.name}: source users absent from the mapping {pair.mapping} have ids that "
                         f"are also target ids, e.g. {[r.user_id for r in clash]}; map them or give the domains distinct ids")


def _users(spark: "SparkSession", cfg: Config, keyed: "DataFrame", wh: Warehouse, table: str, first: date) -> "DataFrame":
    """One row per user and active day: event counts per domain up to the day, role, cold; with
    the day's counts and the state before the range (``base_*``) for the overlap deltas."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from pipelines.core.schema import CROSS_DOMAIN_USER
    from pipelines.etl.sequences import latest_before

    daily = keyed.groupBy(*IDS, "dt").agg(
        F.sum(F.when(F.col("side") == "source", 1).otherwise(0)).cast("long").alias("src_day"),
        F.sum(F.when(F.col("side") == "target", 1).otherwise(0)).cast("long").alias("tgt_day"))
    prev = latest_before(spark, wh, table, "user_id", first, CROSS_DOMAIN_USER).select(
        "user_id", F.col("role").alias("base_role"), F.col("cold").alias("base_cold"),
        F.col("source_events").alias("base_src"), F.col("target_events").alias("base_tgt"))
    upto = Window.partitionBy("user_id").orderBy("dt").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    users = daily.join(prev, "user_id", "left").select(
        *IDS, "dt", "src_day", "tgt_day", "base_role", "base_cold", "base_src", "base_tgt",
        (F.coalesce("base_src", F.lit(0)) + F.sum("src_day").over(upto)).alias("source_events"),
        (F.coalesce("base_tgt", F.lit(0)) + F.sum("tgt_day").over(upto)).alias("target_events"))
    role = (F.when((F.col("source_events") > 0) & (F.col("target_events") > 0), "both")
            .when(F.col("source_events") > 0, "source_only").otherwise("target_only"))
    users = users.withColumn("role", role)
    return users.withColumn("cold", is_cold(F.col("role"), F.col("user_id"), cfg.cross_domain))


def _write(spark: "SparkSession", cfg: Config, pair: CrossDomainPair, days: list[date], wh: Warehouse) -> None:
    from pipelines.core.schema import CROSS_DOMAIN_USER
    from pipelines.etl.spark import read_partitions, write_daily

    who = f"cross_domain {pair.name}"
    wh.require_partitions(layout.SESSIONS, days, who=who, hint="run the ETL through sessionize first")
    wh.require_partitions(layout.SEQUENCES, days, who=who, hint="run the sequences stage first")
    users_t, seq_t, splits_t = (pair_table(t, pair.name) for t in
                                (layout.CROSS_DOMAIN_USERS, layout.CROSS_DOMAIN_SEQUENCES, layout.CROSS_DOMAIN_SPLITS))
    base = _overlap_base(wh, pair, wh.days_before(users_t, days[0]))
    mapping = read_mapping(spark, pair, cfg) if pair.mapping else None

    events = read_partitions(spark, wh, layout.SESSIONS, days).select("user_id", "domain", "dt")
    keyed = align(events, pair, mapping).persist()
    try:
        if mapping is not None:
            _check_ids(keyed, mapping, pair)
        users = _users(spark, cfg, keyed, wh, users_t, days[0]).persist()
        try:
            user_stats = write_daily(users.select(*CROSS_DOMAIN_USER.names), wh, users_t, days)
            seq = _sequences(spark, cfg, pair, wh, days, users.select(*IDS, "role", "cold", "dt")).persist()
            try:
                # The helper columns hold the cold users' targets: never in the training table.
                seq_stats = write_daily(seq.drop("_targets", "_tpos"), wh, seq_t, days)
                split_stats = write_daily(build_splits(seq, cfg.cross_domain), wh, splits_t, days)
            finally:
                seq.unpersist()
            deltas = _overlap_deltas(users)
        finally:
            users.unpersist()
        per_day = {r["dt"]: int(r["count"]) for r in keyed.groupBy("dt").count().collect()}
    finally:
        keyed.unpersist()
    counted = {d: v["src"] + v["tgt"] for d, v in deltas.items()}
    items = _items_per_domain(spark, wh, pair, days)
    stats = dict(base)
    for d in days:
        if counted.get(d, 0) != per_day.get(d, 0):
            raise AccountingError(f"{who} {d}: {per_day.get(d, 0)} events of the pair, {counted.get(d, 0)} counted per user")
        for k, v in deltas.get(d, {}).items():
            stats[k] = stats.get(k, 0) + v
        wh.write_stage_manifest(
            "cross_domain", d, rows_in=per_day.get(d, 0), rows_out=int(user_stats[d]["rows"]),
            outputs={users_t: user_stats[d], seq_t: seq_stats[d], splits_t: split_stats[d]},
            inputs=[str(wh.partition(layout.SESSIONS, d))], partition=f"pair={pair.name}",
            config={"pair": pair.model_dump(mode="json"), "cold_share": cfg.cross_domain.cold_share,
                    "seed": cfg.cross_domain.seed, "max_length": cfg.sequences.max_length},
            state=stats, overlap=overlap_figures(stats, items[d], pair))


#: The additive state behind the overlap figures: users per role, interactions per role, users
#: with events in each domain, cold users. Each day adds its users' new rows and removes their old.
STATE_KEYS = ("users_both", "users_source_only", "users_target_only", "events_both", "events_source_only",
              "events_target_only", "users_source", "users_target", "users_cold")


def _overlap_base(wh: Warehouse, pair: CrossDomainPair, before: list[date]) -> dict[str, int]:
    """The state as of the last day before the range (zeros before the pair's first day)."""
    if not before:
        return {k: 0 for k in STATE_KEYS}
    m = wh.read_manifest("cross_domain", f"pair={pair.name}/dt={before[-1].isoformat()}")
    if not m or "state" not in m:
        raise WarehouseError(f"cross_domain {pair.name}: the manifest of {before[-1]} is missing; rebuild the pair "
                             f"from its first day (seqrep etl --stages cross_domain --start ...)")
    return {k: int(m["state"].get(k, 0)) for k in STATE_KEYS}


def _overlap_deltas(users: "DataFrame") -> dict[date, dict[str, int]]:
    """Per day of the range: how the state changes (new rows in, the same users' previous rows out)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("user_id").orderBy("dt")
    u = users.select(
        "dt", "role", "cold", "source_events", "target_events", "src_day", "tgt_day",
        F.coalesce(F.lag("role").over(w), F.col("base_role")).alias("old_role"),
        F.coalesce(F.lag("cold").over(w), F.col("base_cold"), F.lit(False)).alias("old_cold"),
        F.coalesce(F.lag("source_events").over(w), F.col("base_src"), F.lit(0)).alias("old_src"),
        F.coalesce(F.lag("target_events").over(w), F.col("base_tgt"), F.lit(0)).alias("old_tgt"),
    )
    ind = lambda cond: F.sum(F.when(cond, 1).otherwise(0)).cast("long")  # noqa: E731
    total, old_total = F.col("source_events") + F.col("target_events"), F.col("old_src") + F.col("old_tgt")
    aggs = []
    for r in ROLES:
        aggs.append((ind(F.col("role") == r) - ind(F.col("old_role") == r)).alias(f"users_{r}"))
        aggs.append((F.sum(F.when(F.col("role") == r, total).otherwise(0))
                     - F.sum(F.when(F.col("old_role") == r, old_total).otherwise(0))).cast("long").alias(f"events_{r}"))
    aggs += [(ind(F.col("source_events") > 0) - ind(F.col("old_src") > 0)).alias("users_source"),
             (ind(F.col("target_events") > 0) - ind(F.col("old_tgt") > 0)).alias("users_target"),
             (ind(F.col("cold")) - ind(F.col("old_cold"))).alias("users_cold"),
             F.sum("src_day").cast("long").alias("src"), F.sum("tgt_day").cast("long").alias("tgt")]
    return {r["dt"]: {k: int(v or 0) for k, v in r.asDict().items() if k != "dt"} for r in u.groupBy("dt").agg(*aggs).collect()}


def _items_per_domain(spark: "SparkSession", wh: Warehouse, pair: CrossDomainPair, days: list[date]) -> dict[date, dict[str, int]]:
    """Items of each domain of the pair in the vocabulary as of each day of ``days``."""
    from pyspark.sql import functions as F

    from pipelines.etl.spark import read_partitions

    vdays = wh.days_upto(layout.VOCAB_ITEMS, days[-1])
    rows = (read_partitions(spark, wh, layout.VOCAB_ITEMS, vdays).where(F.col("domain").isin(pair.source, pair.target))
            .groupBy("dt", "domain").count().collect()) if vdays else []
    out, running = {}, {pair.source: 0, pair.target: 0}
    by_day: dict[date, dict[str, int]] = {}
    for r in rows:
        by_day.setdefault(r["dt"], {})[r["domain"]] = int(r["count"])
    for d in sorted(set(by_day) | set(days)):
        for dom, n in by_day.get(d, {}).items():
            running[dom] += n
        if d in days:
            out[d] = dict(running)
    return out


def overlap_figures(state: dict[str, int], items: dict[str, int], pair: CrossDomainPair) -> dict[str, object]:
    """The overlap statistics of a pair as of a day, from its state and item counts."""
    target_users = state["users_target"]
    return {
        "users": {pair.source: state["users_source"], pair.target: target_users},
        "items": {pair.source: items.get(pair.source, 0), pair.target: items.get(pair.target, 0)},
        "overlapping_users": state["users_both"],
        "target_users_with_source_history": state["users_both"] / target_users if target_users else 0.0,
        "users_by_role": {r: state[f"users_{r}"] for r in ROLES},
        "interactions_by_role": {r: state[f"events_{r}"] for r in ROLES},
        "cold_users": state["users_cold"],
    }


def _sequences(spark: "SparkSession", cfg: Config, pair: CrossDomainPair, wh: Warehouse, days: list[date],
               users: "DataFrame") -> "DataFrame":
    """The mixed sequence of each row of ``users`` (a user and a day), with two helper columns for
    the splits: ``_targets`` (the target items of the full sequence) and ``_tpos`` (their positions)."""
    from pyspark.sql import functions as F

    from pipelines.etl.spark import read_partitions

    glob = read_partitions(spark, wh, layout.SEQUENCES, days).select("user_idx", "user_id", "item_idx", "event_type", "ts", "dt")
    items = (read_partitions(spark, wh, layout.VOCAB_ITEMS, wh.days_upto(layout.VOCAB_ITEMS, days[-1]))
             .where(F.col("domain").isin(pair.source, pair.target)).select("item_idx", "domain"))
    key = ["user_id", "source_user_id", "target_user_id", "aligned", "role", "cold", "dt"]
    if pair.mapping is None:
        # One id in both domains: the user's global row of the day holds both sides in the global order.
        rows = users.join(glob, ["user_id", "dt"])
        sides = [rows.select(*key, F.lit(0).alias("rank"), F.col("user_idx").alias("source_user_idx"),
                             F.col("user_idx").alias("target_user_idx"), "item_idx", "event_type", "ts",
                             F.array(F.lit(pair.source), F.lit(pair.target)).alias("keep"))]
    else:
        sides = _mapped_sides(spark, wh, pair, days, users, glob, key)
    el = None
    for side in sides:
        e = side.select(*key, "rank", "keep", "source_user_idx", "target_user_idx",
                        F.posexplode(F.arrays_zip("ts", "item_idx", "event_type")).alias("pos", "e"))
        e = e.select(*key, "rank", "keep", "source_user_idx", "target_user_idx", "pos",
                     F.col("e.ts").alias("e_ts"), F.col("e.item_idx").alias("item_idx"), F.col("e.event_type").alias("e_type"))
        e = e.join(items, "item_idx").where(F.array_contains("keep", F.col("domain")))
        e = e.select(*key, "source_user_idx", "target_user_idx",
                     F.struct(F.col("e_ts").alias("ts"), "rank", "pos", "item_idx", "domain",
                              F.col("e_type").alias("event_type")).alias("el"))
        el = e if el is None else el.unionByName(e)
    full = el.groupBy(*key).agg(F.array_sort(F.collect_list("el")).alias("full"),
                                F.max("source_user_idx").alias("source_user_idx"), F.max("target_user_idx").alias("target_user_idx"))
    n = cfg.sequences.max_length
    full = full.select(*key, "source_user_idx", "target_user_idx",
                       F.slice("full", F.greatest(F.lit(1), F.size("full") - n + 1), n).alias("full"))
    tgt = F.lit(pair.target)
    visible = F.when(F.col("cold"), F.filter("full", lambda x: x["domain"] != tgt)).otherwise(F.col("full"))
    seq = full.select(
        *key, "source_user_idx", "target_user_idx", visible.alias("v"),
        F.transform(F.filter("full", lambda x: x["domain"] == tgt), lambda x: x["item_idx"]).alias("_targets"),
        F.filter(F.transform("full", lambda x, i: F.when(x["domain"] == tgt, i + 1)), lambda i: i.isNotNull()).alias("_tpos"))
    return seq.select(
        "user_id", F.col("source_user_idx").cast("int"), F.col("target_user_idx").cast("int"), "role", "cold",
        F.transform("v", lambda x: x["item_idx"]).alias("item_idx"),
        F.transform("v", lambda x: x["domain"]).alias("domain"),
        F.transform("v", lambda x: x["event_type"]).alias("event_type"),
        F.transform("v", lambda x: x["ts"]).alias("ts"),
        F.size("v").cast("int").alias("length"), "_targets", "_tpos", "dt")


def _mapped_sides(spark: "SparkSession", wh: Warehouse, pair: CrossDomainPair, days: list[date], users: "DataFrame",
                  glob: "DataFrame", key: list[str]) -> list["DataFrame"]:
    """The global sequence rows of a mapped user's two ids, each as of the user's day: the other
    id may be inactive that day, so its latest row up to the day (a carried-forward window)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from pipelines.core.schema import SEQUENCE
    from pipelines.etl.sequences import latest_before

    prior = latest_before(spark, wh, layout.SEQUENCES, "user_id", days[0], SEQUENCE).select(*glob.columns)
    every = glob.unionByName(prior)
    sides = []
    for rank, (col, dom) in enumerate((("source_user_id", pair.source), ("target_user_id", pair.target))):
        g = every.join(users.select(F.col(col).alias("user_id")).distinct(), "user_id", "left_semi")
        asked = users.where(F.col(col).isNotNull()).select(F.col(col).alias("_gid"), F.col("dt").alias("_adt"),
                                                          F.lit(1).alias("_ask"))
        have = g.select(F.col("user_id").alias("_gid"), F.col("dt").alias("_adt"), F.lit(0).alias("_ask"),
                        F.struct("user_idx", "item_idx", "event_type", "ts").alias("_row"))
        w = Window.partitionBy("_gid").orderBy("_adt", "_ask").rowsBetween(Window.unboundedPreceding, Window.currentRow)
        asof = (have.unionByName(asked, allowMissingColumns=True)
                .select("_gid", "_adt", "_ask", F.last("_row", ignorenulls=True).over(w).alias("_row"))
                .where("_ask = 1 AND _row IS NOT NULL").drop("_ask").distinct())
        joined = users.join(asof, (F.col(col) == F.col("_gid")) & (F.col("dt") == F.col("_adt")))
        other = "target_user_idx" if rank == 0 else "source_user_idx"
        sides.append(joined.select(*key, F.lit(rank).alias("rank"), F.col("_row.user_idx").alias(f"{col[:-3]}_idx"),
                                   F.lit(None).cast("int").alias(other), "_row.item_idx", "_row.event_type", "_row.ts",
                                   F.array(F.lit(dom)).alias("keep")))
    return sides


def build_splits(seq: "DataFrame", cd: CrossDomainConfig) -> "DataFrame":
    """Warm and cold splits (module docstring) from the output of ``_sequences``."""
    from pyspark.sql import functions as F

    T = F.size("_tpos")
    at = lambda k: F.element_at("_tpos", k)  # noqa: E731  (1-based position of a target event)
    one = lambda k: F.array(F.element_at("item_idx", at(k)))  # noqa: E731
    warm = ~F.col("cold") & (T >= 3)
    valid_half = cold_bucket(F.col("user_id"), cd.seed, "split") < F.lit(BUCKETS // 2)
    parts = [
        seq.where(warm).select("user_id", F.lit("warm").alias("group"), F.lit("valid").alias("split"),
                               (at(T - 1) - 1).alias("history_len"), one(T - 1).alias("target_idx"), "dt"),
        seq.where(warm).select("user_id", F.lit("warm").alias("group"), F.lit("test").alias("split"),
                               (at(T) - 1).alias("history_len"), one(T).alias("target_idx"), "dt"),
        seq.where(F.col("cold") & (F.col("length") >= 1) & (F.size("_targets") >= 1)).select(
            "user_id", F.lit("cold").alias("group"), F.when(valid_half, "valid").otherwise("test").alias("split"),
            F.col("length").alias("history_len"), F.array_distinct("_targets").alias("target_idx"), "dt"),
    ]
    out = parts[0].unionByName(parts[1]).unionByName(parts[2])
    return out.select("user_id", "group", "split", F.col("history_len").cast("int"), "target_idx", "dt")
