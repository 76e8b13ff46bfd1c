"""Integration on the real public datasets of ../shared/data (Spark local, the whole ETL)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from conftest import all_raw_days

from pipelines.etl import ingest

from pipelines.nightly import etl
from pipelines.core.config import load_config
from pipelines.core.resources import PACKAGE_DIR as PROJECT_ROOT
from pipelines.core.warehouse import Warehouse

CONFIGS = PROJECT_ROOT / "configs"


def _manifests(wh: Warehouse, stage: str) -> list[dict]:
    folder = wh.root / "_manifests" / f"stage={stage}"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@pytest.fixture(scope="module")
def movielens(movielens_wh):
    return Warehouse(movielens_wh)


def test_movielens_every_event_accounted_for(movielens):
    clean = _manifests(movielens, "clean")
    assert sum(m["rows_in"] for m in clean) == 100_000
    assert sum(m["rows_out"] + m["rows_quarantined"] for m in clean) == 100_000
    assert sum(m["rows_out"] for m in clean) == 100_000, "ml-100k has no faults"
    ingest_m = movielens.read_manifest("ingest", "source=movielens")
    assert ingest_m["rows_in"] == 100_000 and ingest_m["items"] == 1682


def test_movielens_vocabulary_and_sequences(spark, movielens):
    items = spark.read.parquet(str(movielens.table("vocab/items")))
    users = spark.read.parquet(str(movielens.table("vocab/users")))
    assert items.count() == 1682 and users.count() == 943
    assert sorted(r.item_idx for r in items.collect()) == list(range(1, 1683)), "dense, 1-based, no gaps"
    last = movielens.partition_dates("sequences")[-1]
    assert last == date(1998, 4, 22)
    from pyspark.sql import functions as F

    seq = spark.read.option("basePath", str(movielens.table("sequences"))).parquet(str(movielens.table("sequences")))
    latest = seq.groupBy("user_idx").agg(F.max_by(F.struct("n_events", "length"), "dt").alias("r"))
    totals = latest.agg(F.sum("r.n_events"), F.max("r.length"), F.count(F.lit(1))).collect()[0]
    assert tuple(totals) == (100_000, 737, 943), "each user's latest row holds all of their ratings"


def test_movielens_ties_are_ordered_by_event_id(spark, movielens):
    from pyspark.sql import functions as F

    s = spark.read.option("basePath", str(movielens.table("sessions"))).parquet(str(movielens.table("sessions")))
    # 75,772 ratings share (user, second) with another one: within a session, order is (ts, event_id).
    ties = s.groupBy("user_id", "ts").count().where("count > 1").agg(F.sum("count")).collect()[0][0]
    assert ties == 75_772
    from pyspark.sql import Window

    s = s.withColumn("k", F.struct("ts", "event_id"))
    s = s.withColumn("prev", F.lag("k").over(Window.partitionBy("session_id").orderBy("session_seq")))
    assert s.where("prev > k").count() == 0
    assert s.where("prev IS NOT NULL").count() > 90_000


def test_movielens_item_metadata_is_decoded(spark, movielens):
    items = {r.item_id: r for r in spark.read.parquet(str(movielens.table("items/source=movielens"))).collect()}
    assert len(items) == 1682
    assert items["1"].title == "Toy Story (1995)" and items["1"].tags == ["Animation", "Children's", "Comedy"]
    assert any("é" in (r.title or "") for r in items.values()), "latin-1 titles decoded"


def _bulk(spark, cfg, source, path, gates: bool = True):
    ingest.run(spark, cfg, source=source, input_path=path)
    wh = Warehouse(cfg.warehouse)
    etl.run(spark, cfg, all_raw_days(wh), gates=gates)
    return wh


@pytest.fixture(scope="module")
def taobao(taobao_wh):
    return Warehouse(taobao_wh.warehouse)


def test_taobao_out_of_window_events_are_quarantined(spark, taobao):
    clean = _manifests(taobao, "clean")
    assert sum(m["rows_in"] for m in clean) == 84_475
    assert sum(m["rows_out"] + m["rows_quarantined"] for m in clean) == 84_475
    reasons: dict[str, int] = {}
    for m in clean:
        for r, n in m["quarantine_by_reason"].items():
            reasons[r] = reasons.get(r, 0) + n
    assert reasons.get("ts_out_of_window") == 35
    q = spark.read.option("basePath", str(taobao.table("quarantine/events"))).parquet(str(taobao.table("quarantine/events")))
    out = q.where("reason = 'ts_out_of_window'").collect()
    assert len(out) == 35 and all(not (date(2017, 11, 24) < r.ts.date() < date(2017, 12, 4)) or r.ts.hour < 16
                                  for r in out)
    kinds = {r.event_type for r in spark.read.parquet(str(taobao.table("clean/events"))).select("event_type").distinct().collect()}
    assert kinds == {"view", "cart", "fav", "buy"}
    users = spark.read.parquet(str(taobao.table("vocab/users"))).count()
    assert users == 815


@pytest.fixture(scope="module")
def diginetica(spark, data_dir, tmp_path_factory):
    cfg = load_config(CONFIGS / "diginetica.yaml", warehouse=tmp_path_factory.mktemp("dg") / "wh")
    # Gates off for the suite's time: they run on real data in test_gates.py (Taobao) and test_dag.py (ml-100k).
    return _bulk(spark, cfg, "diginetica", data_dir("diginetica-sample"), gates=False)


def test_diginetica_sessions_are_preserved(spark, diginetica):
    from pyspark.sql import functions as F

    s = spark.read.option("basePath", str(diginetica.table("sessions"))).parquet(str(diginetica.table("sessions")))
    # 12,391 events: the file's last line has no newline, so `wc -l` (and SOURCE.md) says one less.
    assert s.count() == 12_391
    per_hint = s.groupBy("session_hint").agg(F.countDistinct("session_id").alias("n"), F.count(F.lit(1)).alias("events"))
    per_session = s.groupBy("session_id").agg(F.countDistinct("session_hint").alias("n"))
    assert per_hint.count() == 2_986 and per_hint.where("n != 1").count() == 0
    assert per_session.count() == 2_986 and per_session.where("n != 1").count() == 0
    assert per_hint.where("events = 1").count() == 933, "one-click sessions are kept (models may filter them)"
    # 8 sessions log in midway: their NA rows belong to the session's user.
    anon = s.where(F.col("user_id").startswith("anon:")).count()
    assert anon == 7_660


@pytest.fixture(scope="module")
def lastfm(spark, data_dir, tmp_path_factory):
    cfg = load_config(CONFIGS / "lastfm.yaml", warehouse=tmp_path_factory.mktemp("fm") / "wh")
    return _bulk(spark, cfg, "lastfm", data_dir("lastfm-2k"), gates=False)  # gates: as for DIGINETICA


def test_lastfm_plays_tags_and_metadata(spark, lastfm):
    clean = _manifests(lastfm, "clean")
    assert sum(m["rows_in"] for m in clean) == 92_834 + 186_479
    reasons: dict[str, int] = {}
    for m in clean:
        for r, n in m["quarantine_by_reason"].items():
            reasons[r] = reasons.get(r, 0) + n
    assert reasons == {"ts_out_of_window": 5}, "the bogus 1956/1957/1979 tag dates"
    ev = spark.read.parquet(str(lastfm.table("clean/events")))
    plays = ev.where("event_type = 'play'")
    assert plays.count() == 92_834 and plays.agg({"value": "max"}).collect()[0][0] == 352_698
    items = {r.item_id: r for r in spark.read.parquet(str(lastfm.table("items/source=lastfm"))).collect()}
    # 17,632 artists with names, plus 390 tagged artists that artists.dat does not list.
    assert len(items) == 18_022 and sum(r.title is not None for r in items.values()) == 17_632
    assert items["1"].title == "MALICE MIZER"
    assert any(any("\u0400" <= ch <= "\u04ff" for ch in (r.title or "")) for r in items.values()), "Cyrillic names intact"
    tagged = [r for r in items.values() if r.tags]
    assert len(tagged) == 12_523 and all(len(r.tags) <= 20 for r in tagged)
    # user_friends.dat: 25,434 lines, every relation listed both ways, all between users with events.
    social = spark.read.parquet(str(lastfm.table("graphs/social")))
    assert social.count() == 25_434 and social.where("user_idx = friend_idx").count() == 0
    assert social.join(social.selectExpr("friend_idx AS user_idx", "user_idx AS friend_idx"),
                       ["user_idx", "friend_idx"]).count() == 25_434, "symmetric"
    assert lastfm.read_manifest("ingest", "source=lastfm")["social"]["rows_out"] == 25_434


@pytest.fixture(scope="module")
def amazon(spark, data_dir, tmp_path_factory):
    cfg = load_config(CONFIGS / "amazon-cdr.yaml", warehouse=tmp_path_factory.mktemp("az") / "wh")
    return _bulk(spark, cfg, "amazon-cdr", data_dir("amazon-crossdomain") / "cloth_sport")


def test_amazon_pair_shares_users_and_keeps_file_order(spark, amazon):
    from pyspark.sql import functions as F

    ev = spark.read.parquet(str(amazon.table("clean/events")))
    by_domain = {r.domain: (r.n, r.u) for r in ev.groupBy("domain").agg(
        F.count(F.lit(1)).alias("n"), F.countDistinct("user_id").alias("u")).collect()}
    assert by_domain == {"cloth": (87_829 + 9_928, 9_928), "sport": (92_612 + 9_928, 9_928)}
    assert spark.read.parquet(str(amazon.table("vocab/users"))).count() == 9_928, "users shared across domains"
    m = amazon.read_manifest("ingest", "source=amazon-cdr")
    assert m["notes"]["ts_synthetic"] is True and "file order" in m["notes"]["order"]
    # The held-out item of test_original.txt is each user's last event in its domain.
    from pathlib import Path

    held = {}
    original = next(Path(f["path"]) for f in m["input_files"] if f["path"].endswith("cloth_sport/test_original.txt"))
    for line in original.read_text().splitlines():
        u, i, _ = line.split("\t")
        held[f"u{u}"] = i
    last = (ev.where("domain = 'cloth'").groupBy("user_id").agg(F.max_by("item_id", "ts").alias("i")).collect())
    assert {r.user_id: r.i for r in last} == held


def _distinct_items(folder) -> int:
    items = set()
    for name in ("train.txt", "test_original.txt"):
        items |= {line.split("\t")[1] for line in (folder / name).read_text().splitlines()}
    return len(items)


def test_amazon_cross_domain_overlap_equals_the_source_counts(spark, amazon, data_dir):
    """SOURCE.md of amazon-crossdomain: 9,928 users in each domain, all shared; train rows 87,829
    (cloth) and 92,612 (sport), one test_original row per user; the ETL's gate recounted them."""
    root = data_dir("amazon-crossdomain")
    items = {"cloth": _distinct_items(root / "cloth_sport"), "sport": _distinct_items(root / "sport_cloth")}
    assert 39_008 <= items["cloth"] <= 41_303 and 30_796 <= items["sport"] <= 32_310, "SOURCE.md: train items, max idx + 1"
    events = 87_829 + 9_928 + 92_612 + 9_928
    for name, src, tgt in (("cloth_to_sport", "cloth", "sport"), ("sport_to_cloth", "sport", "cloth")):
        m = amazon.read_manifest("cross_domain", f"pair={name}/dt=2014-01-01")
        ov = m["overlap"]
        assert ov["users"] == {src: 9_928, tgt: 9_928} and ov["overlapping_users"] == 9_928
        assert ov["target_users_with_source_history"] == 1.0
        assert ov["users_by_role"] == {"both": 9_928, "source_only": 0, "target_only": 0}
        assert ov["interactions_by_role"] == {"both": events, "source_only": 0, "target_only": 0}
        assert ov["items"] == {src: items[src], tgt: items[tgt]}
        assert 0.18 < ov["cold_users"] / 9_928 < 0.22, "cold_share 0.2 of the overlapping users"
        assert amazon.read_gate_result("cross_domain", date(2014, 1, 1))["passed"]
        splits = spark.read.parquet(str(amazon.partition(f"cross_domain/splits/pair={name}", date(2014, 1, 1))))
        by_group = {(r.group, r.split): r["count"] for r in splits.groupBy("group", "split").count().collect()}
        assert by_group[("cold", "valid")] + by_group[("cold", "test")] == ov["cold_users"]
        assert by_group[("warm", "test")] == by_group[("warm", "valid")] == 9_928 - ov["cold_users"]
