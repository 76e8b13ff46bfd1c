"""Cross-domain benchmark: per direction (a configured pair), target-only methods against the
cross-domain ones, on all target users and on the cold-start-in-target users.

Each (direction, method, seed) trains in its own process through ``seqrep train --pair``'s code
(``pipelines.modeling.cross_domain.train_on_pair``), early-stopped on its validation split, and
is ranked in full over the target's items on ``test`` (warm users) and ``cold_test`` (cold users,
whose target events no method trained on; users apart from ``cold_valid``'s). Methods:

- target-only (the pair's target view): ``pop``, ``sasrec``, ``lightgcn``; a cold user has no
  target history there, so these rank them by popularity (``models.evaluate``);
- cross-domain: ``lightgcn_joint`` (LightGCN on the mixed view: the joint graph of both domains'
  items, users shared; ``lightgcn_joint_cold`` the same early-stopped on ``cold_valid``, ``lightgcn_joint_sdn`` with
  each negative from its positive's domain), ``sasrec_mixed`` (mixed view), ``emcdr`` (mixed view; maps the user vectors
  of the same seed's ``lightgcn_source`` run, LightGCN on the source view, onto ``lightgcn``'s;
  the paper fits MF vectors, LightGCN is its graph form; ``lightgcn_source`` is not in the table).

The reference is the target-only method with the best mean validation NDCG@10 (warm users):
"the best target-only" (``ref``). The table gives per direction HR/NDCG/MRR@10 (mean ± std over seeds) on
all users (test ∪ cold_test) and on cold users, and the paired per-user difference in NDCG@10
against the reference (each user's value averaged over seeds; mean and 95% interval over users),
with the relative difference of the means on cold users (the issue's +5% target).

Results stay under ``--out`` (JSON + per-user NPZ per run; a rerun keeps finished runs);
``--record NAME`` writes ``bench/results/NAME.json`` for ``bench/check.py``.

Run (after `seqrep ingest` + `seqrep etl --all` of the pair folder, see README "Cross-domain"):
    python bench/cross_domain.py --warehouse /work/wh/az-cs --config configs/amazon-cdr.yaml \\
        --seeds 1,2,3 --out /work/wh/az-cs-bench --set train.epochs=30 --set train.patience=5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pipelines.modeling.compare import format_paired as _paired, mean_sd as _ms  # seqrep compare's statistics

#: label -> (method, view, extra --set); target-only methods first.
METHODS = {
    "pop": ("pop", "target", []),
    "sasrec": ("sasrec", "target", ["model.loss=sampled", "train.batch_size=128"]),
    "lightgcn": ("lightgcn", "target", []),
    "lightgcn_source": ("lightgcn", "source", []),
    "lightgcn_joint": ("lightgcn", "mixed", []),
    # the same, early-stopped on the cold users' validation targets (as EMCDR is), not the warm ones'
    "lightgcn_joint_cold": ("lightgcn", "mixed", ["train.valid_split=cold_valid"]),
    # the same, each BPR negative drawn from its positive's domain (BiTGCF's per-domain losses)
    "lightgcn_joint_sdn": ("lightgcn", "mixed", ["model.same_domain_negatives=true"]),
    "sasrec_mixed": ("sasrec_mixed", "mixed", []),
    "emcdr": ("emcdr", "mixed", []),
}
TARGET_ONLY = ("pop", "sasrec", "lightgcn")
#: Runs a method's run needs first (same direction and seed): EMCDR maps one run onto another.
NEEDS = {"emcdr": ("lightgcn_source", "lightgcn")}
HIDDEN = ("lightgcn_source",)  # helpers, not rows of the table
SPLITS = ("test", "cold_test")
#: Ranked in the worker: valid too (the reference is chosen on it; pop has no best epoch to report).
EVALUATED = ("valid", *SPLITS)


def worker(args: argparse.Namespace) -> None:
    from pipelines.core.config import load_config
    from pipelines.modeling.cross_domain import train_on_pair
    from pipelines.modeling.train import resolve_day

    cfg = load_config(args.config, warehouse=args.warehouse)
    day = resolve_day(cfg, None)
    method, view, extra = METHODS[args.label]
    out = Path(args.out)
    if args.rescore:  # a finished run's model, ranked again (its figures rewritten, its training ones kept)
        kept = json.loads(out.read_text())
        kept.update(score(cfg, day, args.pair, view, kept["run"], out))
        out.write_text(json.dumps(kept))
        return
    sets = [f"train.seed={args.seed}", *(args.set if method != "pop" else []), *extra]
    for name, run in json.loads(args.runs).items():
        sets.append(f"model.{name}={run}")
    t = time.perf_counter()
    result, _ = train_on_pair(cfg, method, day, args.pair, view, sets=sets,
                              echo=lambda m: print(m, file=sys.stderr, flush=True), evaluate=False)
    wall = time.perf_counter() - t
    log = result.log
    out.write_text(json.dumps({
        "label": args.label, "method": method, "view": view, "seed": args.seed,
        "run": f"{method}@{result.folder.name}", "epochs": result.epochs, "best_epoch": result.best_epoch,
        "sec_per_epoch": statistics.median([r["seconds"] for r in log]) if log else 0.0, "wall_seconds": wall,
        **score(cfg, day, args.pair, view, f"{method}@{result.folder.name}", out)}))


def score(cfg, day, pair: str, view: str, run: str, out: Path) -> dict:
    """Rank run ``method@version`` on the evaluated splits of the pair's view: each user's metrics
    (with the users, so two runs pair up user by user) into ``out``'s NPZ; the means returned."""
    from models.evaluate import evaluate
    from models.trainer import pick_device
    from pipelines.modeling.cross_domain import load_pair_data
    from pipelines.modeling.train import load_version

    method, _, version = run.partition("@")
    mc, model, _ = load_version(cfg, method, version)
    data = load_pair_data(cfg, day, pair, view)
    model.to(pick_device(mc.train))
    per_user, means, users = {}, {}, {}
    for split in EVALUATED if view != "source" else ():
        res = evaluate(model, data, split, device=pick_device(mc.train))
        per_user.update({f"{split}:{m}@{k}": v for (m, k), v in res.per_user.items()})
        per_user[f"{split}:users"] = res.users
        users[split] = len(res.users)
        means.update({f"{split}:{m}@{k}": v for (m, k), v in res.mean().items()})
    np.savez(out.with_suffix(".npz"), **per_user)
    return {"metrics": means, "users": users}


def run_one(args: argparse.Namespace, outdir: Path, pair: str, label: str, seed: int,
            done: dict[tuple[str, str, int], dict]) -> dict:
    """The (pair, label, seed) run, from ``--out`` when finished before, else in a subprocess."""
    out = outdir / f"{pair}-{label}-{seed}.json"
    if args.rescore and out.is_file():
        print(f"[bench] {pair} {label} seed {seed}: ranked again", flush=True)
        subprocess.run([sys.executable, __file__, "--worker", "--rescore", "--warehouse", args.warehouse, "--config",
                        args.config, "--pair", pair, "--label", label, "--seed", str(seed), "--out", str(out)],
                       check=True)
    elif not (out.is_file() and out.with_suffix(".npz").is_file()):
        runs = {}
        if label in NEEDS:
            src, tgt = (done[(pair, need, seed)]["run"] for need in NEEDS[label])
            runs = {"source_run": src, "target_run": tgt}
        cmd = [sys.executable, __file__, "--worker", "--warehouse", args.warehouse, "--config", args.config,
               "--pair", pair, "--label", label, "--seed", str(seed), "--out", str(out), "--runs", json.dumps(runs)]
        for s in args.set:
            cmd += ["--set", s]
        print(f"[bench] {pair} {label} seed {seed}", flush=True)
        subprocess.run(cmd, check=True)
    else:
        print(f"[bench] {pair} {label} seed {seed}: kept from {out}", flush=True)
    r = json.loads(out.read_text())
    r["per_user"] = {k: v for k, v in np.load(out.with_suffix(".npz")).items()
                     if k.endswith("ndcg@10") or k.endswith(":users")}
    for split in SPLITS if r["view"] != "source" else ():  # runs written before users were saved cannot be paired
        if f"{split}:users" not in r["per_user"]:
            raise SystemExit(f"{out.with_suffix('.npz')} has no users of {split}: rerun with --rescore")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--pairs", help="directions to run (default: every pair of the config)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--set", action="append", default=[], help="extra --set for every learned method")
    ap.add_argument("--out", required=True, help="folder for per-run JSON and per-user metrics")
    ap.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    ap.add_argument("--rescore", action="store_true",
                    help="rank every finished run's stored model again (its per-user figures rewritten)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--pair", "--label", "--runs"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    from pipelines.core.config import load_config

    cfg = load_config(args.config, warehouse=args.warehouse)
    pairs = args.pairs.split(",") if args.pairs else [p.name for p in cfg.cross_domain.pairs]
    labels = args.methods.split(",")
    unknown = [m for m in labels if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; known: {', '.join(METHODS)}")
    labels = [n for lbl in labels for n in (*NEEDS.get(lbl, ()), lbl)]  # helpers first
    labels = list(dict.fromkeys(labels))
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    done: dict[tuple[str, str, int], dict] = {}
    for pair in pairs:
        for seed in seeds:  # seed by seed: a stopped run leaves whole seeds behind
            for label in labels if seed == seeds[0] else [lb for lb in labels if lb != "pop"]:  # pop: no seed
                done[(pair, label, seed)] = run_one(args, outdir, pair, label, seed, done)
    figures = {"pairs": {pair: {label: method_figures([r for (p, lbl, _), r in done.items() if p == pair and lbl == label])
                                for label in labels if label not in HIDDEN} for pair in pairs}}
    text = table(figures)
    print(text)
    if args.record:
        from results import record  # bench/results.py

        record(args.record, figures, text)


def method_figures(runs: list[dict]) -> dict:
    """What ``table`` reads of a method's runs: each run's figures, and per split each user's
    NDCG@10 averaged over the runs (seeds), in the users' order (checked: the same for every run)."""
    for s in SPLITS:
        first = runs[0]["per_user"][f"{s}:users"]
        if any(not np.array_equal(r["per_user"][f"{s}:users"], first) for r in runs):
            raise SystemExit(f"the runs of {runs[0]['label']} ranked other users on {s}: they cannot be paired")
    return {"runs": [{k: v for k, v in r.items() if k != "per_user"} for r in runs],
            "users": {s: hashlib.sha256(np.ascontiguousarray(runs[0]["per_user"][f"{s}:users"], np.int64).tobytes())
                      .hexdigest()[:16] for s in SPLITS},
            "per_user": {s: np.round(np.mean([r["per_user"][f"{s}:ndcg@10"] for r in runs], 0), 6).tolist()
                         for s in SPLITS}}


def _all(runs: list[dict], metric: str) -> list[float]:
    """Per run: ``metric`` on all users (test ∪ cold_test), the two splits' means weighted by their sizes."""
    return [sum(r["metrics"][f"{s}:{metric}"] * r["users"][s] for s in SPLITS) / sum(r["users"][s] for s in SPLITS)
            for r in runs]


def table(figures: dict) -> str:
    """One markdown table, a block of rows per direction (the module docstring): each direction's
    users and its reference (marked ``ref``) in its first column."""
    lines = ["| direction | method | seeds | HR@10 all | NDCG@10 all | MRR@10 all | ΔNDCG@10 all vs ref (95% CI) | "
             "HR@10 cold | NDCG@10 cold | MRR@10 cold | ΔNDCG@10 cold vs ref (95% CI) | cold Δ% | s/epoch | epochs |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for pair, methods in figures["pairs"].items():
        ref = max((m for m in TARGET_ONLY if m in methods),
                  key=lambda m: statistics.mean(r["metrics"]["valid:ndcg@10"] for r in methods[m]["runs"]))
        per = {m: {s: np.asarray(v) for s, v in f["per_user"].items()} for m, f in methods.items()}
        for m, f in methods.items():  # paired differences need every method's users in one order
            if any(f["users"][s] != methods[ref]["users"][s] for s in SPLITS):
                raise ValueError(f"{pair}: {m} ranked other users than {ref}: no paired difference")
        first = methods[ref]["runs"][0]["users"]
        where = f"{pair} ({first['test']:,} warm, {first['cold_test']:,} cold users)"
        for label, f in methods.items():
            runs = f["runs"]
            every = [_ms(_all(runs, f"{m}@10")) for m in ("hr", "ndcg", "mrr")]
            cold = [_ms([r["metrics"][f"cold_test:{m}@10"] for r in runs]) for m in ("hr", "ndcg", "mrr")]
            d_all = d_cold = rel = "ref"
            if label != ref:
                d_all = _paired(np.concatenate([per[label][s] - per[ref][s] for s in SPLITS]))
                d_cold = _paired(per[label]["cold_test"] - per[ref]["cold_test"])
                base = per[ref]["cold_test"].mean()
                rel = f"{100 * (per[label]['cold_test'].mean() / base - 1):+.1f}%" if base > 0 else "-"
            lines.append(f"| {where} | {label} | {len(runs)} | {' | '.join(every)} | {d_all} | {' | '.join(cold)} | "
                         f"{d_cold} | {rel} | {statistics.median(r['sec_per_epoch'] for r in runs):.1f} | "
                         f"{statistics.median(r['epochs'] for r in runs):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
