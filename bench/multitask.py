"""Multi-task benchmark: MMoE over behaviors against single-task models of each behavior, per task.

Variants (all ``models/multitask.py``, same encoder, data and training loop): ``mmoe`` trains every
task's head (``model.tasks`` of ``mmoe.yaml``: view, cart, fav, buy); ``single-<task>`` trains one
head on that behavior's targets only (``--set model.tasks=[<task>]``). Each (variant, seed) trains
in its own process (its peak memory is its own) through the shared trainer (``models.trainer``),
early-stopped on the shared validation split, and is then ranked per task on the per-task test rows
(``models.multitask.task_splits``: each user's last event of the behavior on the held-out day,
every event before it as history, seen items not masked). ``pop`` (training popularity) is ranked
on the same rows. The table gives, per task, HR/NDCG/MRR@10 as mean ± standard deviation over
seeds, the rows (users) ranked, and on the ``mmoe`` row the paired per-user difference in NDCG@10
against ``single-<task>`` (each user's value averaged over seeds; mean and 95% interval over
users), plus seconds per epoch, epochs, wall time and peak memory per run (medians; peak: max).

Results are kept under ``--out`` (one JSON + per-user NPZ per run); a rerun skips finished runs,
so a long benchmark can run in pieces (``--variants``) and the last call prints the whole table.
``--record NAME`` also writes ``bench/results/NAME.json`` (``bench/results.py``) with ``figures_of``'s
figures (every run's figures with its per-task users and per-user NDCG@10, pop's per-user metrics),
from which ``table`` renders the table again (``bench/check.py``).

Run (after ``seqrep ingest --source taobao`` and ``seqrep etl --all`` into /work/wh/tb):
    python bench/multitask.py --warehouse /work/wh/tb --config configs/taobao.yaml --seeds 1,2,3 \\
        --out /work/wh/tb-bench-mt --set train.epochs=30 --set train.patience=5
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

from pipelines.modeling.compare import mean_sd as _ms  # seqrep compare's statistics

METRICS = ("hr", "ndcg", "mrr")


def variant_sets(variant: str) -> list[str]:
    """``--set`` options of a variant: ``mmoe`` keeps the yaml's tasks, ``single-<task>`` one task."""
    if variant == "mmoe":
        return []
    if variant.startswith("single-"):
        return [f"model.tasks=[{variant[7:]}]"]
    raise SystemExit(f"unknown variant {variant!r}: mmoe or single-<task>")


def worker(args: argparse.Namespace) -> None:
    from models.checkpoint import read_json
    from pipelines.modeling.data import load
    from models.multitask import evaluate_tasks
    from models.registry import method_config
    from pipelines.modeling.train import build, model_folder, resolve_day
    from models.trainer import train
    from pipelines.core.config import load_config

    cfg = load_config(args.config, warehouse=args.warehouse)
    day = resolve_day(cfg, None)
    sets = [f"train.seed={args.seed}", *variant_sets(args.variant), *args.set]
    mc = method_config("mmoe", cfg.methods.get("mmoe"), sets)
    t = time.perf_counter()
    data = load(cfg.warehouse, day, mc.train.protocol)
    model = build(mc, data.n_items, data.user_vocab)
    # The trainer, not ``train_method``: that also ranks the shared temporal test split, whose
    # targets (every distinct item of the day, hundreds for some Taobao users) overflow
    # ``models.metrics.target_ranks``'s [B, T, N] comparison; the per-task rows have one target each.
    result = train(model, data, mc, model_folder(cfg, mc, day),
                   echo=lambda m: print(f"[{args.variant} {args.seed}] {m}", file=sys.stderr, flush=True))
    wall = time.perf_counter() - t
    per_task = evaluate_tasks(model, data, mc.params().tasks)
    out = Path(args.out)
    arrays = {}
    for task, res in per_task.items():
        arrays[f"{task}/users"] = res.users
        arrays.update({f"{task}/{m}@{k}": v for (m, k), v in res.per_user.items()})
    np.savez(out.with_suffix(".npz"), **arrays)
    log = result.log
    out.write_text(json.dumps({
        "variant": args.variant, "seed": args.seed, "epochs": result.epochs, "best_epoch": result.best_epoch,
        "sec_per_epoch": statistics.median([r["seconds"] for r in log]) if log else 0.0,
        "train_seconds": result.seconds, "wall_seconds": wall,
        "peak_rss_mb": read_json(result.folder / "config.json")["peak_rss_mb"],
        "valid_ndcg@10": result.best_valid_ndcg, "protocol": data.protocol, "day": str(day),
        "test": {task: {f"{m}@{k}": v for (m, k), v in res.mean().items()} for task, res in per_task.items()},
        "log": log,
    }))


def popularity(args: argparse.Namespace, tasks: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per-user metrics of ``pop`` on each task's rows (same data, protocol and masking as the runs)."""
    from pipelines.modeling.data import load
    from models.multitask import evaluate_tasks
    from models.registry import method_config
    from models.registry import build
    from pipelines.modeling.train import resolve_day
    from pipelines.core.config import load_config

    cfg = load_config(args.config, warehouse=args.warehouse)
    day = resolve_day(cfg, None)
    protocol = method_config("mmoe", cfg.methods.get("mmoe"), args.set).train.protocol
    data = load(cfg.warehouse, day, protocol)
    pop = build(method_config("pop"), data.n_items)
    pop.prepare(data)
    return {task: {"users": r.users, **{f"{m}@{k}": v for (m, k), v in r.per_user.items()}}
            for task, r in evaluate_tasks(pop, data, tasks).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", required=True)
    ap.add_argument("--config")
    ap.add_argument("--tasks", default="view,cart,fav,buy", help="the behaviors compared (single-task variants)")
    ap.add_argument("--variants", help="run only these (comma-separated: mmoe, single-<task>); default: all")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--set", action="append", default=[], help="extra --set for every run (e.g. train.epochs=30)")
    ap.add_argument("--out", required=True, help="folder of per-run JSON and per-user metrics (reruns skip done runs)")
    ap.add_argument("--report", action="store_true", help="train nothing: print the table of the finished runs")
    ap.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    tasks = args.tasks.split(",")
    everything = ["mmoe", *[f"single-{t}" for t in tasks]]
    chosen = [] if args.report else args.variants.split(",") if args.variants else everything
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    print(f"[bench] results under {outdir}", flush=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    for variant in chosen:
        variant_sets(variant)
        for seed in seeds:
            out = outdir / f"{variant}-{seed}.json"
            if out.is_file():
                continue
            cmd = [sys.executable, __file__, "--worker", "--warehouse", args.warehouse, "--variant", variant,
                   "--seed", str(seed), "--out", str(out), *(["--config", args.config] if args.config else [])]
            for s in args.set:
                cmd += ["--set", s]
            print(f"[bench] {variant} seed {seed}", flush=True)
            subprocess.run(cmd, check=True)
    results: dict[str, list[dict]] = {}
    for variant in everything:
        for seed in seeds:
            out = outdir / f"{variant}-{seed}.json"
            if out.is_file():
                r = json.loads(out.read_text())
                r["per_user"] = dict(np.load(out.with_suffix(".npz")))
                results.setdefault(variant, []).append(r)
    figures = figures_of(results, popularity(args, tasks), tasks, args.set)
    text, above = table(figures), caption(figures)
    print(f"\n{above}\n\n{text}" if above else text)
    if args.record:
        from results import record  # bench/results.py (the script's folder is on the path)

        record(args.record, figures, text)
    summary = {v: [{k: x for k, x in r.items() if k not in ("per_user", "log")} for r in rs] for v, rs in results.items()}
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1))


def figures_of(results: dict[str, list[dict]], pop: dict[str, dict[str, np.ndarray]], tasks: list[str],
               sets: list[str]) -> dict:
    """What ``table`` reads, as JSON: each run's figures with its per-task users and per-user NDCG@10
    (the paired interval), pop's per-user metrics per task, the tasks and the ``--set`` options."""
    runs = {v: [{**{k: x for k, x in r.items() if k not in ("per_user", "log")},
                 "per_user": {k: np.asarray(x).tolist() for k, x in r["per_user"].items()
                              if k.endswith(("/users", "/ndcg@10"))}} for r in rs] for v, rs in results.items()}
    return {"tasks": tasks, "sets": sets, "runs": runs,
            "pop": {t: {k: np.asarray(x).tolist() for k, x in p.items()} for t, p in pop.items()}}


def caption(figures: dict) -> str:
    """The line printed above the table: the split and the ``--set`` options (empty without runs)."""
    any_run = next((rs[0] for rs in figures["runs"].values() if rs), None)
    if not any_run:
        return ""
    return (f"per-task test ({any_run['protocol']} split as of {any_run['day']}; last event of the behavior on "
            f"the held-out day; seen items not masked; --set {' '.join(figures['sets']) or '-'})")


def _per_user(rs: list[dict], task: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Users and their ``key`` averaged over the runs ``rs`` (the rows are the same in every run)."""
    users = np.asarray(rs[0]["per_user"][f"{task}/users"])
    for r in rs[1:]:
        if not np.array_equal(r["per_user"][f"{task}/users"], users):
            raise SystemExit(f"{task}: runs ranked different users; were they trained on different data?")
    return users, np.mean([r["per_user"][f"{task}/{key}"] for r in rs], 0)


def _delta(mmoe: list[dict], single: list[dict], task: str) -> str:
    """Paired ΔNDCG@10 mmoe − single on ``task`` (each user's value averaged over seeds), 95% interval."""
    users, mt = _per_user(mmoe, task, "ndcg@10")
    s_users, st = _per_user(single, task, "ndcg@10")
    if not np.array_equal(users, s_users):
        return "-"
    d = mt - st
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return f"{d.mean():+.4f} [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]"


def table(figures: dict) -> str:
    """The markdown table of the module docstring, from ``figures_of``'s figures."""
    runs = figures["runs"]
    lines = ["| task | model | seeds | users | HR@10 | NDCG@10 | MRR@10 | ΔNDCG@10 mmoe − single (paired, 95% CI) "
             "| s/epoch | epochs | wall s | peak MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task in figures["tasks"]:
        p = figures["pop"].get(task)
        if p is not None:
            cells = [f"{np.mean(p[f'{m}@10']):.4f}" for m in METRICS]
            lines.append(f"| {task} | pop | - | {len(p['users'])} | {' | '.join(cells)} | - | - | - | - | - |")
        single = runs.get(f"single-{task}")
        for variant in (f"single-{task}", "mmoe"):
            rs = [r for r in runs.get(variant, []) if f"{task}/users" in r["per_user"]]
            if not rs:
                continue
            cells = [_ms([r["test"][task][f"{m}@10"] for r in rs]) for m in METRICS]
            delta = _delta(rs, single, task) if variant == "mmoe" and single else "-"
            lines.append(f"| {task} | {variant} | {len(rs)} | {len(rs[0]['per_user'][f'{task}/users'])} "
                         f"| {' | '.join(cells)} | {delta} | {statistics.median(r['sec_per_epoch'] for r in rs):.2f} "
                         f"| {statistics.median(r['epochs'] for r in rs):.0f} "
                         f"| {statistics.median(r['wall_seconds'] for r in rs):.0f} "
                         f"| {max(r['peak_rss_mb'] for r in rs):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
