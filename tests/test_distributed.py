"""``seqrep train --nproc 2``: SASRec trained data-parallel in two processes (torchrun, gloo on
CPU) reaches the validation NDCG@10 of one process within noise over 3 seeds, and its model
is one like any other (loaded, evaluated)."""

from __future__ import annotations

import json
import shutil
import statistics
from datetime import date
from pathlib import Path

import pytest

from pipelines.cli import main

DAY = date(1997, 10, 20)  # ml-100k as of its first month
SMALL = ["--set", "model.dim=32", "--set", "model.max_len=30", "--set", "train.epochs=8", "--set", "train.patience=8",
         "--set", "train.batch_size=64"]


@pytest.fixture(scope="module")
def slice_wh(movielens_wh, tmp_path_factory) -> Path:
    return shutil.copytree(movielens_wh, tmp_path_factory.mktemp("ddp") / "wh",
                           ignore=shutil.ignore_patterns("models", "metrics", "metric_segments", "embeddings",
                                                         "_txn", "_locks", "_staging"))


def _best_valid(wh: Path, seed: int, capsys, *extra: str) -> float:
    assert main(["train", "--method", "sasrec", "--date", str(DAY), "--set", f"train.seed={seed}", *SMALL,
                 "--warehouse", str(wh), *extra]) == 0
    capsys.readouterr()
    (folder,) = [p for p in (wh / "models/sasrec").iterdir() if p.name.endswith(tuple("0123456789abcdef"))
                 and json.loads((p / "config.json").read_text())["train"]["seed"] == seed]
    return json.loads((folder / "config.json").read_text())["best_valid_ndcg@10"]


def test_two_processes_reach_one_process_validation_ndcg(slice_wh, capsys):
    one = [_best_valid(slice_wh, s, capsys) for s in (1, 2, 3)]
    two = [_best_valid(slice_wh, s, capsys, "--nproc", "2") for s in (1, 2, 3)]
    spread = max(statistics.stdev(one), statistics.stdev(two), 0.005)
    assert abs(statistics.mean(two) - statistics.mean(one)) <= 2 * spread, (one, two)
    assert main(["train", "--method", "pop", "--date", str(DAY), "--json", "--warehouse", str(slice_wh)]) == 0
    pop = next(r["value"] for r in json.loads(capsys.readouterr().out)
               if (r["split"], r["metric"], r["k"]) == ("valid", "ndcg", 10))
    assert min(two) > pop, (two, pop)  # it learned
    with capsys.disabled():  # the figures, for whoever reads the run
        print(f"\nvalid NDCG@10 by seed: one process {one}, two processes {two}, most popular {pop}")
    # the model rank 0 wrote is a model like any other: evaluated by version, one folder per seed
    assert len(list((slice_wh / "models/sasrec").glob("*.partial"))) == 0
    assert main(["evaluate", "--method", "sasrec", "--date", str(DAY), "--set", "train.seed=3", *SMALL,
                 "--warehouse", str(slice_wh)]) == 0
    assert "test (loo, full ranking" in capsys.readouterr().out
    assert main(["train", "--method", "sasrec", "--nproc", "2", "--resume", "--warehouse", str(slice_wh)]) == 2
