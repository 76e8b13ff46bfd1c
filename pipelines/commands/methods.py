"""Method commands: ``methods``, ``train``, ``tune``, ``compare``, ``evaluate``, ``infer``, ``publish``."""

from __future__ import annotations

import argparse
import json
import sys

from pipelines.commands.common import config, names, parse_date
from pipelines.core.config import PAIR_VIEWS
from pipelines.core.errors import UsageError


def register(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("methods", parents=[common], help="list the representation methods and their config files")
    s.set_defaults(func=methods)

    for name, text, func in (("train", "train a method on the sequences as of a day, then evaluate it", train),
                             ("evaluate", "full-ranking HR/NDCG/MRR of trained methods as of a day", evaluate)):
        s = sub.add_parser(name, parents=[common], help=text)
        s.add_argument("--method", required=True,
                       help="a name from `seqrep methods`" + ("" if name == "train" else "; several: pop,markov,sasrec"))
        s.add_argument("--date", type=parse_date, help="data as of this day (default: the last day with sequences)")
        _sets(s, "override a method setting, e.g. --set model.dim=128 --set train.seed=1 (repeatable)")
        s.add_argument("--json", action="store_true", help="print the metrics rows as JSON")
        s.set_defaults(func=func)
        if name == "train":
            s.add_argument("--resume", action="store_true", help="continue an interrupted run of this configuration")
            s.add_argument("--nproc", type=int, default=1, metavar="N",
                           help="data-parallel training in N processes (torchrun; gloo on CPU, NCCL with one GPU each)")
            s.add_argument("--incremental", action="store_true",
                           help="the nightly policy: warm start from the last published version, or a full "
                                "retrain when due (nightly.* of the config); no metrics (run evaluate)")
            s.add_argument("--pair", help="train on a cross-domain pair of the config (cross_domain.pairs) instead "
                                          "(or name a pair run: --method METHOD.PAIR)")
            s.add_argument("--view", choices=PAIR_VIEWS,
                           help="with --pair: the target's events, the source's, or both domains' (default: the "
                                "method's own: target, mixed for the cross-domain methods)")

    _register_studies(sub, common)

    s = sub.add_parser("infer", parents=[common],
                       help="write user and item embedding tables of trained methods as of a day (then: publish)")
    s.add_argument("--method", required=True, help="a learned method from `seqrep methods`; several: sasrec,gru4rec")
    s.add_argument("--date", type=parse_date, help="embeddings as of this day (default: the last day with sequences)")
    _sets(s, "the configuration the model was trained with (as given to `seqrep train`)")
    s.add_argument("--version", help="a model version (folder under models/<method>/) trained on or before --date; "
                                     "users with newer events are folded in")
    s.set_defaults(func=infer)

    s = sub.add_parser("publish", parents=[common],
                       help="build the item index of a day's embedding tables and make them the live version")
    s.add_argument("--method", required=True, help="a learned method; several: sasrec,gru4rec")
    s.add_argument("--date", type=parse_date, help="the day of the tables (default: the last day with sequences)")
    s.add_argument("--version", help="the model version whose tables go live (default: the config's for the day; "
                                     "another one after `seqrep infer --version`)")
    s.set_defaults(func=publish)


def _register_studies(sub, common: argparse.ArgumentParser) -> None:
    """``tune`` and ``compare``: several trainings of methods on one day's data."""
    s = sub.add_parser("tune", parents=[common],
                       help="search a method's settings with Optuna on the validation split; writes a config file")
    s.add_argument("--method", required=True, help="a learned method with a search space (`search:` in its YAML)")
    s.add_argument("--date", type=parse_date, help="data as of this day (default: the last day with sequences)")
    s.add_argument("--trials", type=int, default=20, help="finished trials the study should hold (default 20; "
                                                          "a rerun continues the same study up to this number)")
    s.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    s.add_argument("--study", help="the study's name (default: METHOD-PROTOCOL-DAY, or METHOD-PAIR-VIEW-DAY)")
    s.add_argument("--space", help="a YAML file with a `search:` mapping (default: the method's own)")
    s.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0)")
    s.add_argument("--prune-after", type=int, default=10, metavar="EPOCHS",
                   help="judge a trial against the earlier ones from this epoch on (default 10)")
    s.add_argument("--pair", help="tune on a cross-domain pair's view (cross_domain.pairs of the config)")
    s.add_argument("--view", choices=PAIR_VIEWS, help="with --pair: which view (default: the method's own)")
    _sets(s, "fix a setting for every trial, e.g. --set train.epochs=30 (repeatable)")
    s.set_defaults(func=tune)

    s = sub.add_parser("compare", parents=[common],
                       help="train what is missing and compare methods over seeds, paired on users, with intervals")
    s.add_argument("--methods", required=True, help="methods to compare, e.g. pop,markov,sasrec,gru4rec")
    s.add_argument("--seeds", default="1,2,3", help="seeds of the learned methods (default 1,2,3)")
    s.add_argument("--base", help="the method the others are compared with, paired on users (default: the first)")
    s.add_argument("--protocol", choices=("loo", "temporal"), default="loo", help="evaluation protocol (default loo)")
    s.add_argument("--date", type=parse_date, help="data as of this day (default: the last day with sequences)")
    s.add_argument("--name", default="default", help="the comparison's name: comparisons/name=NAME/dt=DAY/")
    _sets(s, "a setting for every learned method, e.g. --set train.epochs=30 (repeatable)")
    s.set_defaults(func=compare)


def _sets(s: argparse.ArgumentParser, text: str) -> None:
    s.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE", help=text)


def methods(args: argparse.Namespace) -> None:
    from models.registry import METHODS, config_file

    width = max(map(len, METHODS))
    for name, cls in METHODS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        path = config_file(name)
        where = f"models/configs/{path.name}" if path is not None else "class defaults"
        print(f"{name:<{width}} {cls.family:<12} {doc}  [{where}]")


def _print_metrics(rows: list[dict], as_json: bool) -> None:
    from pipelines.modeling.metrics import format_table

    if as_json:
        print(json.dumps(rows, default=str, indent=1))
        return
    for split in ("valid", "test", "cold_valid", "cold_test"):
        part = [r for r in rows if r["split"] == split]
        if part:
            print(f"\n{split} ({part[0]['protocol']}, full ranking, {part[0]['users']:,} users, as of {part[0]['dt']})")
            print(format_table(part))


def _torchrun(args: argparse.Namespace) -> None:
    """``seqrep train --nproc N``: the same command under ``torchrun`` in N processes
    (``models/distributed.py``); its exit code is this one's."""
    import os
    import subprocess

    if args.nproc < 1:
        raise UsageError(f"--nproc {args.nproc}: at least 1")
    if args.resume or args.incremental:
        raise UsageError("--nproc trains one version from scratch: no --resume or --incremental")
    argv, skip = [], False
    for a in args.argv:
        if skip or a == "--nproc" or a.startswith("--nproc="):
            skip = a == "--nproc"
            continue
        argv.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "pipelines.cli", *argv]
    code = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode
    if code:
        raise SystemExit(code)


def train(args: argparse.Namespace) -> None:
    import os

    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        return _torchrun(args)
    from pipelines.modeling.train import resolve_day, train_method

    from models import distributed

    cfg = config(args)
    day = resolve_day(cfg, args.date)
    echo = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else print
    if not distributed.is_main():  # a replica of a --nproc run: rank 0 speaks
        echo = lambda _: None  # noqa: E731
    if args.pair and args.incremental:
        raise UsageError("--pair trains one version as of a day: no --incremental")
    if args.incremental:
        from pipelines.nightly import steps

        if args.sets or args.resume:
            raise UsageError("--incremental trains the config's methods as they are: no --set or --resume")
        steps.train(cfg, args.method, day, echo=echo)
        return
    from pipelines.modeling.pair_runs import PairRun, find_pair, parse_run

    if args.view and not args.pair:
        raise UsageError("--view goes with --pair")
    run = parse_run(cfg, args.method)
    if args.pair:
        from models.registry import get_method

        run = PairRun(find_pair(cfg, args.pair).name, args.method, args.view or get_method(args.method).pair_view)
    if run is not None:  # --pair, or a pair run's published name (METHOD.PAIR)
        from pipelines.modeling.cross_domain import train_on_pair

        result, rows = train_on_pair(cfg, run.method, day, run.pair, run.view, sets=args.sets, resume=args.resume,
                                     echo=echo)
    else:
        result, rows = train_method(cfg, args.method, day, sets=args.sets, resume=args.resume, echo=echo)
    echo(f"trained {args.method} in {result.seconds:.1f}s, {result.epochs} epoch(s), best at {result.best_epoch}: "
         f"{result.folder}")
    if distributed.is_main():
        _print_metrics(rows, args.json)


def tune(args: argparse.Namespace) -> None:
    from pathlib import Path

    from pipelines.commands.common import config_file
    from pipelines.modeling.train import resolve_day
    from pipelines.modeling.tune import tune as run

    if args.trials < 1:
        raise UsageError(f"--trials {args.trials}: at least 1")
    if args.view and not args.pair:
        raise UsageError("--view goes with --pair")
    cfg = config(args)
    path = config_file(args)
    run(cfg, args.method, resolve_day(cfg, args.date), trials=args.trials, timeout=args.timeout, study=args.study,
        space_file=Path(args.space) if args.space else None, sets=args.sets, seed=args.seed, pair=args.pair,
        view=args.view, config_path=Path(path) if path else None, prune_after=args.prune_after)


def compare(args: argparse.Namespace) -> None:
    from pipelines.modeling.compare import compare as run
    from pipelines.modeling.train import resolve_day

    try:
        seeds = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        raise UsageError(f"--seeds {args.seeds}: comma-separated integers, e.g. 1,2,3") from None
    cfg = config(args)
    run(cfg, names(args.methods), seeds, resolve_day(cfg, args.date), protocol=args.protocol,
        base=args.base, sets=args.sets, name=args.name)


def evaluate(args: argparse.Namespace) -> None:
    from pipelines.modeling.train import evaluate_methods, resolve_day

    from pipelines.modeling.cross_domain import evaluate_run
    from pipelines.modeling.pair_runs import parse_run

    cfg = config(args)
    day = resolve_day(cfg, args.date)
    methods = names(args.method)
    runs = [m for m in methods if parse_run(cfg, m) is not None]  # pair runs (METHOD.PAIR): their pair's data
    rows = evaluate_methods(cfg, [m for m in methods if m not in runs], day, sets=args.sets)
    for name in runs:
        rows += evaluate_run(cfg, name, day, args.sets)
    _print_metrics(rows, args.json)


def infer(args: argparse.Namespace) -> None:
    from pipelines.modeling.infer import infer as write_tables
    from pipelines.modeling.train import resolve_day

    cfg = config(args)
    day = resolve_day(cfg, args.date)
    for name in names(args.method):
        write_tables(cfg, name, day, sets=args.sets, version=args.version)


def publish(args: argparse.Namespace) -> None:
    from pipelines.modeling.train import resolve_day
    from pipelines.nightly import steps

    cfg = config(args)
    day = resolve_day(cfg, args.date)
    for name in names(args.method):
        steps.publish(cfg, name, day, args.version)
