"""Models on ml-100k from ../shared/data: the loader, both baselines, and a learned method beating them."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest

from pipelines.modeling.data import latest_day, load
from pipelines.cli import main

pytestmark = pytest.mark.realdata


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


def test_baselines_and_sasrec_on_ml100k(movielens_wh, capsys):
    wh = ["--warehouse", str(movielens_wh)]
    for method in ("pop", "markov"):
        assert main(["train", "--method", method, *wh]) == 0
    base = _metrics(capsys, ["evaluate", "--method", "pop,markov", "--json", *wh])
    pop, markov = base[("pop", "test", "hr", 10)], base[("markov", "test", "hr", 10)]
    # Measured with this order of equal timestamps (time, then event id): see bench/README.md.
    assert 0.05 <= pop <= 0.086, pop
    assert 0.12 <= markov <= 0.19, markov
    # A short, fixed SASRec run (CPU, deterministic) already beats both.
    sasrec = _metrics(capsys, ["train", "--method", "sasrec", "--json", *wh,
                               "--set", "train.epochs=6", "--set", "train.seed=1"])
    assert sasrec[("sasrec", "test", "ndcg", 10)] > base[("markov", "test", "ndcg", 10)]
    assert sasrec[("sasrec", "test", "hr", 10)] > markov
    # the metrics table is queryable with SQL
    con = duckdb.connect()
    n = con.execute("SELECT count(DISTINCT model_version) FROM read_parquet(?, hive_partitioning = true) "
                    "WHERE method = 'sasrec' AND split = 'test' AND metric = 'ndcg' AND k = 10",
                    [str(movielens_wh / "metrics" / "*" / "*" / "*.parquet")]).fetchone()[0]
    assert n == 1
