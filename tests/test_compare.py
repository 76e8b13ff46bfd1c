"""``seqrep compare``: the paired statistics on hand-computed cases, and a comparison on an ml-100k
slice that trains what is missing, keeps what exists, and writes its table, rows and page."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest

from models.evaluate import EvalResult
from pipelines.cli import main
from pipelines.modeling.compare import Run, format_paired, paired, table

DAY = date(1997, 10, 1)  # ml-100k as of its 12th day: 83 test users
SMALL = ["--set", "model.dim=16", "--set", "model.max_len=20", "--set", "train.epochs=2"]


def _run(method: str, seed: int, ndcg: list[float]) -> Run:
    values = np.asarray(ndcg)
    per_user = {(m, 10): values for m in ("hr", "ndcg", "mrr")}
    return Run(method, seed, EvalResult("test", np.arange(len(values)), per_user, {("coverage", 10): 0.5}), "v")


def test_paired_differences_by_hand():
    d = np.array([0.1, 0.3, 0.2, 0.0])
    mean, lo, hi = paired(d)
    half = 1.96 * np.std(d, ddof=1) / 2  # sqrt(4) users
    assert (mean, lo, hi) == pytest.approx((0.15, 0.15 - half, 0.15 + half))
    assert format_paired(d) == f"+0.1500 [{0.15 - half:+.4f}, {0.15 + half:+.4f}]"
    assert paired(np.array([0.2]))[0] == pytest.approx(0.2) and format_paired(np.array([])) == "-"
    # a wider interval at a stricter level
    assert paired(d, 0.99)[1] < lo


def test_the_table_averages_users_over_seeds_before_pairing():
    base = [_run("markov", 1, [0.0, 0.5, 0.5, 0.0])]
    # two seeds: user values averaged over seeds, then differenced against the base per user
    learned = [_run("sasrec", 1, [1.0, 0.5, 0.5, 0.0]), _run("sasrec", 2, [0.0, 1.0, 0.5, 0.5])]
    text, rows = table({"markov": base, "sasrec": learned}, "markov")
    d = np.array([0.5, 0.25, 0.0, 0.25])
    assert rows[1]["delta_ndcg"] == pytest.approx(d.mean()) and rows[1]["users"] == 4
    assert rows[1]["ndcg@10"] == pytest.approx(0.5) and rows[1]["ndcg@10_sd"] == pytest.approx(0.0)
    assert f"| sasrec | 2 | 0.5000 ± 0.0000 | 0.5000 ± 0.0000 | 0.5000 ± 0.0000 | 0.5000 ± 0.0000 | {format_paired(d)} | yes |" in text
    assert rows[0].get("delta_ndcg") is None and "| markov | 1 |" in text
    # one comparison: the Bonferroni level is the 95% one itself
    assert "excludes 0 at 95.00% (Bonferroni, m=1)" in text
    # three comparisons: each interval at 1 - 0.05 / 3; a small sample no longer excludes zero
    three = {"markov": base, **{m: [_run(m, 1, [0.1, 0.0, 0.0, 0.0])] for m in ("a", "b", "c")}}
    text, rows = table(three, "markov")
    assert "excludes 0 at 98.33% (Bonferroni, m=3)" in text and all(r.endswith("| no |") for r in text.splitlines()[3:])


@pytest.fixture(scope="module")
def slice_wh(movielens_wh, tmp_path_factory) -> Path:
    return shutil.copytree(movielens_wh, tmp_path_factory.mktemp("compare") / "wh",
                           ignore=shutil.ignore_patterns("models", "metrics", "metric_segments", "embeddings",
                                                         "_txn", "_locks", "_staging"))


def test_compare_trains_what_is_missing_keeps_what_exists_and_writes_its_page(slice_wh, capsys):
    common = ["--date", str(DAY), "--warehouse", str(slice_wh)]
    assert main(["train", "--method", "sasrec", "--set", "train.seed=1", *SMALL, *common]) == 0  # one exists already
    capsys.readouterr()
    args = ["compare", "--methods", "pop,markov,sasrec", "--seeds", "1,2", "--base", "markov", *SMALL, *common]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "sasrec seed 1: test NDCG@10" in out and "kept" in out.split("sasrec seed 1")[1].splitlines()[0]
    assert "trained" in out.split("sasrec seed 2")[1].splitlines()[0]
    assert len(list((slice_wh / "models/sasrec").iterdir())) == 2  # seeds 1 and 2
    folder = slice_wh / f"comparisons/name=default/dt={DAY}"
    rows = duckdb.sql(f"SELECT method, seeds, \"ndcg@10\", delta_ndcg, users FROM read_parquet('{folder}/comparison.parquet')"
                      " ORDER BY method").fetchall()
    by = {r[0]: r for r in rows}
    assert set(by) == {"pop", "markov", "sasrec"} and by["pop"][1] == 1 and by["sasrec"][1] == 2
    # the same users ranked by every run: the mean of per-user differences is the difference of means
    assert by["pop"][3] == pytest.approx(by["pop"][2] - by["markov"][2], abs=1e-9) and by["pop"][4] > 50
    page = (folder / "index.html").read_text()
    assert "accuracy_coverage.png" in page and (folder / "segments.png").stat().st_size > 1000
    assert page.count("<tr>") == 4 and "<th>ΔNDCG@10 vs markov (paired, 95% CI)</th>" in page  # header + 3 methods
    assert (folder / "table.md").read_text().startswith("| method | seeds | HR@10")
    # again: every run kept, the same table
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "trained" not in again and (folder / "table.md").read_text().strip() in again
    # the floors the run report reads every method against: the same split's pop and Markov
    from pipelines.modeling.compare import floors

    assert floors(slice_wh, DAY, "loo") == pytest.approx({"pop": by["pop"][2], "markov": by["markov"][2]})
    assert main(["report", *common]) == 0
    report = (slice_wh / f"reports/dt={DAY}/index.html").read_text()
    best = max(("pop", "markov"), key=lambda m: by[m][2])
    assert f"{best} {by[best][2]:.4f}" in report  # the best floor, beside every method
    for version in (slice_wh / "models/sasrec").iterdir():
        test = duckdb.sql(f"SELECT value FROM read_parquet('{slice_wh}/metrics/method=sasrec/dt={DAY}/{version.name}.parquet') "
                          "WHERE split = 'test' AND metric = 'ndcg' AND k = 10").fetchall()[0][0]
        assert (f"sasrec ({version.name}) does not beat the best floor" in report) == (test <= by[best][2])
    assert main(["compare", "--methods", "pop,markov", "--base", "sasrec", *common]) == 2
    assert "--base sasrec: not one of the compared methods" in capsys.readouterr().err
