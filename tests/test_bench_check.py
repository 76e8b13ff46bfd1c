"""bench/check.py: every table of bench/README.md is what its raw results give."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECK = [sys.executable, str(ROOT / "bench" / "check.py")]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CHECK, *args], capture_output=True, text=True, cwd=ROOT)


def test_the_committed_tables_are_their_raw_results():
    out = _run()
    assert out.returncode == 0, out.stderr
    assert "0 problem(s)" in out.stdout


def _run_of(method: str, ndcg: list[float], seed: int = 1) -> dict:
    return {"method": method, "seed": seed, "epochs": 3, "best_epoch": 2, "sec_per_epoch": 1.5, "train_seconds": 5.0,
            "wall_seconds": 7.0, "peak_rss_mb": 500.0, "valid_ndcg@10": 0.1,
            "test": {"hr@10": 0.5, "ndcg@10": sum(ndcg) / len(ndcg), "mrr@10": 0.2}, "per_user": {"ndcg@10": ndcg}}


def test_a_number_changed_by_hand_or_a_missing_file_is_reported(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import train
    finally:
        sys.path.remove(str(ROOT / "bench"))
    figures = {"base": "markov", "tail": None, "target_train_events": None,
               "runs": {"markov": [_run_of("markov", [0.0, 1.0, 0.5])],
                        "sasrec": [_run_of("sasrec", [1.0, 1.0, 0.5], 1), _run_of("sasrec", [0.5, 1.0, 1.0], 2)]}}
    table = train.table(train.results_of(figures), "markov", None)
    assert "+0.3333 [" in table  # per user, sasrec averaged over its seeds minus markov: (0.75, 0, 0.25)
    results = tmp_path / "results"
    results.mkdir()
    (results / "t.json").write_text(json.dumps({"command": "python bench/train.py --record t", "figures": figures,
                                                "table": table}))
    readme = tmp_path / "README.md"
    readme.write_text(f"# B\n\n<!-- results: bench/results/t.json -->\n\n{table}\n\ntext\n")
    ok = _run("--results", str(results), "--readme", str(readme))
    assert ok.returncode == 0, ok.stderr
    readme.write_text(readme.read_text().replace("| 0.5000 |", "| 0.5100 |", 1)
                      + "\n<!-- results: bench/results/gone.json -->\n| a |\n")
    bad = _run("--results", str(results), "--readme", str(readme))
    assert bad.returncode == 1
    assert "the table in README.md is not the one its figures give" in bad.stderr and "0.5100" in bad.stderr
    assert "names bench/results/gone.json, which does not exist" in bad.stderr
