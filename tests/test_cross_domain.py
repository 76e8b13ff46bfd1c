"""Cross-domain assembly (``pipelines/etl/cross_domain.py``) and its gate on crafted logs."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from conftest import events_df

from pipelines.core.errors import GateFailed, InputError
from pipelines.core.warehouse import Warehouse, pair_table
from pipelines.etl import cross_domain, sequences, sessionize
from pipelines.etl.spark import write_daily
from pipelines.gates.registry import run_gate

D1, D2, D3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)
PAIR = {"name": "ab", "source": "A", "target": "B"}

# a: both domains; b: source only, then both; c: target only; z: a third domain only (not of the
# pair); k11: both, and the one cold user (its hash bucket, 318 under seed 0, is the lowest here).
COLD = "k11"
EVENTS = [
    {"user_id": "a", "item_id": "a1", "domain": "A", "ts": "2024-01-01 10:00:00", "event_id": "01"},
    {"user_id": "a", "item_id": "b1", "domain": "B", "ts": "2024-01-01 10:05:00", "event_id": "02"},
    {"user_id": "b", "item_id": "a1", "domain": "A", "ts": "2024-01-01 11:00:00", "event_id": "03"},
    {"user_id": "c", "item_id": "b1", "domain": "B", "ts": "2024-01-01 12:00:00", "event_id": "04"},
    {"user_id": "z", "item_id": "c1", "domain": "C", "ts": "2024-01-01 12:00:00", "event_id": "05"},
    {"user_id": COLD, "item_id": "a1", "domain": "A", "ts": "2024-01-01 13:00:00", "event_id": "11"},
    {"user_id": COLD, "item_id": "b1", "domain": "B", "ts": "2024-01-01 13:30:00", "event_id": "12"},
    # Day 2 has no source event at all.
    {"user_id": "c", "item_id": "b2", "domain": "B", "ts": "2024-01-02 09:00:00", "event_id": "06"},
    # Day 3: b gets target history (source_only -> both); a: a target and a source event at one time.
    {"user_id": "b", "item_id": "b2", "domain": "B", "ts": "2024-01-03 08:00:00", "event_id": "07"},
    {"user_id": "a", "item_id": "b2", "domain": "B", "ts": "2024-01-03 09:00:00", "event_id": "08"},
    {"user_id": "a", "item_id": "a2", "domain": "A", "ts": "2024-01-03 09:00:00", "event_id": "09"},
    {"user_id": "a", "item_id": "b3", "domain": "B", "ts": "2024-01-03 10:00:00", "event_id": "10"},
    {"user_id": COLD, "item_id": "b3", "domain": "B", "ts": "2024-01-03 11:00:00", "event_id": "13"},
]
DAYS = [D1, D2, D3]


def _bucket(spark, user: str, seed: int = 0) -> int:
    from pyspark.sql import functions as F

    return spark.range(1).select(cross_domain.cold_bucket(F.lit(user), seed).alias("b")).collect()[0].b


def _cfg(cfg, **cross):
    return cfg.with_overrides(cross_domain={"pairs": [PAIR], **cross})


def _build(spark, cfg, rows, days, by_day=False):
    wh = Warehouse(cfg.warehouse)
    write_daily(events_df(spark, rows), wh, "clean/events", days)
    sessionize.run(spark, cfg, days)
    sequences.run(spark, cfg, days)
    for chunk in ([[d] for d in days] if by_day else [days]):
        cross_domain.run(spark, cfg, chunk)
    return wh


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """The crafted log as one range, with the cold user just below the cut."""
    from pipelines.core.config import load_config

    share = (_bucket(spark, COLD) + 1) / cross_domain.BUCKETS
    cfg = _cfg(load_config(warehouse=tmp_path_factory.mktemp("cd") / "wh"), cold_share=share)
    return cfg, _build(spark, cfg, EVENTS, DAYS)


def _rows(spark, wh, table, d, pair="ab"):
    return {r.user_id: r for r in spark.read.parquet(str(wh.partition(pair_table(table, pair), d))).collect()}


def _overlap(wh, d, pair="ab"):
    return wh.read_manifest("cross_domain", f"pair={pair}/dt={d.isoformat()}")["overlap"]


def test_roles_counts_and_overlap_as_of_each_day(spark, built):
    cfg, wh = built
    u1 = _rows(spark, wh, "cross_domain/users", D1)
    assert {k: (r.role, r.source_events, r.target_events, r.cold) for k, r in u1.items()} == {
        "a": ("both", 1, 1, False), "b": ("source_only", 1, 0, False), "c": ("target_only", 0, 1, False),
        COLD: ("both", 1, 1, True)}, "z is of neither domain"
    assert {k: r.role for k, r in _rows(spark, wh, "cross_domain/users", D2).items()} == {"c": "target_only"}
    u3 = _rows(spark, wh, "cross_domain/users", D3)
    assert {k: (r.role, r.source_events, r.target_events) for k, r in u3.items()} == {
        "a": ("both", 2, 3), "b": ("both", 1, 1), COLD: ("both", 1, 2)}
    assert _overlap(wh, D1) == {
        "users": {"A": 3, "B": 3}, "items": {"A": 1, "B": 1}, "overlapping_users": 2,
        "target_users_with_source_history": pytest.approx(2 / 3),
        "users_by_role": {"both": 2, "source_only": 1, "target_only": 1},
        "interactions_by_role": {"both": 4, "source_only": 1, "target_only": 1}, "cold_users": 1}
    o2 = _overlap(wh, D2)
    assert o2["users"] == {"A": 3, "B": 3} and o2["interactions_by_role"]["target_only"] == 2, "an empty source day"
    o3 = _overlap(wh, D3)
    assert o3["users_by_role"] == {"both": 3, "source_only": 0, "target_only": 1}
    assert o3["interactions_by_role"] == {"both": 5 + 2 + 3, "source_only": 0, "target_only": 2}
    assert o3["items"] == {"A": 2, "B": 3} and o3["target_users_with_source_history"] == pytest.approx(3 / 4)
    assert o3["cold_users"] == 1
    assert run_gate(spark, cfg, "cross_domain", DAYS).passed


def test_mixed_sequences_splits_and_what_a_cold_user_hides(spark, built):
    _, wh = built
    seq = _rows(spark, wh, "cross_domain/sequences", D3)
    a = seq["a"]
    assert a.domain == ["A", "B", "B", "A", "B"], "the tie at 09:00 keeps event id order (08 before 09)"
    assert a.length == 5 and not a.cold and a.source_user_idx == a.target_user_idx
    assert "C" not in {d for r in _rows(spark, wh, "cross_domain/sequences", D1).values() for d in r.domain}
    assert seq[COLD].domain == ["A"] and seq[COLD].cold, "no target event of a cold user in the training table"
    idx = {r.item_id: r.item_idx for r in spark.read.parquet(str(wh.table("vocab/items"))).collect()}
    # a's target events sit at positions 2, 3 and 5 of its mixed sequence; b has one target event.
    rows = spark.read.parquet(str(wh.partition(pair_table("cross_domain/splits", "ab"), D3))).collect()
    warm = {r.split: (r.history_len, r.target_idx) for r in rows if r.group == "warm"}
    assert warm == {"valid": (2, [idx["b2"]]), "test": (4, [idx["b3"]])} and all(r.user_id == "a" for r in rows if r.group == "warm")
    cold = [r for r in rows if r.group == "cold"]
    assert [(r.user_id, r.history_len, sorted(r.target_idx)) for r in cold] == [(COLD, 1, sorted([idx["b1"], idx["b3"]]))]
    assert cold[0].split in ("valid", "test")


def test_a_pair_loads_as_target_only_or_mixed_data_ranking_target_items(spark, built):
    from pipelines.modeling.data import load_pair

    cfg, wh = built
    idx = {r.item_id: r.item_idx for r in spark.read.parquet(str(wh.table("vocab/items"))).collect()}
    users = {r.user_id: r.user_idx for r in spark.read.parquet(str(wh.table("vocab/users"))).collect()}
    for view, a_items, hist in (("target", ["b1", "b2", "b3"], {"valid": 1, "test": 2, "cold": 0}),
                                ("mixed", ["a1", "b1", "b2", "a2", "b3"], {"valid": 2, "test": 4, "cold": 1})):
        data = load_pair(wh.root, D3, cfg.cross_domain.pairs[0], view)
        assert all((np.diff(sp.rows) > 0).all() for sp in data.splits.values()), "splits in the users' order"
        row = {int(u): i for i, u in enumerate(data.users)}
        a, k = row[users["a"]], row[users[COLD]]
        assert data.items[data.offsets[a]:data.offsets[a + 1]].tolist() == [idx[i] for i in a_items]
        assert sorted(data.candidates.tolist()) == sorted(idx[i] for i in ("b1", "b2", "b3"))
        assert data.splits["valid"].rows.tolist() == [a] and data.splits["valid"].history_len.tolist() == [hist["valid"]]
        assert data.splits["test"].history_len.tolist() == [hist["test"]] and data.train_len[a] == hist["valid"]
        cold = next(s for s in ("cold_valid", "cold_test") if s in data.splits)
        assert data.splits[cold].rows.tolist() == [k] and data.splits[cold].history_len.tolist() == [hist["cold"]]
        assert sorted(data.splits[cold].targets[0].tolist()) == sorted([idx["b1"], idx["b3"]])
        assert data.train_len[k] == hist["cold"], "a cold user trains on its source events only"


def test_the_cold_cut_is_strict(spark):
    from pyspark.sql import functions as F

    from pipelines.core.config import CrossDomainConfig

    b = _bucket(spark, COLD)
    assert b < min(_bucket(spark, u) for u in "abc"), "the crafted log's one cold user"
    for share, cold in ((b / cross_domain.BUCKETS, False), ((b + 1) / cross_domain.BUCKETS, True)):
        cd = CrossDomainConfig(cold_share=share)
        got = spark.range(1).select(cross_domain.is_cold(F.lit("both"), F.lit(COLD), cd).alias("c")).collect()[0].c
        assert got is cold, f"bucket {b} with the cut at {share * cross_domain.BUCKETS:.0f}"
    cd = CrossDomainConfig(cold_share=1.0)
    assert not spark.range(1).select(cross_domain.is_cold(F.lit("target_only"), F.lit(COLD), cd)).collect()[0][0]


def test_a_range_gives_the_rows_and_figures_of_its_days_one_by_one(spark, built, tmp_path):
    cfg, wh1 = built
    step = cfg.with_overrides(warehouse=str(tmp_path / "step"))
    wh2 = _build(spark, step, EVENTS, DAYS, by_day=True)
    for table in ("cross_domain/users", "cross_domain/sequences", "cross_domain/splits"):
        for d in DAYS:
            assert sorted(map(str, _rows(spark, wh1, table, d).values())) == sorted(map(str, _rows(spark, wh2, table, d).values()))
    assert [_overlap(wh1, d) for d in DAYS] == [_overlap(wh2, d) for d in DAYS]


def test_a_mapping_aligns_users_and_unaligned_ones_keep_their_side(spark, cfg, tmp_path):
    import pandas as pd

    rows = [
        {"user_id": "s1", "item_id": "a1", "domain": "A", "ts": "2024-01-01 10:00:00", "event_id": "1"},
        {"user_id": "t1", "item_id": "b1", "domain": "B", "ts": "2024-01-01 10:00:00", "event_id": "2"},
        {"user_id": "s2", "item_id": "a1", "domain": "A", "ts": "2024-01-01 11:00:00", "event_id": "3"},
        {"user_id": "t3", "item_id": "b1", "domain": "B", "ts": "2024-01-01 12:00:00", "event_id": "4"},
        {"user_id": "t4", "item_id": "b2", "domain": "B", "ts": "2024-01-01 13:00:00", "event_id": "5"},
    ]
    path = tmp_path / "map.parquet"
    pd.DataFrame({"src": ["s1", "s4"], "dst": ["t1", "t4"]}).to_parquet(path)
    mcfg = cfg.with_overrides(cross_domain={"pairs": [{**PAIR, "mapping": str(path), "mapping_columns": ["src", "dst"]}],
                                            "cold_share": 0.0})  # t1 is overlapping: not cold, its tie stays visible
    wh = _build(spark, mcfg, rows, [D1])
    got = {k: (r.source_user_id, r.target_user_id, r.aligned, r.role) for k, r in _rows(spark, wh, "cross_domain/users", D1).items()}
    assert got == {"t1": ("s1", "t1", True, "both"), "s2": ("s2", None, False, "source_only"),
                   "t3": (None, "t3", False, "target_only"), "t4": ("s4", "t4", True, "target_only")}
    t1 = _rows(spark, wh, "cross_domain/sequences", D1)["t1"]
    assert t1.domain == ["A", "B"], "a tie across a mapped user's two ids: source first"
    assert t1.source_user_idx != t1.target_user_idx
    assert run_gate(spark, mcfg, "cross_domain", [D1]).passed

    pd.DataFrame({"src": ["s1", "s2"], "dst": ["t1", "t1"]}).to_parquet(path)
    with pytest.raises(InputError, match=r"column dst: ids mapped more than once.*t1"):
        cross_domain.run(spark, mcfg, [D1])
    pd.DataFrame({"src": ["s1"], "dst": ["s2"]}).to_parquet(path)  # s2 is then a target id and an unmapped source id
    with pytest.raises(InputError, match=r"also target ids, e.g. \['s2'\]"):
        cross_domain.run(spark, mcfg, [D1])


def test_the_gate_fails_a_cold_users_target_event_in_training(spark, built, tmp_path):
    import shutil

    from pyspark.sql import functions as F

    cfg, wh = built
    shutil.copytree(wh.root, tmp_path / "wh")
    cfg = cfg.with_overrides(warehouse=str(tmp_path / "wh"))
    wh = Warehouse(cfg.warehouse)
    table = pair_table("cross_domain/sequences", "ab")
    seq = spark.read.parquet(str(wh.partition(table, D1))).withColumn("dt", F.lit(D1))
    # The leak the gate exists for: the cold user's hidden target event back in its training sequence.
    mine = F.col("user_id") == COLD
    leaked = (seq.withColumn("domain", F.when(mine, F.array_append("domain", F.lit("B"))).otherwise(F.col("domain")))
              .withColumn("item_idx", F.when(mine, F.array_append("item_idx", F.lit(2))).otherwise(F.col("item_idx")))
              .withColumn("ts", F.when(mine, F.concat("ts", "ts")).otherwise(F.col("ts")))
              .withColumn("event_type", F.when(mine, F.concat("event_type", "event_type")).otherwise(F.col("event_type")))
              .withColumn("length", F.size("domain")).localCheckpoint())
    write_daily(leaked, wh, table, [D1])
    with pytest.raises(GateFailed, match="no_hidden_target"):
        run_gate(spark, cfg, "cross_domain", [D1])


def test_pair_methods_train_on_their_views_and_emcdr_maps_cold_users(spark, built):
    """Methods train on a pair's views as other data (their own versions); LightGCN's graph of a
    view holds that view's events only (a cold user's source items in the mixed view, nothing of
    the target); EMCDR scores a cold user by its mapping of the source run's vector and a warm
    user by the target run's own vector."""
    import torch

    from pipelines.modeling.cross_domain import load_pair_data, train_on_pair
    from pipelines.modeling.train import load_version

    cfg, wh = built
    users = {r.user_id: r.user_idx for r in spark.read.parquet(str(wh.table("vocab/users"))).collect()}
    items = {r.item_id: r.item_idx for r in spark.read.parquet(str(wh.table("vocab/items"))).collect()}
    quiet, fast = (lambda m: None), ["train.epochs=2", "model.dim=8"]
    runs = {}
    for view in ("target", "source", "mixed"):
        result, _ = train_on_pair(cfg, "lightgcn", D3, "ab", view, sets=fast, echo=quiet, evaluate=False)
        runs[view] = f"lightgcn@{result.folder.name}"
    assert len(set(runs.values())) == 3, "one version per view"
    mixed = load_pair_data(cfg, D3, "ab", "mixed")
    u, i, _ = mixed.side.user_item_edges()
    assert sorted(i[u == users[COLD]].tolist()) == [items["a1"]], "the cold user's source event only"
    result, rows = train_on_pair(cfg, "emcdr", D3, "ab", "mixed", echo=quiet, sets=[
        *fast, "model.source_dim=8", "train.valid_split=valid",
        f"model.source_run={runs['source']}", f"model.target_run={runs['target']}"])
    assert {r["split"] for r in rows} >= {"valid", "test"} and any(r["split"].startswith("cold_") for r in rows)
    _, emcdr, _ = load_version(cfg, "emcdr", result.folder.name)
    (_, source, _), (_, target, _) = (load_version(cfg, "lightgcn", runs[v].split("@")[1]) for v in ("source", "target"))
    with torch.no_grad():
        k, a = torch.tensor([users[COLD]]), torch.tensor([users["a"]])
        assert not emcdr.has_target[k].any() and emcdr.has_source[k].all()
        torch.testing.assert_close(emcdr.source_vectors[k], source.encode(None, None, k))
        torch.testing.assert_close(emcdr.encode(None, None, k), emcdr.mapping(source.encode(None, None, k)))
        torch.testing.assert_close(emcdr.encode(None, None, a), target.encode(None, None, a))
        torch.testing.assert_close(emcdr.item_embeddings(), target.item_embeddings())
    result, rows = train_on_pair(cfg, "sasrec_mixed", D3, "ab", "mixed", sets=[*fast, "model.max_len=4"], echo=quiet)
    assert rows and all(r["dataset"].endswith("/pair=ab/view=mixed") for r in rows)


def test_pair_runs_are_published_and_queried_like_methods(spark, built):
    """``cross_domain.methods`` on a pair: each run trains (runs it reads by method name first),
    infers its view's users and the target's items, passes the embeddings gate and is published
    as METHOD.PAIR; ``seqrep query recommend --domain`` reads it, a cold user included."""
    import json

    import numpy as np
    import pyarrow.parquet as pq

    from pipelines.cli import main
    from pipelines.etl import graphs
    from pipelines.modeling.pair_runs import pair_runs, run_names
    from pipelines.nightly.steps import run_methods
    from pipelines.serving.query import Query

    base, wh = built
    graphs.run(spark, base, DAYS)  # the item counts of the tables and the seen items of a query
    small = {"model": {"dim": 8}, "train": {"epochs": 2}}
    cfg = base.with_overrides(
        cross_domain={"methods": ["emcdr", "lightgcn:mixed"]},
        methods={"lightgcn": small, "emcdr": {"model": {"dim": 8, "source_dim": 8},
                                                     "train": {"epochs": 2, "valid_split": "valid"}}})
    assert run_names(cfg) == ["emcdr.ab", "lightgcn.mixed.ab"]
    assert [(r.method, r.view) for r in pair_runs(cfg)] == [("emcdr", "mixed"), ("lightgcn", "mixed")]
    outcome = run_methods(cfg, D3, run_names(cfg), echo=lambda m: None)
    assert outcome.published == ["emcdr.ab", "lightgcn.mixed.ab"] and not outcome.blocked
    # EMCDR read LightGCN's runs on the source and target views, trained for it as of the day.
    emcdr = json.loads(next((wh.root / "models/emcdr").glob(f"{D3}-*/config.json")).read_text())
    assert emcdr["model"]["source_run"].startswith(f"lightgcn@{D3}-") and emcdr["scope"] == "pair=ab/view=mixed"
    users = {r.user_id: r.user_idx for r in spark.read.parquet(str(wh.table("vocab/users"))).collect()}
    items = {r.item_id: r.item_idx for r in spark.read.parquet(str(wh.table("vocab/items"))).collect()}
    for name in run_names(cfg):
        record = json.loads((wh.root / f"_manifests/stage=publish/model={name}/dt={D3}.json").read_text())
        table = pq.read_table(wh.root / f"embeddings/items/model={name}/dt={D3}/version={record['model_version']}")
        assert set(table.column("domain").to_pylist()) == {"B"} and record["items"] == 3, "the target's items only"
        people = pq.read_table(wh.root / f"embeddings/users/model={name}/dt={D3}/version={record['model_version']}")
        assert sorted(people.column("user_id").to_pylist()) == ["a", "b", "c", COLD], "the mixed view's users"
        vec = people.column("vector").combine_chunks().values.to_numpy().reshape(people.num_rows, -1)
        assert np.isfinite(vec).all() and (np.linalg.norm(vec, axis=1) > 0).all()
    with Query(wh.root) as q:
        assert set(q.methods()) >= {"emcdr.ab", "lightgcn.mixed.ab"}
        recs = q.recommend(COLD, "emcdr.ab", k=5, domain="B")
        # The cold user's target events are hidden from the pair, not from the warehouse's seen items.
        assert [r["item_id"] for r in recs] == ["b2"] and recs[0]["item_idx"] == items["b2"]
        assert q.user(COLD, "emcdr.ab")["user_idx"] == users[COLD]
    assert main(["query", "recommend", COLD, "--method", "emcdr.ab", "--domain", "B", "--warehouse", str(wh.root),
                 "--json"]) == 0
    assert main(["query", "recommend", COLD, "--method", "emcdr.ab", "--domain", "C", "--warehouse", str(wh.root)]) == 2


def test_synthetic_taste_carries_across_domains_and_zero_changes_nothing():
    """``synthetic.user_taste``: a user's sessions favour their two category indices in both
    domains (what makes the synthetic logs a cross-domain benchmark); at 0 the logs are as before."""
    import numpy as np

    from pipelines.core.config import SyntheticConfig
    from pipelines.etl.synthetic_logs import generate_day, item_catalogue

    base = SyntheticConfig(users=50, events_per_day=4000, items_per_domain=400)
    cat = item_catalogue(base)
    category = dict(zip(cat["item_id"], cat["category"]))
    favourite = np.random.default_rng([base.seed, 2]).integers(0, base.categories_per_domain, (base.users, 2))

    def favourite_share(table, u: int) -> dict[str, float]:
        """Per domain, the share of user u's events in their favourite category indices."""
        mine = [category[i] for who, i in zip(table.column("uid").to_pylist(), table.column("sku").to_pylist())
                if who == f"u{u:07d}"]
        liked = {f"cat{k:02d}" for k in favourite[u]}
        return {d: np.mean([c.split("/")[1] in liked for c in mine if c.startswith(d + "/")]) for d in base.domains}

    plain = generate_day(base, D1, cat)
    assert plain.equals(generate_day(base.model_copy(update={"user_taste": 0.0}), D1, cat))
    tasted = generate_day(base.model_copy(update={"user_taste": 0.9}), D1, cat)
    for u in (0, 1):  # the most active users
        assert all(v > 0.6 for v in favourite_share(tasted, u).values()), favourite_share(tasted, u)
        assert all(v < 0.3 for v in favourite_share(plain, u).values()), favourite_share(plain, u)
