"""``seqrep tune``: search spaces checked before anything trains, a study on an ml-100k slice whose
failing trials are recorded with their reason, its best settings as a config file that ``seqrep
train`` reads, and a study killed mid-trial that the same command continues."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main
from pipelines.core.errors import UsageError
from pipelines.modeling.tune import Dimension, search_space

#: ml-100k as of its 12th day: 83 users with a test target, so a trial takes seconds.
DAY = date(1997, 10, 1)
#: Every trial: a small SASRec, 3 epochs at most.
FIXED = ["--set", "model.dim=16", "--set", "model.max_len=20", "--set", "train.epochs=3", "--set", "train.patience=3"]


def _space(tmp_path: Path, search: object, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"search": search}))
    return path


@pytest.mark.parametrize("search, message", [
    ({"model.size": [1, 2]}, "'model.size' is not a setting"),
    ({"train.seed": [1, 2]}, "train.seed cannot be searched"),
    ({"train.protocol": ["loo", "temporal"]}, "cannot be searched"),
    ({"model.dropout": {"low": 0.5, "high": 0.1}}, "low < high"),
    ({"train.lr": {"low": 0.0, "high": 0.1, "log": True}}, "log range needs low > 0"),
    ({"model.dim": {"low": 8}}, "expected a list of values or {low, high"),
    ({"model.dim": []}, "expected a list of values"),
    ({}, "declares no search space"),
])
def test_a_bad_search_space_is_refused_naming_the_key(tmp_path, search, message):
    with pytest.raises(UsageError, match=message.replace("{", r"\{").replace("(", r"\(")):
        search_space("sasrec", _space(tmp_path, search))


def test_dimensions_suggest_choices_ints_and_floats():
    import optuna

    trial = optuna.trial.FixedTrial({"model.dim": 64, "model.num_layers": 2, "train.lr": 0.003})
    assert Dimension("model.dim", choices=(32, 64)).suggest(trial) == 64
    assert Dimension("model.num_layers", low=1, high=3).suggest(trial) == 2
    assert Dimension("train.lr", low=1e-4, high=1e-2, log=True).suggest(trial) == 0.003
    # the method's own spaces parse, and fixed settings are never in them
    for method in ("sasrec", "bert4rec", "gru4rec", "lstm", "srgnn", "gcsan", "lightgcn"):
        keys = {d.key for d in search_space(method)}
        assert keys and not keys & {"train.seed", "train.protocol", "train.valid_split"}, method
    with pytest.raises(UsageError, match="declares no search space"):
        search_space("pop")


@pytest.fixture(scope="module")
def slice_wh(movielens_wh, tmp_path_factory) -> Path:
    """A copy of the session's ml-100k warehouse (its models and metrics left out)."""
    return shutil.copytree(movielens_wh, tmp_path_factory.mktemp("tune") / "wh",
                           ignore=shutil.ignore_patterns("models", "metrics", "metric_segments", "embeddings",
                                                         "_txn", "_locks", "_staging"))


def _trials(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


def test_a_study_records_failed_trials_with_their_reason_and_writes_the_best_config(slice_wh, tmp_path, capsys):
    """``num_heads`` 3 does not divide ``dim`` 16: those trials fail with torch's reason, the
    others complete; the best trial's settings become ``best.yaml``, which ``seqrep train`` reads."""
    space = _space(tmp_path, {"model.num_heads": [1, 3], "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}})
    run = tmp_path / "run.yaml"
    run.write_text("methods:\n  sasrec:\n    train: {batch_size: 64}\n")
    common = ["--warehouse", str(slice_wh), "--config", str(run)]
    assert main(["tune", "--method", "sasrec", "--date", str(DAY), "--trials", "6", "--space", str(space),
                 "--seed", "3", *FIXED, *common]) == 0
    out = capsys.readouterr().out
    folder = slice_wh / f"tuning/method=sasrec/study=sasrec-loo-{DAY}"
    states = [s for _, s in _trials(folder / "study.db")]
    assert len(states) == 6 and "COMPLETE" in states and "FAIL" in states, states
    assert "fail: AssertionError: embed_dim must be divisible by num_heads" in out
    assert "valid NDCG@10" in out and "best: trial" in out
    assert (folder / "trials.csv").read_text().count("\n") == 7 and (folder / "history.png").stat().st_size > 1000
    best = yaml.safe_load((folder / "best.yaml").read_text())
    settings = best["methods"]["sasrec"]
    assert settings["model"]["num_heads"] == 1 and settings["train"]["batch_size"] == 64  # the run's own kept
    assert settings["model"]["dim"] == 16 and settings["train"]["epochs"] == 3  # and the fixed ones
    assert 1e-3 <= settings["train"]["lr"] <= 1e-2
    # the selection read the validation split only: the test split's metrics are written by training, not tuning
    assert not (slice_wh / "metrics").exists() and not (slice_wh / "models").exists()
    # the day's run report shows the study and Optuna's history plot
    assert main(["report", "--date", str(DAY), *common]) == 0
    page = (slice_wh / f"reports/dt={DAY}/index.html").read_text()
    assert "<h2>Tuning</h2>" in page and f"sasrec-loo-{DAY}" in page and f"tuning-sasrec-sasrec-loo-{DAY}.png" in page
    # the same command again: the study is complete, nothing trains
    assert main(["tune", "--method", "sasrec", "--date", str(DAY), "--trials", "6", "--space", str(space),
                 "--seed", "3", *FIXED, *common]) == 0
    assert "6 of 6 trial(s) done" in capsys.readouterr().out and len(_trials(folder / "study.db")) == 6
    # another space under the same study name is refused
    other = _space(tmp_path, {"model.num_heads": [1, 2]}, "other.yaml")
    assert main(["tune", "--method", "sasrec", "--date", str(DAY), "--trials", "7", "--space", str(other),
                 *FIXED, *common]) == 2
    assert "was created with other settings" in capsys.readouterr().err
    # the best settings train as a config file, the fixed ones with them
    assert main(["train", "--method", "sasrec", "--date", str(DAY), "--json", "--warehouse", str(slice_wh),
                 "--config", str(folder / "best.yaml")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["split"] for r in rows} == {"valid", "test"}
    (model,) = (slice_wh / "models/sasrec").iterdir()
    trained = json.loads((model / "config.json").read_text())
    assert trained["model"]["num_heads"] == 1 and trained["train"]["lr"] == settings["train"]["lr"]
    assert trained["model"]["dim"] == 16 and trained["epochs"] <= 3


def test_a_study_killed_mid_trial_is_continued_by_the_same_command(slice_wh, tmp_path):
    space = _space(tmp_path, {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}})
    cmd = [sys.executable, "-m", "pipelines.cli", "tune", "--method", "sasrec", "--date", str(DAY), "--trials", "3",
           "--study", "killed", "--space", str(space), *FIXED, "--warehouse", str(slice_wh)]
    db = slice_wh / "tuning/method=sasrec/study=killed/study.db"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:  # the kill lands once trial 0 is finished and trial 1 is running
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists() and [s for _, s in _trials(db)] == ["COMPLETE", "RUNNING"]:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the study ended before the kill: {proc.stderr.read()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert [s for _, s in _trials(db)] == ["COMPLETE", "RUNNING"]
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "2 of 3 trial(s) done" in rerun.stdout  # the killed trial counts, as failed
    assert _trials(db) == [(0, "COMPLETE"), (1, "FAIL"), (2, "COMPLETE")]
    with sqlite3.connect(db) as con:
        (reason,) = con.execute("SELECT value_json FROM trial_user_attributes a JOIN trials t USING (trial_id) "
                                "WHERE t.number = 1 AND a.key = 'error'").fetchone()
    assert "interrupted" in reason
    # trial 0 was the configuration as it stands (SASRec's default learning rate, inside the range)
    with sqlite3.connect(db) as con:
        (lr,) = con.execute("SELECT param_value FROM trial_params p JOIN trials t USING (trial_id) "
                            "WHERE t.number = 0 AND p.param_name = 'train.lr'").fetchone()
    assert lr == pytest.approx(1e-3)
    assert not list(db.parent.glob("trial-*.partial"))  # the killed trial's work folder went with it
