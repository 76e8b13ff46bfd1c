"""Gate ``cross_domain``, per pair: roles agree with the counts and sum to the users of both
domains, no cold user has a target event in a training table of the pair, every mixed sequence
is time-ordered and of the pair's domains, split targets are target items, and the overlap
figures of the last day's manifest equal a recount from ``sessions``."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config, CrossDomainPair
from pipelines.core.errors import UsageError
from pipelines.core.warehouse import Warehouse, pair_table
from pipelines.gates.check import CRITICAL, Frame
from pipelines.gates.expect import accounting, columns, read_table, unique

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

TRUE = [True]


def frames(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse) -> list[Frame]:
    if not cfg.cross_domain.pairs:
        raise UsageError("gate cross_domain: the configuration has no cross_domain.pairs")
    return [f for pair in cfg.cross_domain.pairs for f in pair_frames(spark, cfg, pair, days, wh)]


def pair_frames(spark: "SparkSession", cfg: Config, pair: CrossDomainPair, days: list[date], wh: Warehouse) -> list[Frame]:
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    from pipelines.core.schema import CROSS_DOMAIN_SEQUENCE, CROSS_DOMAIN_SPLIT, CROSS_DOMAIN_USER
    from pipelines.etl.cross_domain import ROLES
    from pipelines.etl.spark import read_partitions

    true = lambda c: (gxe.ExpectColumnValuesToBeInSet(column=c, value_set=TRUE), CRITICAL)  # noqa: E731
    users_t, seq_t, splits_t = (pair_table(t, pair.name) for t in
                                (layout.CROSS_DOMAIN_USERS, layout.CROSS_DOMAIN_SEQUENCES, layout.CROSS_DOMAIN_SPLITS))
    src, tgt = F.col("source_events"), F.col("target_events")
    expected_role = F.when((src > 0) & (tgt > 0), "both").when(src > 0, "source_only").otherwise("target_only")
    users = read_table(spark, wh, users_t, days).select(
        *CROSS_DOMAIN_USER.names,
        (F.col("role") == expected_role).alias("role_matches_counts"),
        (~F.col("cold") | (F.col("role") == "both")).alias("cold_is_overlapping"),
        F.concat_ws("/", "user_id", F.col("dt").cast("string")).alias("user_day"))
    seq = read_table(spark, wh, seq_t, days).select(
        *CROSS_DOMAIN_SEQUENCE.names,
        (F.col("ts") == F.array_sort("ts")).alias("time_ordered"),
        F.forall("domain", lambda d: d.isin(pair.source, pair.target)).alias("domains_of_pair"),
        (~F.col("cold") | ~F.array_contains("domain", pair.target)).alias("no_hidden_target"),
        ((F.size("item_idx") == F.col("length")) & (F.size("domain") == F.col("length"))
         & (F.size("ts") == F.col("length")) & (F.size("event_type") == F.col("length"))).alias("sizes_match"))
    items = (read_partitions(spark, wh, layout.VOCAB_ITEMS, wh.days_upto(layout.VOCAB_ITEMS, days[-1]))
             .where(F.col("domain") == pair.target).select(F.col("item_idx").alias("t")))
    splits = read_table(spark, wh, splits_t, days).select(*CROSS_DOMAIN_SPLIT.names, F.size("target_idx").alias("targets"))
    outside = (splits.select("user_id", "group", "split", "dt", F.explode("target_idx").alias("t"))
               .join(items, "t", "left_anti").select(F.lit(False).alias("target_in_target_domain")))
    return [
        Frame(users_t, users, [
            *columns(CROSS_DOMAIN_USER, extra=("role_matches_counts", "cold_is_overlapping", "user_day")),
            (gxe.ExpectColumnValuesToBeInSet(column="role", value_set=list(ROLES)), CRITICAL),
            true("role_matches_counts"), true("cold_is_overlapping")]),
        unique(users_t, users, "user_day"),
        Frame(seq_t, seq, [
            *columns(CROSS_DOMAIN_SEQUENCE, extra=("time_ordered", "domains_of_pair", "no_hidden_target", "sizes_match")),
            (gxe.ExpectColumnValuesToBeBetween(column="length", min_value=0, max_value=cfg.sequences.max_length), CRITICAL),
            *[true(c) for c in ("time_ordered", "domains_of_pair", "no_hidden_target", "sizes_match")]]),
        Frame(splits_t, splits, [
            (gxe.ExpectColumnValuesToBeInSet(column="group", value_set=["warm", "cold"]), CRITICAL),
            (gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["valid", "test"]), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="history_len", min_value=1), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="targets", min_value=1), CRITICAL)]),
        # Every row of this frame is a split target outside the target's items: it must be empty.
        Frame(f"{splits_t} targets", outside, [(gxe.ExpectTableRowCountToEqual(value=0), CRITICAL)]),
        overlap_recount(spark, cfg, pair, days[-1], wh),
    ]


def recount(spark: "SparkSession", cfg: Config, pair: CrossDomainPair, day: date, wh: Warehouse) -> dict[str, int]:
    """The overlap figures as of ``day``, counted again from every ``sessions`` day up to it."""
    from pyspark.sql import functions as F

    from pipelines.etl.cross_domain import align, is_cold, read_mapping
    from pipelines.etl.spark import read_partitions

    ev = read_partitions(spark, wh, layout.SESSIONS, wh.days_upto(layout.SESSIONS, day)).select("user_id", "domain", "dt")
    keyed = align(ev, pair, read_mapping(spark, pair, cfg) if pair.mapping else None)
    per_user = keyed.groupBy("user_id").agg(
        F.sum(F.when(F.col("side") == "source", 1).otherwise(0)).alias("s"),
        F.sum(F.when(F.col("side") == "target", 1).otherwise(0)).alias("t"))
    role = F.when((F.col("s") > 0) & (F.col("t") > 0), "both").when(F.col("s") > 0, "source_only").otherwise("target_only")
    per_user = per_user.withColumn("role", role).withColumn("cold", is_cold(F.col("role"), F.col("user_id"), cfg.cross_domain))
    row = per_user.agg(
        F.count(F.lit(1)).alias("users_all"),
        F.sum(F.when(F.col("s") > 0, 1).otherwise(0)).alias("users_source"),
        F.sum(F.when(F.col("t") > 0, 1).otherwise(0)).alias("users_target"),
        F.sum(F.when(F.col("cold"), 1).otherwise(0)).alias("users_cold"),
        *[F.sum(F.when(F.col("role") == r, 1).otherwise(0)).alias(f"users_{r}") for r in ("both", "source_only", "target_only")],
        *[F.sum(F.when(F.col("role") == r, F.col("s") + F.col("t")).otherwise(0)).alias(f"events_{r}")
          for r in ("both", "source_only", "target_only")],
    ).collect()[0]
    return {k: int(v or 0) for k, v in row.asDict().items()}


def overlap_recount(spark: "SparkSession", cfg: Config, pair: CrossDomainPair, day: date, wh: Warehouse) -> Frame:
    """The last day's manifest figures against a recount; the roles must sum to the users of both domains."""
    m = wh.read_manifest("cross_domain", f"pair={pair.name}/dt={day.isoformat()}") or {}
    ov = m.get("overlap", {})
    got = recount(spark, cfg, pair, day, wh)
    stated = {
        "users_source": ov.get("users", {}).get(pair.source), "users_target": ov.get("users", {}).get(pair.target),
        "users_cold": ov.get("cold_users"),
        **{f"users_{r}": ov.get("users_by_role", {}).get(r) for r in ("both", "source_only", "target_only")},
        **{f"events_{r}": ov.get("interactions_by_role", {}).get(r) for r in ("both", "source_only", "target_only")},
    }
    rows = [{"figure": k, "manifest": -1 if v is None else int(v), "recount": got[k]} for k, v in stated.items()]
    roles = got["users_both"] + got["users_source_only"] + got["users_target_only"]
    rows.append({"figure": "users by role, summed", "manifest": roles, "recount": got["users_all"]})
    return accounting(f"{pair_table(layout.CROSS_DOMAIN_USERS, pair.name)} overlap {day}", rows, [("manifest", "recount")])
