"""Data commands: ``ingest``, ``etl``, ``validate``, ``generate``, ``summary``, ``doctor``,
``spark-server``, ``spark-cluster``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipelines.commands.common import config, days, parse_date
from pipelines.core.errors import UsageError
from pipelines.core.warehouse import Warehouse, daterange

STAGES_DEFAULT = "clean,sessionize,sequences,graphs"


def register(sub, common: argparse.ArgumentParser) -> None:
    from pipelines.etl.adapters import ADAPTERS

    s = sub.add_parser("ingest", parents=[common], help="read a source's files into raw/events/source=S/dt=D")
    s.add_argument("--source", choices=sorted(ADAPTERS), help="adapter (default: ingest.source of the config)")
    s.add_argument("--input", help="file or folder; {date} is replaced by --date (default: ingest.input)")
    s.add_argument("--domain", help="domain of the events (default: the adapter's)")
    s.add_argument("--name", help="partition label under raw/events/source= (default: the adapter name)")
    s.add_argument("--date", type=parse_date, help="the input is one day's log: all rows go to that day's partition")
    s.set_defaults(func=ingest)

    s = sub.add_parser("etl", parents=[common], help="clean, sessionize, sequences and graphs for a day or a range")
    _days(s, allow_all=True)
    s.add_argument("--stages", default=None,
                   help=f"comma-separated subset, in order (default: {STAGES_DEFAULT}, then cross_domain "
                        "when cross_domain.pairs is set)")
    s.add_argument("--no-gates", action="store_true", help="skip the quality gates (the DAG runs them as tasks)")
    s.set_defaults(func=etl)

    s = sub.add_parser("validate", parents=[common], help="run a quality gate by hand and print its summary")
    s.add_argument("--stage", required=True,
                   help="raw, clean, sessions (or sessionize), sequences, graphs (several: sessions,sequences,graphs); "
                        "regression or embeddings (with --method)")
    s.add_argument("--method", help="the method of a regression or embeddings gate")
    s.add_argument("--version", help="the model version of an embeddings gate (default: the config's for the day)")
    _days(s, allow_all=False)
    s.set_defaults(func=validate)

    s = sub.add_parser("generate", parents=[common], help="write synthetic raw logs (Parquet, one folder per day)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--start", type=parse_date, help="first day (default: synthetic.start_date)")
    for flag in ("--days", "--events-per-day", "--users", "--items-per-domain", "--seed"):
        s.add_argument(flag, type=int)
    s.set_defaults(func=generate)

    s = sub.add_parser("summary", parents=[common], help="rows per stage, quarantine reasons, sessions, users, items, edges")
    s.add_argument("--from", dest="start", type=parse_date)
    s.add_argument("--to", dest="end", type=parse_date)
    s.set_defaults(func=summary)

    s = sub.add_parser("doctor", parents=[common],
                       help="check a warehouse (interrupted runs, leftovers, manifests, publish records) and say what to run")
    s.add_argument("--repair", action="store_true",
                   help="finish or roll back interrupted runs and remove leftovers of dead processes")
    s.set_defaults(func=doctor)

    s = sub.add_parser("spark-server", parents=[common],
                       help="start, stop or check a Spark Connect server that Spark commands use as clients")
    s.add_argument("action", choices=["start", "stop", "status"])
    s.add_argument("--port", type=int, default=15002)
    s.set_defaults(func=spark_server)

    s = sub.add_parser("spark-cluster", parents=[common],
                       help="start, stop or check a Spark standalone cluster (master and workers) on this machine")
    s.add_argument("action", choices=["start", "stop", "status"])
    s.add_argument("--port", type=int, default=7077, help="the master's port (default 7077)")
    s.add_argument("--workers", type=int, default=2, help="workers to start (default 2)")
    s.add_argument("--worker-cores", type=int, default=1, help="cores of each worker (default 1)")
    s.add_argument("--worker-memory", default="2g", help="memory of each worker's executors (default 2g)")
    s.set_defaults(func=spark_cluster)


def _days(s: argparse.ArgumentParser, *, allow_all: bool) -> None:
    when = s.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", type=parse_date)
    when.add_argument("--from", dest="start", type=parse_date, help="first day of a range (with --to)")
    if allow_all:
        when.add_argument("--all", action="store_true", help="every day that has raw events (days without any are skipped)")
    s.add_argument("--to", dest="end", type=parse_date, help="last day of the range (inclusive)")


def ingest(args: argparse.Namespace) -> None:
    from pipelines.core.locks import ensure_free
    from pipelines.etl import ingest as stage
    from pipelines.etl.spark import get_spark

    cfg = config(args)
    ensure_free(Warehouse(cfg.warehouse).root, "etl")  # refused before Spark starts, not after
    spark = get_spark(cfg.spark)
    t0 = time.perf_counter()
    m = stage.run(spark, cfg, source=args.source, input_path=args.input, day=args.date, domain=args.domain, name=args.name)
    found = sorted(m["days"])
    print(f"ingested {m['rows_in']:,} rows from {m['input']} as source={m['name']} in {time.perf_counter() - t0:.1f}s: "
          f"{m['rows_out']:,} events over {len(found)} day(s) ({found[0] if found else '-'} .. {found[-1] if found else '-'}), "
          f"{m['rows_quarantined']:,} without a usable time, {m['items']:,} items")
    if m["skipped_files"]:
        print(f"{len(m['skipped_files'])} file(s) under the input were not read (listed in the ingest manifest), "
              f"e.g. {m['skipped_files'][0]['path']}: {m['skipped_files'][0]['reason']}", file=sys.stderr)


def etl(args: argparse.Namespace) -> None:
    from pipelines.core.locks import ensure_free
    from pipelines.etl.spark import get_spark
    from pipelines.etl.stages import STAGES, configured
    from pipelines.etl.summary import print_summary
    from pipelines.nightly import etl as run

    cfg = config(args)
    stages = configured(cfg) if args.stages is None else [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UsageError(f"unknown stage(s) {unknown}; choose from {list(STAGES)}")
    if "cross_domain" in stages and not cfg.cross_domain.pairs:
        raise UsageError("stage cross_domain: the configuration has no cross_domain.pairs (README: Cross-domain datasets)")
    todo = days(args, Warehouse(cfg.warehouse))
    ensure_free(Warehouse(cfg.warehouse).root, "etl")  # refused before Spark starts, not after
    spark = get_spark(cfg.spark)
    print(f"etl {todo[0]} .. {todo[-1]} ({len(todo)} day(s)) in {Path(cfg.warehouse).resolve()}")
    run.run(spark, cfg, todo, stages, gates=False if args.no_gates else None,
            progress=lambda name, sec: print(f"  {name:<15} {sec:7.1f}s", flush=True))
    if set(stages) >= set(STAGES_DEFAULT.split(",")):
        print_summary(cfg, todo)


def validate(args: argparse.Namespace) -> None:
    from pipelines.gates.registry import AFTER_STAGE, GATES, run_gate

    cfg = config(args)
    todo = days(args, Warehouse(cfg.warehouse))
    if args.stage in ("regression", "embeddings"):
        _validate_method(cfg, args, todo)
        return
    gates = [AFTER_STAGE.get(g.strip(), g.strip()) for g in args.stage.split(",") if g.strip()]
    unknown = [g for g in gates if g not in GATES]
    if unknown:
        raise UsageError(f"unknown stage(s) {unknown}; choose from {[*GATES, 'regression', 'embeddings']}")
    from pipelines.etl.spark import get_spark

    spark = get_spark(cfg.spark)
    for gate in gates:
        print(run_gate(spark, cfg, gate, todo).summary())


def _validate_method(cfg, args: argparse.Namespace, todo: list) -> None:
    from pipelines.nightly import steps

    if not args.method or len(todo) != 1:
        raise UsageError(f"--stage {args.stage} needs --method and one --date")
    if args.stage == "embeddings":
        steps.validate_embeddings(cfg, args.method, todo[0], args.version)
        return
    result = steps.regression_gate(cfg, args.method, todo[0])
    print(f"gate regression {todo[0]} {args.method}: PASSED — test NDCG@10 {result['test_ndcg@10']:.4f}"
          + (f" >= floor {result['floor']:.4f}" if result["floor"] is not None else " (nothing published before)"))


def generate(args: argparse.Namespace) -> None:
    from pipelines.etl.synthetic_logs import write_logs

    cfg = config(args)
    over = {k: v for k, v in {"start_date": args.start, "days": args.days, "events_per_day": args.events_per_day,
                              "users": args.users, "items_per_domain": args.items_per_domain,
                              "seed": args.seed}.items() if v is not None}
    files = write_logs(cfg.synthetic.model_copy(update=over), args.out)
    print(f"wrote {len(files)} day(s) of logs to {args.out} ({files[0].parent.name} .. {files[-1].parent.name})")


def summary(args: argparse.Namespace) -> None:
    from pipelines.core import warehouse as layout
    from pipelines.etl.summary import print_summary

    cfg = config(args)
    wh = Warehouse(cfg.warehouse)
    have = wh.partition_dates(layout.CLEAN_EVENTS)
    if not have:
        raise UsageError(f"no clean events in {wh.root}; run `seqrep etl` first")
    print_summary(cfg, daterange(args.start or have[0], args.end or have[-1]))


def doctor(args: argparse.Namespace) -> None:
    from pipelines.core.errors import WarehouseError
    from pipelines.nightly.doctor import examine

    cfg = config(args)
    found = examine(Warehouse(cfg.warehouse).root, repair=args.repair)
    for f in found:
        print(f.line())
    problems = [f for f in found if f.problem]
    if problems:
        raise WarehouseError(f"{len(problems)} problem(s) in {Path(cfg.warehouse).resolve()} (above)")
    print(f"{Path(cfg.warehouse).resolve()}: no problem found")


def spark_cluster(args: argparse.Namespace) -> None:
    """A master and workers of the installed pyspark on loopback; Spark commands use it through
    ``SEQREP_SPARK_MASTER`` (``pipelines/etl/spark_cluster.py``)."""
    from pipelines.etl import spark_cluster as cluster

    if args.action == "start":
        if args.workers < 1 or args.worker_cores < 1:
            raise UsageError("--workers and --worker-cores: at least 1")
        t0 = time.monotonic()
        found, started = cluster.start(args.port, args.workers, args.worker_cores, args.worker_memory)
        print(f"{'started' if started else 'already running'}: Spark cluster {found.url} "
              f"({len(found.workers())} worker(s), UI http://127.0.0.1:{found.ui_port}"
              f"{f', {time.monotonic() - t0:.1f} s' if started else ''}; logs {cluster.state_dir(args.port)})")
        print(f"run Spark commands on it with: export SEQREP_SPARK_MASTER={found.url}")
    elif args.action == "stop":
        print(f"stopped the Spark cluster on port {args.port}" if cluster.stop(args.port)
              else f"no Spark cluster started by seqrep on port {args.port}")
    else:
        found = cluster.running(args.port)
        if found is None:
            raise UsageError(f"no Spark cluster started by seqrep on port {args.port}; "
                             f"`seqrep spark-cluster start --port {args.port}`")
        alive = sum(w.get("state") == "ALIVE" for w in found.workers())
        print(f"running: Spark cluster {found.url}, {alive} worker(s) alive (pids {found.pids}; "
              f"UI http://127.0.0.1:{found.ui_port})")


def spark_server(args: argparse.Namespace) -> None:
    """One driver JVM for every later Spark command: each finds it through ``SPARK_REMOTE``
    (``spark.master``, ``spark.driver_memory`` and ``spark.conf`` of the config are the server's)."""
    from pipelines.etl import spark_server as server

    where = server.url(args.port)
    if args.action == "start":
        t0 = time.monotonic()
        pid, started = server.start(config(args).spark, args.port)
        print(f"{'started' if started else 'already running'}: Spark Connect server {where} (pid {pid}"
              f"{f', {time.monotonic() - t0:.1f} s' if started else ''}; log {server.log_file(args.port)})")
        print(f"make Spark commands its clients with: export SPARK_REMOTE={where}")
    elif args.action == "stop":
        print(f"stopped the Spark Connect server {where}" if server.stop(args.port)
              else f"no Spark Connect server started by seqrep on port {args.port}")
    else:
        pid = server.running_pid(args.port)
        if pid is None:
            raise UsageError(f"no Spark Connect server started by seqrep on port {args.port}; "
                             f"`seqrep spark-server start --port {args.port}`")
        print(f"running: Spark Connect server {where} (pid {pid}; log {server.log_file(args.port)})")
