"""bench/check.py: every table of bench/README.md is what its raw results give."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


# -- every script's table from crafted figures, through bench/check.py's renderer for it -------------

def _mt_run(variant: str, seed: int, tasks: dict[str, list[float]]) -> dict:
    return {"variant": variant, "seed": seed, "epochs": 10 + seed, "sec_per_epoch": 2.0 * seed, "wall_seconds": 30.0,
            "peak_rss_mb": 900.0 + seed, "protocol": "temporal", "day": "2017-12-03",
            "test": {t: {"hr@10": 0.5, "ndcg@10": sum(v) / len(v), "mrr@10": 0.25} for t, v in tasks.items()},
            "per_user": {k: x for t, v in tasks.items() for k, x in ((f"{t}/users", [1, 2, 3]), (f"{t}/ndcg@10", v))}}


def _multitask() -> tuple[dict, list[str]]:
    figures = {"tasks": ["buy"], "sets": [], "pop": {"buy": {"users": [1, 2, 3], "hr@10": [1.0, 0.0, 0.0],
                                                              "ndcg@10": [0.5, 0.0, 0.0], "mrr@10": [0.5, 0.0, 0.0]}},
               "runs": {"single-buy": [_mt_run("single-buy", 1, {"buy": [0.0, 0.5, 0.0]})],
                        "mmoe": [_mt_run("mmoe", 1, {"buy": [1.0, 0.5, 0.0]}),
                                 _mt_run("mmoe", 2, {"buy": [0.0, 0.5, 1.0]})]}}
    # mmoe per user over seeds (0.5, 0.5, 0.5) minus single (0, 0.5, 0): d = (0.5, 0, 0.5), mean 1/3,
    # sd 0.2887, half-width 1.96 * 0.2887 / sqrt(3) = 0.3267; mmoe's s/epoch median of 2 and 4, epochs of 11 and 12.
    return figures, ["| buy | pop | - | 3 | 0.3333 | 0.1667 | 0.1667 | - | - | - | - | - |",
                     "| buy | single-buy | 1 | 3 | 0.5000 | 0.1667 | 0.2500 | - | 2.00 | 11 | 30 | 901 |",
                     "| buy | mmoe | 2 | 3 | 0.5000 ± 0.0000 | 0.5000 ± 0.0000 | 0.2500 ± 0.0000 "
                     "| +0.3333 [+0.0067, +0.6600] | 3.00 | 12 | 30 | 902 |"]


def _incremental() -> tuple[dict, list[str]]:
    def row(arm: str, seed: int, ndcg: list[float], seconds: float) -> dict:
        return {"arm": arm, "seed": seed, "day": "1998-04-08", "seconds": seconds, "epochs": 3 if arm == "warm" else 40,
                "warm": arm == "warm", "users": [7, 8], "ndcg": ndcg, "hr": [1.0, 0.0]}

    rows = [row("full", 1, [0.2, 0.4], 100.0), row("warm", 1, [0.4, 0.4], 8.0),
            row("full", 2, [0.4, 0.2], 120.0), row("warm", 2, [0.2, 0.8], 9.0)]
    # warm NDCG@10 per seed 0.4 and 0.5 (sd 0.0707); per user over seeds, full (0.3, 0.3) and warm (0.3, 0.6):
    # d = (0, 0.3), mean 0.15, half-width 1.96 * 0.2121 / sqrt(2) = 0.294; train s median of 8 and 9.
    return {"method": "gru4rec", "warm_epochs": 3, "seeds": "1,2", "days": ["1998-04-08"], "rows": rows}, [
        "| 1998-04-08 | full | 0.5000 ± 0.0000 | 0.3000 ± 0.0000 |  | 110.0 | 40 |",
        "| 1998-04-08 | warm | 0.5000 ± 0.0000 | 0.4500 ± 0.0707 | +0.1500 [-0.1440, +0.4440] | 8.5 | 3 |"]


def _etl() -> tuple[dict, list[str]]:
    def size(n: int, scale: float) -> dict:
        runs = [{"ingest": 1.0 * scale, "clean": 3.0 * scale, "gate clean": 1.0 * scale},
                {"ingest": 2.0 * scale, "clean": 2.0 * scale, "gate clean": 2.0 * scale},
                {"ingest": 9.0 * scale, "clean": 9.0 * scale, "gate clean": 0.0}]
        duck = [{"clean": 1.0, "graphs": 0.5}, {"clean": 0.5, "graphs": 0.5}, {"clean": 2.0, "graphs": 1.0}]
        return {"events": n, "repeats": 3, "runs_stage_s": runs, "duckdb_runs_step_s": duck, "duckdb_threads": 2,
                "peak_bytes": [2**30, 3 * 2**29, 2**30], "peak_with_files_bytes": [2**31, 2**30, 2**30],
                "differences": [] if n < 10_000 else ["sequences: rows 3 != 4"]}

    # ETL s: median of the runs' totals (5, 6, 18) = 6 (12 at twice the time); Spark clean to graphs:
    # median of clean alone (3, 2, 9) = 3, not ingest nor the gate; DuckDB: median of (1.5, 1, 3) = 1.5;
    # peak memory: the largest run's; same tables: no difference listed.
    return {"days": 5, "repeats": [3, 3], "sizes": [size(8_000, 1.0), size(80_000, 2.0)]}, [
        "| 8,000 | 6.0 | 1,333 | 3.0 | 1.5 | 2.00 | 4.00 | 1.50 (2.00) | yes | 3 |",
        "| 80,000 | 12.0 | 6,667 | 6.0 | 1.5 | 4.00 | 8.00 | 1.50 (2.00) | NO | 3 |"]


def _gates() -> tuple[dict, list[str]]:
    runs = {"ingest": [10.0, 30.0, 20.0], "gate raw": [1.0, 5.0, 2.0], "clean": [40.0, 41.0, 39.0],
            "gate clean": [8.0, 9.0, 1.0]}
    # medians: ingest 20, raw 2 (10%), clean 40, gate 8 (20%); all: 60 and 10 (17%).
    return {"events": 1000, "repeats": 3, "rows": [["ingest", "raw"], ["clean", "clean"]], "runs_s": runs}, [
        "| ingest | 20.0 | raw | 2.0 | 10% |", "| clean | 40.0 | clean | 8.0 | 20% |",
        "| all | 60.0 | all | 10.0 | 17% |"]


def _infer_users() -> tuple[dict, list[str]]:
    row = {"method": "sasrec", "encoder": "eager", "precision": "fp32", "flops_full": 10e6, "flops_computed": 5e6,
           "chunk_matmul_gflops": [100.0, 200.0, 300.0], "chunk_users_per_s": [5000.0, 4000.0, 6000.0],
           "users": 30000, "seconds": 6.0, "warmup_s": 0.25}
    # limits 10k, 20k, 30k users/s (median 20k); shares 50%, 20%, 20% (median 20%); 5,000 users/s all;
    # GFLOP/s done: median rate 5,000 x 5 MFLOP.
    return {"part": "users", "rows": [row]}, [
        "| sasrec | eager | fp32 | 10.00 | 5.00 | 20,000 | 5,000 | 5,000, 4,000, 6,000 | 5,000 | 20% | 50%, 20%, 20% "
        "| 25 | 0.2 |"]


def _infer_index() -> tuple[dict, list[str]]:
    row = {"index": "exact (IndexFlatIP)", "build_s": 0.25, "latency_ms": [1.0, 2.0, 3.0, 10.0, 4.0], "recall@10": 1.0}
    # p50 3; p99 by linear interpolation: 4 + 0.96 x (10 - 4) = 9.76; mean 4.
    return {"part": "index", "rows": [row]}, ["| exact (IndexFlatIP) | 0.2 | 3.000 | 9.760 | 4.000 | 1.0000 |"]


def _peer_recbole() -> tuple[dict, list[str]]:
    def run(system: str, log: list[tuple[float, float]]) -> dict:
        return {"system": system, "model": "GRU4Rec", "best_valid_ndcg@10": max(v for v, _ in log),
                "log": [{"valid_ndcg@10": v, "elapsed_s": t} for v, t in log],
                "test": {"ndcg@10": 0.05, "hit@10": 0.1, "mrr@10": 0.03}}

    # RecBole reaches its best (0.06) at 800 s, ours at 8 s (its second epoch): 1/100.
    return {"pairs": [{"model": "GRU4Rec", "runs": [run("recbole", [(0.05, 400.0), (0.06, 800.0)]),
                                                    run("seqrep", [(0.04, 4.0), (0.07, 8.0), (0.08, 12.0)])]}]}, [
        "| GRU4Rec | recbole | 0.0600 | 0.0500 | 0.1000 | 2 | 800 |  |",
        "| GRU4Rec | seqrep | 0.0800 | 0.0500 | 0.1000 | 3 | 8 | 1/100 |"]


CRAFTED = [("bench/multitask.py", _multitask), ("bench/incremental.py", _incremental), ("bench/etl.py", _etl),
           ("bench/gates.py", _gates), ("bench/infer.py", _infer_users), ("bench/infer.py", _infer_index),
           ("bench/peer_recbole.py", _peer_recbole)]


@pytest.mark.parametrize("script, crafted", CRAFTED, ids=[c.__name__[1:] for _, c in CRAFTED])
def test_each_script_renders_its_table_from_its_figures(script, crafted, tmp_path, monkeypatch):
    """The rows computed by hand, rendered by bench/check.py's renderer of the script; then a results
    file of that script (its figures through JSON) and a README with its table check clean."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import check

    figures, rows = crafted()
    table = check.renderers()[script](figures)
    assert table.splitlines()[2:] == rows, table
    (tmp_path / "results").mkdir()
    doc = {"command": f"python {script} --record x", "figures": json.loads(json.dumps(figures)), "table": table}
    (tmp_path / "results" / "x.json").write_text(json.dumps(doc))
    (tmp_path / "README.md").write_text(f"<!-- results: bench/results/x.json -->\n\n{table}\n\ntext\n")
    assert check.check(tmp_path / "results", tmp_path / "README.md") == []
