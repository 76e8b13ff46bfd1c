"""Incremental training: warm start vs full retrain, night after night, on quality and time.

Both arms run the nightly steps of ``pipelines/nightly/steps.py`` (train, evaluate, regression gate,
infer, embeddings gate, publish) over the same days, each in its own copy of the warehouse's
ETL tables (hard links, not copies of the files):

- ``full``: every night retrains from scratch (``nightly.full_retrain_days: 1``);
- ``warm``: the first night trains fully, each later night continues the last published model
  for ``--warm-epochs`` epochs on the data as of the day (vocabularies grown).

For each later night: test HR/NDCG@10 (full ranking, leave-one-out as of that day) as mean ± sd
over seeds, the paired ΔNDCG@10 (warm - full, per user, averaged over seeds; mean and 95% interval
over users), training seconds and epochs. ``--record NAME`` also writes ``bench/results/NAME.json``
(``bench/results.py``) with every (arm, seed, night)'s figures and per-user HR/NDCG@10 (``figures_of``),
from which ``table`` renders the table again (``bench/check.py``).

Run (ml-100k, after ``seqrep ingest`` and ``seqrep etl --all`` into wh-ml):
    python bench/incremental.py --warehouse wh-ml --config configs/movielens.yaml --method gru4rec \\
        --days 1998-04-01,1998-04-08,1998-04-15,1998-04-22 --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ETL_TABLES = ("raw", "sequences", "splits", "vocab", "graphs", "items")  # what training and inference read


def arm_warehouse(source: Path, out: Path) -> Path:
    """A fresh warehouse with ``source``'s ETL tables as hard links (a symbolic link would resolve
    outside the warehouse, which it refuses); models, metrics and embeddings start empty."""
    import os

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in ETL_TABLES:
        if (source / name).exists():
            shutil.copytree(source / name, out / name, copy_function=os.link)
    return out


def run_arm(args, arm: str, seed: int, days: list[date]) -> list[dict]:
    from models.evaluate import evaluate
    from pipelines.modeling.train import load_trained
    from pipelines.modeling.data import load
    from pipelines.nightly import steps as nightly
    from pipelines.core.config import load_config

    wh = arm_warehouse(Path(args.warehouse), Path(args.out) / f"{arm}-{seed}")
    base = load_config(args.config, warehouse=wh)
    method_cfg = {**base.methods.get(args.method, {})}
    method_cfg["train"] = {**method_cfg.get("train", {}), "seed": seed}
    cfg = base.with_overrides(
        nightly={"methods": [args.method], "warm_epochs": args.warm_epochs,
                 "full_retrain_days": 1 if arm == "full" else 10_000, "max_ndcg_drop": 1.0},
        methods={**base.methods, args.method: method_cfg})
    rows = []
    for day in days:
        t = time.perf_counter()
        info = nightly.train(cfg, args.method, day, echo=lambda m: print(f"  [{arm} {seed}] {m}", file=sys.stderr))
        seconds = time.perf_counter() - t
        nightly.evaluate(cfg, args.method, day)
        nightly.regression_gate(cfg, args.method, day)
        nightly.infer(cfg, args.method, day, echo=lambda m: None)
        nightly.validate_embeddings(cfg, args.method, day, echo=lambda m: None)
        nightly.publish(cfg, args.method, day, echo=lambda m: None)
        _, model, _ = load_trained(cfg, args.method, day)
        test = evaluate(model, load(cfg.warehouse, day, "loo"), "test")
        rows.append({"arm": arm, "seed": seed, "day": day.isoformat(), "seconds": seconds, "epochs": info["epochs"],
                     "warm": info["warm_start"], "users": test.users.tolist(),
                     "ndcg": test.per_user[("ndcg", 10)].tolist(), "hr": test.per_user[("hr", 10)].tolist()})
        print(f"{arm:>4} seed {seed} {day}: NDCG@10 {np.mean(rows[-1]['ndcg']):.4f} HR@10 {np.mean(rows[-1]['hr']):.4f} "
              f"train {seconds:.1f}s, {info['epochs']} epochs{' (warm)' if info['warm_start'] else ''}", flush=True)
    return rows


def figures_of(results: list[dict], days: list[date], method: str, warm_epochs: int, seeds: str) -> dict:
    """What ``table`` reads, as JSON: every run's rows (``run_arm``) and the nights of the table
    (``days``: all but the first, which trains fully in both arms)."""
    return {"method": method, "warm_epochs": warm_epochs, "seeds": seeds, "days": [d.isoformat() for d in days],
            "rows": results}


def table(results: list[dict], days: list[date]) -> str:
    """The markdown table of the module docstring: one row per night and arm of ``results`` (``run_arm``'s rows)."""
    lines = ["| night | arm | test HR@10 | test NDCG@10 | ΔNDCG@10 warm - full [95% CI] | train s | epochs |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for day in days:
        by = {arm: [r for r in results if r["arm"] == arm and r["day"] == day.isoformat()] for arm in ("full", "warm")}
        # Paired on users: average each user's NDCG over seeds in each arm, then difference.
        per_user = {}
        for arm, rs in by.items():
            acc: dict[int, list[float]] = {}
            for r in rs:
                for u, v in zip(r["users"], r["ndcg"]):
                    acc.setdefault(u, []).append(v)
            per_user[arm] = {u: float(np.mean(v)) for u, v in acc.items()}
        common = sorted(set(per_user["full"]) & set(per_user["warm"]))
        d = np.array([per_user["warm"][u] - per_user["full"][u] for u in common])
        half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        for arm, rs in by.items():
            nd = [float(np.mean(r["ndcg"])) for r in rs]
            hr = [float(np.mean(r["hr"])) for r in rs]
            sd = lambda x: statistics.stdev(x) if len(x) > 1 else 0.0  # noqa: E731
            delta = f"{d.mean():+.4f} [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]" if arm == "warm" else ""
            lines.append(f"| {day} | {arm} | {np.mean(hr):.4f} ± {sd(hr):.4f} | {np.mean(nd):.4f} ± {sd(nd):.4f} | "
                         f"{delta} | {statistics.median(r['seconds'] for r in rs):.1f} | "
                         f"{statistics.median(r['epochs'] for r in rs):.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--warehouse", required=True, help="a warehouse with the ETL's tables for every day used")
    p.add_argument("--config", required=True)
    p.add_argument("--method", default="gru4rec")
    p.add_argument("--days", required=True, help="comma-separated nights, in order; the first trains fully in both arms")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--warm-epochs", type=int, default=3)
    p.add_argument("--out", default="bench-incremental", help="arm warehouses and results.json")
    p.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    args = p.parse_args()
    days = [date.fromisoformat(d) for d in args.days.split(",")]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in ("full", "warm"):
            results += run_arm(args, arm, seed, days)
    (Path(args.out) / "results.json").write_text(json.dumps(results))
    print(f"\n{args.method}, warm start ({args.warm_epochs} epochs a night) vs full retrain, seeds {args.seeds}\n")
    text = table(results, days[1:])
    print(text)
    if args.record:
        from results import record  # bench/results.py (the script's folder is on the path)

        record(args.record, figures_of(results, days[1:], args.method, args.warm_epochs, args.seeds), text)


if __name__ == "__main__":
    main()
