"""Models on ml-100k from ../shared/data: the loader, the baselines and every learned method pinned at a small budget, early stopping."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest

from pipelines.modeling.data import latest_day, load
from pipelines.cli import main


@pytest.fixture(scope="module")
def ml(movielens_wh):
    return load(movielens_wh, latest_day(movielens_wh), "loo")


def test_ml100k_sequences_as_of_the_last_day(ml):
    assert len(ml.users) == 943 and ml.n_items == 1682 and len(ml.items) == 100_000
    assert ml.lengths.min() == 20  # every ml-100k user rated at least 20 movies
    for split, back in (("valid", 2), ("test", 1)):
        sp = ml.splits[split]
        assert len(sp) == 943
        assert np.array_equal(sp.history_len, ml.lengths[sp.rows] - back)
        # the target is the event right after the history, in the (time, event id) order
        assert np.array_equal(sp.targets[:, 0], ml.items[ml.offsets[sp.rows] + sp.history_len])
    assert np.array_equal(ml.train_len, ml.lengths - 2)  # no evaluation target is ever trained on


def _metrics(capsys, argv) -> dict[tuple[str, str, str, int], float]:
    capsys.readouterr()
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    return {(r["method"], r["split"], r["metric"], r["k"]): r["value"] for r in rows}


# Test HR@10 and NDCG@10 of the baselines on ml-100k (leave-one-out as of 1998-04-22; events of
# one second ordered by event id), measured 2026-12-01 by this test's own commands.
BASELINES = {("pop", "hr"): 0.075292, ("pop", "ndcg"): 0.037189,
             ("markov", "hr"): 0.135737, ("markov", "ndcg"): 0.077859}


def test_baselines_are_pinned_and_the_metrics_are_queryable(movielens_wh, capsys):
    wh = ["--warehouse", str(movielens_wh)]
    for method in ("pop", "markov"):
        assert main(["train", "--method", method, *wh]) == 0
    got = _metrics(capsys, ["evaluate", "--method", "pop,markov", "--json", *wh])
    for (method, metric), value in BASELINES.items():
        assert got[(method, "test", metric, 10)] == pytest.approx(value, abs=1e-4), (method, metric)
    con = duckdb.connect()
    n = con.execute("SELECT count(DISTINCT model_version) FROM read_parquet(?, hive_partitioning = true) "
                    "WHERE method = 'markov' AND split = 'test' AND metric = 'ndcg' AND k = 10",
                    [str(movielens_wh / "metrics" / "*" / "*" / "*.parquet")]).fetchone()[0]
    assert n == 1
    # Beyond accuracy and per segment, through the query views: popularity ranks one list for
    # everyone (10 of 1,682 items covered); Markov's segments add up to its test users.
    from pipelines.serving.query import Query

    with Query(movielens_wh) as q:
        rows = q.sql("SELECT method, value FROM metrics WHERE split = 'test' AND metric = 'coverage' AND k = 10")
        cover = {r["method"]: r["value"] for r in rows.to_pylist()}
        assert cover["pop"] < 0.1 < cover["markov"], cover  # the same popular items, less the seen ones (0.054)
        sizes = q.sql("SELECT segmentation, sum(users) AS n FROM metric_segments WHERE method = 'markov' "
                      "AND split = 'test' AND metric = 'ndcg' AND k = 10 GROUP BY ALL ORDER BY 1").to_pylist()
        assert sizes == [{"segmentation": "history", "n": 943}, {"segmentation": "target", "n": 943}]


# Each learned method at a small fixed budget (CPU, float32, seed 1: deterministic): the test
# NDCG@10 it reached when pinned (2026-12-01, `python -m pytest tests/test_models_realdata.py`).
# A change that costs a method more than 3% of it fails; one that moves a method on purpose
# re-pins it here, with the reason in the commit. Far below the converged figures of
# bench/README.md: three epochs are not convergence.
LEARNED = {
    "gru4rec": (["train.epochs=3"], 0.050818),
    "lstm": (["train.epochs=3"], 0.046004),
    "sasrec": (["train.epochs=3"], 0.079068),
    "bert4rec": (["train.epochs=3"], 0.038813),
    "srgnn": (["train.epochs=1"], 0.054949),
    "lightgcn": (["train.epochs=5"], 0.046461),
}


@pytest.fixture(scope="module")
def ml_cfg(movielens_wh, tmp_path_factory):
    """The session's ml-100k warehouse without its models (other tests count them)."""
    import shutil

    from pipelines.core.config import load_config

    wh = tmp_path_factory.mktemp("pins") / "wh"
    shutil.copytree(movielens_wh, wh, ignore=shutil.ignore_patterns("models", "metrics", "embeddings", "_staging"))
    return load_config(warehouse=wh)


def _train(cfg, method: str, sets: list[str]):
    from pipelines.modeling.train import train_method

    result, rows = train_method(cfg, method, latest_day(cfg.warehouse), sets=["train.seed=1", *sets],
                                echo=lambda m: None)
    return result, {(r["split"], r["metric"], r["k"]): r["value"] for r in rows}


@pytest.mark.parametrize("method", list(LEARNED))
def test_each_learned_method_keeps_its_pinned_quality(ml_cfg, method):
    sets, pinned = LEARNED[method]
    _, got = _train(ml_cfg, method, [*sets, "train.patience=100"])
    ndcg = got[("test", "ndcg", 10)]
    assert ndcg >= 0.97 * pinned, f"{method}: test NDCG@10 {ndcg:.6f}, pinned {pinned:.6f}"
    assert ndcg <= 1.25 * pinned, f"{method}: test NDCG@10 {ndcg:.6f} far above its pin {pinned:.6f}: re-pin it"


def test_early_stopping_ends_the_run_and_keeps_the_best_epoch(ml_cfg):
    """LSTM at a learning rate of 1e-2 peaks on validation after a few epochs; with patience 1 the
    run stops one epoch after its best, and the model written is the best epoch's, not the last."""
    result, got = _train(ml_cfg, "lstm", ["train.epochs=20", "train.patience=1", "train.lr=0.01"])
    valid = [row["valid_ndcg@10"] for row in result.log]
    assert result.epochs < 20 and result.epochs == result.best_epoch + 1 == len(valid), result
    assert valid[-1] < valid[result.best_epoch - 1] == max(valid) == result.best_valid_ndcg
    assert got[("valid", "ndcg", 10)] == pytest.approx(result.best_valid_ndcg, abs=1e-9)  # the restored weights
    assert got[("test", "ndcg", 10)] > BASELINES[("markov", "ndcg")]
