"""seqrep beside RecBole 1.2.1 on the same ml-100k split: the parts ``bench/peer_recbole.sh`` runs.

- ``export``  (seqrep's venv): the ml-100k sequences of our warehouse as a RecBole atomic file.
  Timestamps are tie-broken: ``ts + position / 1000`` in our (time, event id) order, so RecBole's
  leave-one-out sees exactly our sequences, validation and test targets.
- ``metrics`` (RecBole's venv): our HR/NDCG/MRR@10 against RecBole's metric classes on the same
  random score matrix (with ties broken apart: RecBole's top-k takes an arbitrary order of ties).
- ``recbole`` (RecBole's venv): one RecBole model trained until early stopping or the wall-clock
  budget, validation NDCG@10 after every epoch with its elapsed time, then test metrics.
- ``ours``    (seqrep's venv): the same for one of our methods, through ``seqrep train``'s code.
- ``table``:  best validation and test NDCG@10/HR@10 of each, and the time each needed to reach
  RecBole's best validation NDCG@10. ``table --record NAME`` also writes ``bench/results/NAME.json``
  (``bench/results.py``) with the ``recbole-*.json`` and ``seqrep-*.json`` results it read
  (``figures_of``), from which ``table`` (the function) renders the table again (``bench/check.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DATASET = "ml-100k-seqrep"
#: RecBole's model -> ours.
PAIRS = {"GRU4Rec": "gru4rec", "SASRec": "sasrec", "SRGNN": "srgnn", "LightGCN": "lightgcn"}


def export(args: argparse.Namespace) -> None:
    from pipelines.modeling.data import latest_day, load

    import duckdb

    day = latest_day(Path(args.warehouse))
    data = load(Path(args.warehouse), day, "loo")
    con = duckdb.connect()
    glob = str(Path(args.warehouse).resolve() / "sequences" / "dt=*" / "*.parquet")
    ts = con.execute("SELECT user_idx, list_transform(ts, lambda x: epoch(x)) FROM (SELECT *, row_number() OVER "
                     "(PARTITION BY user_idx ORDER BY dt DESC) AS r FROM read_parquet(?, hive_partitioning = true)) "
                     "WHERE r = 1 ORDER BY user_idx", [glob]).fetchall()
    assert [u for u, _ in ts] == data.users.tolist()
    out = Path(args.out) / DATASET
    out.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for row, (user, times) in enumerate(ts):
        items = data.items[data.offsets[row]:data.offsets[row + 1]]
        assert len(items) == len(times) and len(items) < 1000
        lines += [f"{user}\t{item}\t{t + i / 1000:.3f}" for i, (item, t) in enumerate(zip(items.tolist(), times))]
    (out / f"{DATASET}.inter").write_text("\n".join(lines) + "\n")
    print(f"[export] {len(lines) - 1:,} interactions of {len(ts):,} users as of {day} -> {out}")


def _recbole_shims() -> None:
    """What RecBole 1.2.1 needs on this stack (measured): its own checkpoints are loaded with
    torch.load, which now defaults to weights_only=True; its graph models call
    scipy's dok_matrix._update (gone since scipy 1.12); its NDCG uses np.float (gone since numpy 1.24)."""
    import numpy as np
    import scipy.sparse as sp
    import torch

    _load = torch.load
    torch.load = lambda *a, **k: _load(*a, **{**k, "weights_only": False})
    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = lambda self, d: [self.__setitem__(k, v) for k, v in d.items()]
    if "float" not in np.__dict__:
        np.float = float


def metrics_check(args: argparse.Namespace) -> None:
    _recbole_shims()
    import numpy as np
    import torch
    from recbole.evaluator.metrics import MRR, NDCG, Hit

    from models.metrics import metrics_from_ranks, target_ranks

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(500, 301, generator=g)
    scores[:, 0] = -torch.inf
    targets = torch.randint(1, 301, (500, 1), generator=g)
    ours = {k: v.mean().item() for k, v in metrics_from_ranks(target_ranks(scores, targets), (10,)).items()}
    # RecBole's metrics read a top-k matrix of booleans "is this the positive item".
    topk = scores.topk(10, dim=1).indices
    pos_index = (topk == targets).numpy()
    pos_len = np.ones(len(targets), dtype=int)
    cfg = {"topk": [10], "metric_decimal_place": 6}
    theirs = {("hr", 10): Hit(cfg).metric_info(pos_index).mean(0)[-1],
              ("ndcg", 10): NDCG(cfg).metric_info(pos_index, pos_len).mean(0)[-1],
              ("mrr", 10): MRR(cfg).metric_info(pos_index).mean(0)[-1]}
    worst = max(abs(ours[k] - theirs[k]) for k in theirs)
    for k in theirs:
        print(f"[metrics] {k[0]}@{k[1]}: seqrep {ours[k]:.6f}  RecBole {theirs[k]:.6f}")
    print(f"[metrics] largest difference {worst:.2e} on 500 users x 300 items")
    if worst > 1e-9:
        raise SystemExit("metric mismatch")


def recbole(args: argparse.Namespace) -> None:
    import os

    args.data, args.out = str(Path(args.data).resolve()), str(Path(args.out).resolve())
    os.chdir(args.out)  # RecBole writes log/ and log_tensorboard/ into the working directory
    _recbole_shims()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    params = {
        "data_path": str(Path(args.data)), "dataset": DATASET, "checkpoint_dir": str(Path(args.out) / "saved"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50, "loss_type": "CE", "train_neg_sample_args": None,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Hit", "NDCG", "MRR"], "topk": [10], "valid_metric": "NDCG@10",
        "epochs": 1000, "stopping_step": 10, "show_progress": False, "seed": args.seed, "reproducibility": True,
        "embedding_size": 64, "hidden_size": 128 if args.model == "GRU4Rec" else 64,
    }
    if args.lr:
        params["learning_rate"] = args.lr
    if args.model == "LightGCN":  # a general model: BPR with one uniform negative, our defaults' depth and L2
        params.update({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
                       "n_layers": 3, "reg_weight": 1e-4})
        del params["loss_type"]
    config = Config(model=args.model, config_dict=params)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    log, start = [], time.perf_counter()

    class BudgetSpent(Exception):
        pass

    def after_epoch(epoch: int, valid_score: float) -> None:
        log.append({"epoch": epoch + 1, "valid_ndcg@10": float(valid_score), "elapsed_s": time.perf_counter() - start})
        print(f"[recbole {args.model}] epoch {epoch + 1} valid NDCG@10 {valid_score:.4f} at {log[-1]['elapsed_s']:.0f}s",
              flush=True)
        if time.perf_counter() - start >= args.budget:
            raise BudgetSpent

    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=after_epoch)
    except BudgetSpent:
        print(f"[recbole {args.model}] budget of {args.budget:.0f}s spent", flush=True)
    test = trainer.evaluate(test_data, load_best_model=True, model_file=trainer.saved_model_file, show_progress=False)
    out = {"system": "recbole", "model": args.model, "log": log, "users": len(dataset.field2id_token["user_id"]) - 1,
           "best_valid_ndcg@10": max(r["valid_ndcg@10"] for r in log),
           "test": {k: float(v) for k, v in test.items()}}
    Path(args.out, f"recbole-{args.model}.json").write_text(json.dumps(out, indent=1))
    print(f"[recbole {args.model}] test {out['test']}")


def ours(args: argparse.Namespace) -> None:
    from pipelines.modeling.train import resolve_day, train_method
    from pipelines.core.config import load_config

    cfg = load_config(None, warehouse=args.warehouse)
    day = resolve_day(cfg, None)
    sets = [f"train.time_budget_s={args.budget}", f"train.seed={args.seed}"]
    result, rows = train_method(cfg, args.method, day, sets=sets, echo=lambda m: print(f"[seqrep {args.method}] {m}", flush=True))
    test = {f"{r['metric']}@{r['k']}": r["value"] for r in rows if r["split"] == "test" and r["k"] == 10}
    out = {"system": "seqrep", "model": args.method, "log": result.log, "best_valid_ndcg@10": result.best_valid_ndcg,
           "test": {"ndcg@10": test["ndcg@10"], "hit@10": test["hr@10"], "mrr@10": test["mrr@10"]}}
    Path(args.out, f"seqrep-{args.method}.json").write_text(json.dumps(out, indent=1))


def figures_of(out: Path) -> dict:
    """What ``table`` reads, as JSON: for each pair of ``PAIRS`` with both results in ``out``, RecBole's
    and ours as ``recbole`` and ``ours`` wrote them (with their per-epoch logs)."""
    pairs = []
    for theirs_name, ours_name in PAIRS.items():
        files = [Path(out, f"recbole-{theirs_name}.json"), Path(out, f"seqrep-{ours_name}.json")]
        if all(f.is_file() for f in files):
            pairs.append({"model": theirs_name, "runs": [json.loads(f.read_text()) for f in files]})
    return {"pairs": pairs}


def table(figures: dict) -> str:
    """The markdown table of the module docstring from ``figures_of``'s figures: each run's time is
    the elapsed seconds of its first epoch at or above RecBole's best validation NDCG@10."""
    lines = ["| model | system | best valid NDCG@10 | test NDCG@10 | test HR@10 | epochs | s to RecBole's best valid "
             "| ratio |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for pair in figures["pairs"]:
        rb, sq = pair["runs"]
        target = rb["best_valid_ndcg@10"]
        reach = {}
        for run in (rb, sq):
            hit = [r["elapsed_s"] for r in run["log"] if r["valid_ndcg@10"] >= target]
            reach[run["system"]] = hit[0] if hit else None
        for run in (rb, sq):
            t = reach[run["system"]]
            ratio = ""
            if run["system"] == "seqrep" and t and reach["recbole"]:
                ratio = f"1/{reach['recbole'] / t:.0f}" if t <= reach["recbole"] / 2 else f"{t / reach['recbole']:.2f}x"
            lines.append(f"| {pair['model']} | {run['system']} | {run['best_valid_ndcg@10']:.4f} | "
                         f"{run['test']['ndcg@10']:.4f} | {run['test']['hit@10']:.4f} | {len(run['log'])} | "
                         f"{f'{t:.0f}' if t else 'not reached'} | {ratio} |")
    return "\n".join(lines)


def report(args: argparse.Namespace) -> None:
    """The ``table`` subcommand: print the table of the results under ``--out`` (and ``--record`` them)."""
    figures = figures_of(Path(args.out))
    text = table(figures)
    print(text)
    if args.record:
        from results import record  # bench/results.py (the script's folder is on the path)

        record(args.record, figures, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("export")
    s.add_argument("--warehouse", required=True)
    s.add_argument("--out", required=True)
    sub.add_parser("metrics")
    for cmd, name, choices, source in (("recbole", "--model", list(PAIRS), "--data"),
                                       ("ours", "--method", list(PAIRS.values()), "--warehouse")):
        s = sub.add_parser(cmd)
        s.add_argument(name, required=True, choices=choices)
        s.add_argument(source, required=True)
        s.add_argument("--out", required=True)
        s.add_argument("--budget", type=float, default=1800, help="wall-clock seconds of training")
        s.add_argument("--seed", type=int, default=1)
        if name == "--model":
            s.add_argument("--lr", type=float, help="RecBole's learning_rate (default: RecBole's, 1e-3)")
    s = sub.add_parser("table")
    s.add_argument("--out", required=True)
    s.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    args = ap.parse_args()
    {"export": export, "metrics": metrics_check, "recbole": recbole, "ours": ours, "table": report}[args.cmd](args)


if __name__ == "__main__":
    main()
