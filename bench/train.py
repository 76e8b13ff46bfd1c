"""Training benchmark: every method on one warehouse, several seeds, one table.

Each (method, seed) trains in its own process (so its peak memory is its own) through the same
code as ``seqrep train``, to convergence (early stopping on validation NDCG@10), and is ranked in
full on the test split. The table gives test HR/NDCG/MRR@10 as mean ± standard deviation over
seeds, the paired difference in NDCG@10 against the Markov baseline (per user, averaged over
seeds; mean and 95% interval over users), seconds per epoch, epochs, wall time and peak memory.

``--tail K`` adds the long-tail slice: test users whose target item has at most K training events
(``SequenceData.item_counts``, the events every method trains on; 0 = an item never trained on),
with HR@10 and NDCG@10 on that slice and the paired ΔNDCG@10 against ``--base`` on it.
``--short K`` adds the same for the test users with at most K training events (``train_len``:
the short histories, where a social graph should help).

``--methods`` takes ``LABEL=METHOD`` too: the method's runs kept and shown under LABEL, so one
method with other ``--set`` values sits beside itself (the GAN's base is
``base=sasrec_gan --set model.adversary=false``), and ``--config-of LABEL=FILE`` gives a label its
own config file (``seqrep tune``'s ``best.yaml`` beside the defaults: ``sasrec,tuned=sasrec
--config-of tuned=.../best.yaml``).

Results stay under ``--out`` (one JSON + per-user NPZ per run) and a rerun keeps finished runs,
so seeds can be added later and the last call prints the whole table. ``--record NAME`` also
writes ``bench/results/NAME.json`` (``bench/results.py``: command, code version, machine, date,
every run's figures with per-user NDCG@10, and the table), which ``bench/check.py`` re-derives.

Run (ml-100k, after ``seqrep ingest`` and ``seqrep etl --all`` into wh-ml):
    python bench/train.py --warehouse wh-ml --config configs/movielens.yaml --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from pipelines.modeling.compare import format_paired as _paired, mean_sd as _ms  # seqrep compare's statistics


def worker(args: argparse.Namespace) -> None:
    from pipelines.modeling.data import load
    from models.evaluate import evaluate
    from pipelines.modeling.train import resolve_day, train_method
    from pipelines.core.config import load_config

    cfg = load_config(args.config, warehouse=args.warehouse)
    day = resolve_day(cfg, None)
    t = time.perf_counter()
    data = load(cfg.warehouse, day, "loo")
    result, rows = train_method(cfg, args.method, day, sets=[f"train.seed={args.seed}", *args.set], data=data,
                                echo=lambda m: print(m, file=sys.stderr, flush=True))
    wall = time.perf_counter() - t
    from models.checkpoint import read_json
    from pipelines.modeling.train import load_trained

    _, model, folder = load_trained(cfg, args.method, day, [f"train.seed={args.seed}", *args.set])
    test = evaluate(model, data, "test")
    meta = read_json(folder / "config.json")
    out = Path(args.out)
    # Training events of each test user's target item: the long-tail slice (--tail) selects on it.
    target_events = data.item_counts()[data.splits["test"].targets[:, 0]]
    user_events = data.train_len[data.splits["test"].rows]
    np.savez(out.with_suffix(".npz"), users=test.users, target_train_events=target_events,
             user_train_events=user_events,
             **{f"{m}@{k}": v for (m, k), v in test.per_user.items()})
    log = result.log
    out.write_text(json.dumps({
        "method": args.method, "seed": args.seed, "epochs": result.epochs, "best_epoch": result.best_epoch,
        "sec_per_epoch": statistics.median([r["seconds"] for r in log]) if log else 0.0,
        "train_seconds": result.seconds, "wall_seconds": wall, "peak_rss_mb": meta["peak_rss_mb"],
        "valid_ndcg@10": result.best_valid_ndcg,
        "test": {f"{r['metric']}@{r['k']}": r["value"] for r in rows if r["split"] == "test"},
        "log": log,
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", required=True)
    ap.add_argument("--config")
    ap.add_argument("--methods", default="pop,markov,gru4rec,lstm,sasrec,bert4rec")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--set", action="append", default=[], help="extra --set for every learned method")
    ap.add_argument("--config-of", action="append", default=[], metavar="LABEL=FILE",
                    help="a label's own config file (default: --config)")
    ap.add_argument("--base", default="markov", help="the method each one is compared with, paired on users")
    ap.add_argument("--tail", type=int, default=None, metavar="K",
                    help="also report the test users whose target item has <= K training events")
    ap.add_argument("--short", type=int, default=None, metavar="K",
                    help="also report the test users with <= K training events")
    ap.add_argument("--out", help="folder for per-run JSON and per-user metrics (default: a temp folder)")
    ap.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    import tempfile

    outdir = Path(args.out or tempfile.mkdtemp(prefix="seqrep-bench-train-"))
    outdir.mkdir(parents=True, exist_ok=True)
    print(f"[bench] results under {outdir}", flush=True)
    results = run_all(args, outdir)
    text = table(results, args.base, args.tail, args.short)
    print(text)
    summary = {m: [{k: v for k, v in r.items() if k not in ("per_user", "log")} for r in rs] for m, rs in results.items()}
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1))
    if args.record:
        from results import record  # bench/results.py (the script's folder is on the path)

        record(args.record, figures_of(results, args.base, args.tail, args.short), text)


def run_all(args: argparse.Namespace, outdir: Path) -> dict[str, list[dict]]:
    """Every (method, seed) of the command, each in its own process; finished runs under
    ``outdir`` are kept."""
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[dict]] = {}
    for spec in args.methods.split(","):
        from models.registry import METHODS

        # LABEL=METHOD: the method's runs under another name (one method with other --set, beside itself).
        label, _, method = spec.rpartition("=")
        label = label or method
        if method not in METHODS:
            raise SystemExit(f"--methods: unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
        learned = getattr(METHODS[method], "learned", True)
        for seed in seeds if learned else seeds[:1]:  # baselines do not depend on the seed
            out = outdir / f"{label}-{seed}.json"
            if out.is_file() and out.with_suffix(".npz").is_file():
                print(f"[bench] {label} seed {seed}: kept from {out}", flush=True)
                r = json.loads(out.read_text())
                r["per_user"] = dict(np.load(out.with_suffix(".npz")))
                results.setdefault(label, []).append(r)
                continue
            cmd = [sys.executable, __file__, "--worker", "--warehouse", args.warehouse, "--method", method,
                   "--seed", str(seed), "--out", str(out)]
            own = dict(c.split("=", 1) for c in args.config_of).get(label, args.config)
            cmd += ["--config", own] if own else []
            for s in args.set if learned else []:
                cmd += ["--set", s]
            print(f"[bench] {label} seed {seed}", flush=True)
            subprocess.run(cmd, check=True)
            r = json.loads(out.read_text())
            r["per_user"] = dict(np.load(out.with_suffix(".npz")))
            results.setdefault(label, []).append(r)
    return results


#: The slices ``--tail`` and ``--short`` add: (option, per-user column it selects on, column header).
SLICES = (("tail", "target_train_events", "tail≤{k} users"), ("short", "user_train_events", "users≤{k} events"))


def figures_of(results: dict[str, list[dict]], base: str, tail: int | None, short: int | None = None) -> dict:
    """What ``table`` reads, as JSON: each run's figures and per-user NDCG@10 (and HR@10 and the
    column each slice selects on, when the table has slices)."""
    per_user = ["ndcg@10", "hr@10"] if tail is not None or short is not None else ["ndcg@10"]
    runs = {m: [{**{k: v for k, v in r.items() if k not in ("per_user", "log")},
                 "per_user": {k: r["per_user"][k].tolist() for k in per_user}} for r in rs]
            for m, rs in results.items()}
    first = next(r for rs in results.values() for r in rs)["per_user"]
    column = lambda c: first[c].tolist() if c in first else None  # noqa: E731
    out = {"base": base, "tail": tail, "runs": runs,
           "target_train_events": column("target_train_events") if tail is not None else None}
    if short is not None:  # recorded only when asked for: earlier results files stay as they were
        out.update(short=short, user_train_events=column("user_train_events"))
    return out


def results_of(figures: dict) -> dict[str, list[dict]]:
    """``figures_of`` read back: the runs as ``table`` takes them."""
    columns = {c: np.asarray(figures[c]) for _, c, _ in SLICES if figures.get(c) is not None}
    return {m: [{**r, "per_user": {**{k: np.asarray(v) for k, v in r["per_user"].items()}, **columns}}
                for r in rs] for m, rs in figures["runs"].items()}


def table(results: dict[str, list[dict]], base: str = "markov", tail: int | None = None,
          short: int | None = None) -> str:
    """The markdown table of the module docstring."""
    ref = results.get(base)
    ref_ndcg = np.mean([r["per_user"]["ndcg@10"] for r in ref], 0) if ref else None
    head = f"| method | seeds | HR@10 | NDCG@10 | MRR@10 | ΔNDCG@10 vs {base} (paired, 95% CI) | s/epoch | epochs | wall s | peak MB |"
    rule = "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    any_run = next(r for rs in results.values() for r in rs)
    slices = []
    for (name, column, title), k in zip(SLICES, (tail, short)):
        if k is None:
            continue
        if column not in any_run["per_user"]:
            raise SystemExit(f"--{name}: these results lack {column} (rerun them with this bench/train.py)")
        slices.append(any_run["per_user"][column] <= k)  # the same test users for every run
        label = "tail" if name == "tail" else "short"
        head += f" {title.format(k=k)} | HR@10 {label} | NDCG@10 {label} | ΔNDCG@10 {label} vs {base} (paired, 95% CI) |"
        rule += " --- | --- | --- | --- |"
    lines = [head, rule]
    for method, rs in results.items():
        cells = [_ms([r["test"][f"{m}@10"] for r in rs]) for m in ("hr", "ndcg", "mrr")]
        mean_ndcg = np.mean([r["per_user"]["ndcg@10"] for r in rs], 0)
        delta = _paired(mean_ndcg - ref_ndcg) if ref_ndcg is not None and method != base else "-"
        line = (f"| {method} | {len(rs)} | {cells[0]} | {cells[1]} | {cells[2]} | {delta} | "
                f"{statistics.median(r['sec_per_epoch'] for r in rs):.2f} | "
                f"{statistics.median(r['epochs'] for r in rs):.0f} | {statistics.median(r['wall_seconds'] for r in rs):.0f} | "
                f"{max(r['peak_rss_mb'] for r in rs):.0f} |")
        for mask in slices:
            slice_cells = [_ms([float(r["per_user"][f"{m}@10"][mask].mean()) if mask.any() else float("nan")
                                for r in rs]) for m in ("hr", "ndcg")]
            d = _paired(mean_ndcg[mask] - ref_ndcg[mask]) if ref_ndcg is not None and method != base else "-"
            line += f" {int(mask.sum())} | {slice_cells[0]} | {slice_cells[1]} | {d} |"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
