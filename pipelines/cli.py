"""The ``seqrep`` command line (DESIGN.md, "Command line")."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from pipelines.config import Config, load_config
from pipelines.warehouse import Warehouse, daterange


class UsageError(ValueError):
    pass


def _date(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s!r}") from None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--warehouse", help="warehouse folder (env SEQREP_WAREHOUSE; default ./warehouse)")
    common.add_argument("--config", help="YAML config file (env SEQREP_CONFIG)")

    p = argparse.ArgumentParser(prog="seqrep", description=__doc__, parents=[common])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from pipelines.ingest import ADAPTERS

    s = sub.add_parser("ingest", parents=[common], help="read a source's files into raw/events/source=S/dt=D")
    s.add_argument("--source", choices=sorted(ADAPTERS), help="adapter (default: ingest.source of the config)")
    s.add_argument("--input", help="file or folder; {date} is replaced by --date (default: ingest.input)")
    s.add_argument("--domain", help="domain of the events (default: the adapter's)")
    s.add_argument("--name", help="partition label under raw/events/source= (default: the adapter name)")
    s.add_argument("--date", type=_date, help="the input is one day's log: all rows go to that day's partition")

    s = sub.add_parser("etl", parents=[common], help="clean, sessionize, sequences and graphs for a day or a range")
    when = s.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", type=_date)
    when.add_argument("--from", dest="start", type=_date, help="first day of a range (with --to)")
    when.add_argument("--all", action="store_true", help="every day that has raw events (days without any are skipped)")
    s.add_argument("--to", dest="end", type=_date, help="last day of the range (inclusive)")
    s.add_argument("--stages", default="clean,sessionize,sequences,graphs",
                   help="comma-separated subset, in order (default: all)")
    s.add_argument("--no-gates", action="store_true", help="skip the quality gates (the DAG runs them as tasks)")

    s = sub.add_parser("validate", parents=[common], help="run a quality gate by hand and print its summary")
    s.add_argument("--stage", required=True,
                   help="raw, clean, sessions (or sessionize), sequences, graphs (several: sessions,sequences,graphs); "
                        "regression or embeddings (with --method)")
    s.add_argument("--method", help="the method of a regression or embeddings gate")
    when = s.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", type=_date)
    when.add_argument("--from", dest="start", type=_date, help="first day of a range (with --to)")
    s.add_argument("--to", dest="end", type=_date)

    s = sub.add_parser("generate", parents=[common], help="write synthetic raw logs (Parquet, one folder per day)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--start", type=_date, help="first day (default: synthetic.start_date)")
    s.add_argument("--days", type=int)
    s.add_argument("--events-per-day", type=int)
    s.add_argument("--users", type=int)
    s.add_argument("--items-per-domain", type=int)
    s.add_argument("--seed", type=int)

    s = sub.add_parser("summary", parents=[common], help="rows per stage, quarantine reasons, sessions, users, items, edges")
    s.add_argument("--from", dest="start", type=_date)
    s.add_argument("--to", dest="end", type=_date)

    sub.add_parser("demo", parents=[common], help="generate logs and run the nightly DAG on them (Airflow, Spark)")

    sub.add_parser("methods", parents=[common], help="list the representation methods and their config files")

    for name, text in (("train", "train a method on the sequences as of a day, then evaluate it"),
                       ("evaluate", "full-ranking HR/NDCG/MRR of trained methods as of a day")):
        s = sub.add_parser(name, parents=[common], help=text)
        s.add_argument("--method", required=True,
                       help="a name from `seqrep methods`" + ("" if name == "train" else "; several: pop,markov,sasrec"))
        s.add_argument("--date", type=_date, help="data as of this day (default: the last day with sequences)")
        s.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a method setting, e.g. --set model.dim=128 --set train.seed=1 (repeatable)")
        s.add_argument("--json", action="store_true", help="print the metrics rows as JSON")
        if name == "train":
            s.add_argument("--resume", action="store_true", help="continue an interrupted run of this configuration")
            s.add_argument("--incremental", action="store_true",
                           help="the nightly policy: warm start from the last published version, or a full "
                                "retrain when due (nightly.* of the config); no metrics (run evaluate)")
    s = sub.add_parser("infer", parents=[common],
                       help="write user and item embedding tables of trained methods as of a day (then: publish)")
    s.add_argument("--method", required=True, help="a learned method from `seqrep methods`; several: sasrec,gru4rec")
    s.add_argument("--date", type=_date, help="embeddings as of this day (default: the last day with sequences)")
    s.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="the configuration the model was trained with (as given to `seqrep train`)")
    s.add_argument("--version", help="a model version (folder under models/<method>/) trained on or before --date; "
                                     "users with newer events are folded in")

    s = sub.add_parser("publish", parents=[common],
                       help="build the item index of a day's embedding tables and make them the live version")
    s.add_argument("--method", required=True, help="a learned method; several: sasrec,gru4rec")
    s.add_argument("--date", type=_date, help="the day of the tables (default: the last day with sequences)")

    s = sub.add_parser("report", parents=[common], help="write a day's run report (HTML and PNGs) and print its path")
    s.add_argument("--date", type=_date, required=True)

    s = sub.add_parser("backfill", parents=[common],
                       help="the nightly run of each day of a range, in order, without a scheduler")
    s.add_argument("--from", dest="start", type=_date, required=True, help="first day (inclusive)")
    s.add_argument("--to", dest="end", type=_date, required=True, help="last day (inclusive)")
    s.add_argument("--method", help="only these methods (comma-separated), on the ETL's existing partitions; "
                                    "default: ingest, ETL and every method of nightly.methods")

    q = sub.add_parser("query", parents=[common], help="SQL and nearest-neighbour queries on the embedding tables")
    qsub = q.add_subparsers(dest="query", required=True, metavar="QUERY")
    s = qsub.add_parser("sql", parents=[common], help="one read-only SELECT over the views of sql/views.sql")
    s.add_argument("text", metavar="SQL")
    s.add_argument("--limit", type=int, default=50, help="rows printed in table output (default 50; --json prints all)")
    s.add_argument("--json", action="store_true")
    for name, arg, text in (("user", "USER_ID", "a user's vector and metadata"),
                            ("similar-items", "ITEM_ID", "items nearest an item (inner product)"),
                            ("similar-users", "USER_ID", "users nearest a user (inner product)"),
                            ("recommend", "USER_ID", "top items for a user, seen items excluded")):
        s = qsub.add_parser(name, parents=[common], help=text)
        s.add_argument("id", metavar=arg)
        s.add_argument("--method", required=True)
        s.add_argument("--date", type=_date, help="as of this day (default: the newest day with embeddings of the method)")
        s.add_argument("--json", action="store_true")
        if name != "user":
            s.add_argument("--k", type=int, default=10)
        if name == "similar-items":
            s.add_argument("--domain", help="the item's domain, when its id exists in several")
    return p


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config or os.environ.get("SEQREP_CONFIG") or None, warehouse=args.warehouse)


def _days(args: argparse.Namespace, wh: Warehouse) -> list[date]:
    if getattr(args, "all", False):
        # Only the days that have raw events: a day without events changes nothing downstream.
        days = sorted({d for p in wh.table("raw/events").glob("source=*") for d in wh.partition_dates(str(p.relative_to(wh.root)))})
        if not days:
            raise UsageError(f"no raw events in {wh.root}; run `seqrep ingest` first")
        return days
    if args.date:
        return [args.date]
    if args.end is None:
        raise UsageError("--from needs --to")
    return daterange(args.start, args.end)


def cmd_ingest(args: argparse.Namespace) -> None:
    from pipelines import ingest
    from pipelines.spark import get_spark

    cfg = _config(args)
    spark = get_spark(cfg.spark)
    t0 = time.perf_counter()
    m = ingest.run(spark, cfg, source=args.source, input_path=args.input, day=args.date, domain=args.domain, name=args.name)
    days = sorted(m["days"])
    print(f"ingested {m['rows_in']:,} rows from {m['input']} as source={m['name']} in {time.perf_counter() - t0:.1f}s: "
          f"{m['rows_out']:,} events over {len(days)} day(s) ({days[0] if days else '-'} .. {days[-1] if days else '-'}), "
          f"{m['rows_quarantined']:,} without a usable time, {m['items']:,} items")


def cmd_etl(args: argparse.Namespace) -> None:
    from pipelines import etl
    from pipelines.spark import get_spark

    cfg = _config(args)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in etl.STAGES]
    if unknown:
        raise UsageError(f"unknown stage(s) {unknown}; choose from {list(etl.STAGES)}")
    days = _days(args, Warehouse(cfg.warehouse))
    spark = get_spark(cfg.spark)
    print(f"etl {days[0]} .. {days[-1]} ({len(days)} day(s)) in {Path(cfg.warehouse).resolve()}")
    etl.run(spark, cfg, days, stages, gates=False if args.no_gates else None,
            progress=lambda name, sec: print(f"  {name:<15} {sec:7.1f}s", flush=True))
    if set(stages) == set(etl.STAGES):
        print_summary(cfg, days)


def cmd_validate(args: argparse.Namespace) -> None:
    from pipelines.gates import AFTER_STAGE, GATES, run_gate

    cfg = _config(args)
    days = _days(args, Warehouse(cfg.warehouse))
    if args.stage in ("regression", "embeddings"):
        from pipelines import nightly

        if not args.method or len(days) != 1:
            raise UsageError(f"--stage {args.stage} needs --method and one --date")
        if args.stage == "regression":
            result = nightly.regression_gate(cfg, args.method, days[0])
            print(f"gate regression {days[0]} {args.method}: PASSED — test NDCG@10 {result['test_ndcg@10']:.4f}"
                  + (f" >= floor {result['floor']:.4f}" if result["floor"] is not None else " (nothing published before)"))
        else:
            nightly.validate_embeddings(cfg, args.method, days[0])
        return
    gates = [AFTER_STAGE.get(g.strip(), g.strip()) for g in args.stage.split(",") if g.strip()]
    unknown = [g for g in gates if g not in GATES]
    if unknown:
        raise UsageError(f"unknown stage(s) {unknown}; choose from {[*GATES, 'regression', 'embeddings']}")
    from pipelines.spark import get_spark

    spark = get_spark(cfg.spark)
    for gate in gates:
        print(run_gate(spark, cfg, gate, days).summary())


def cmd_generate(args: argparse.Namespace) -> None:
    from pipelines.synthetic import write_logs

    cfg = _config(args)
    over = {k: v for k, v in {"start_date": args.start, "days": args.days, "events_per_day": args.events_per_day,
                              "users": args.users, "items_per_domain": args.items_per_domain,
                              "seed": args.seed}.items() if v is not None}
    syn = cfg.synthetic.model_copy(update=over)
    files = write_logs(syn, args.out)
    print(f"wrote {len(files)} day(s) of logs to {args.out} ({files[0].parent.name} .. {files[-1].parent.name})")


def summary_rows(cfg: Config, days: list[date]) -> dict[str, Any]:
    """Totals over ``days`` read from the stage manifests."""
    wh = Warehouse(cfg.warehouse)
    tot: dict[str, Any] = {"days": len(days), "raw": 0, "clean": 0, "quarantined": 0, "reasons": {}, "sessions": 0,
                           "transitions": 0, "user_item": 0, "missing": []}
    for d in days:
        key = f"dt={d.isoformat()}"
        c, s, g = (wh.read_manifest(st, key) for st in ("clean", "sessionize", "graphs"))
        if c is None:
            tot["missing"].append(str(d))
            continue
        tot["raw"] += c["rows_in"]
        tot["clean"] += c["rows_out"]
        tot["quarantined"] += c["rows_quarantined"]
        for r, n in c["quarantine_by_reason"].items():
            tot["reasons"][r] = tot["reasons"].get(r, 0) + n
        tot["sessions"] += (s or {}).get("sessions", 0)
        tot["transitions"] += (g or {}).get("edges", {}).get("item_transitions", 0)
        tot["user_item"] += (g or {}).get("edges", {}).get("user_item", 0)
    for name in ("users", "items"):
        parts = [d for d in wh.partition_dates(f"vocab/{name}") if d <= days[-1]]
        tot[name] = sum((wh.read_manifest("sequences", f"dt={d.isoformat()}") or {}).get(f"new_{name}", 0) for d in parts)
    return tot


def print_summary(cfg: Config, days: list[date]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = summary_rows(cfg, days)
    table = Table(title=f"seqrep warehouse {Path(cfg.warehouse).resolve()}  {days[0]} .. {days[-1]}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("raw events", f"{t['raw']:,}")
    table.add_row("clean events", f"{t['clean']:,}")
    table.add_row("quarantined", f"{t['quarantined']:,}")
    for r, n in sorted(t["reasons"].items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {r}", f"{n:,}")
    table.add_row("sessions (per day, summed)", f"{t['sessions']:,}")
    table.add_row("users (vocabulary)", f"{t['users']:,}")
    table.add_row("items (vocabulary)", f"{t['items']:,}")
    table.add_row("item-transition edges (daily, summed)", f"{t['transitions']:,}")
    table.add_row("user-item edges (daily, summed)", f"{t['user_item']:,}")
    Console().print(table)
    if t["missing"]:
        print(f"no clean partition for {len(t['missing'])} day(s): {', '.join(t['missing'][:5])}")


def cmd_summary(args: argparse.Namespace) -> None:
    cfg = _config(args)
    wh = Warehouse(cfg.warehouse)
    have = wh.partition_dates("clean/events")
    if not have:
        raise UsageError(f"no clean events in {wh.root}; run `seqrep etl` first")
    print_summary(cfg, daterange(args.start or have[0], args.end or have[-1]))


def cmd_demo(args: argparse.Namespace) -> None:
    from pipelines.demo import run_demo

    run_demo(_config(args))


def cmd_methods(args: argparse.Namespace) -> None:
    from models.registry import CONFIG_DIR, FAMILIES, METHODS

    width = max(map(len, METHODS))
    for name, cls in METHODS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:<{width}} {FAMILIES[name]:<12} {doc}  [{(CONFIG_DIR / (name + '.yaml')).relative_to(CONFIG_DIR.parent.parent)}]")


def _print_metrics(rows: list[dict], as_json: bool) -> None:
    import json

    from models.evaluate import format_table

    if as_json:
        print(json.dumps(rows, default=str, indent=1))
        return
    for split in ("valid", "test"):
        part = [r for r in rows if r["split"] == split]
        if part:
            print(f"\n{split} ({part[0]['protocol']}, full ranking, {part[0]['users']:,} users, as of {part[0]['dt']})")
            print(format_table(part))


def cmd_train(args: argparse.Namespace) -> None:
    from models.run import resolve_day, train_method

    cfg = _config(args)
    day = resolve_day(cfg, args.date)
    echo = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else print
    if args.incremental:
        from pipelines import nightly

        if args.sets or args.resume:
            raise UsageError("--incremental trains the config's methods as they are: no --set or --resume")
        nightly.train(cfg, args.method, day, echo=echo)
        return
    result, rows = train_method(cfg, args.method, day, sets=args.sets, resume=args.resume, echo=echo)
    echo(f"trained {args.method} in {result.seconds:.1f}s, {result.epochs} epoch(s), best at {result.best_epoch}: "
         f"{result.folder}")
    _print_metrics(rows, args.json)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from models.run import evaluate_methods, resolve_day

    cfg = _config(args)
    names = [m.strip() for m in args.method.split(",") if m.strip()]
    rows = evaluate_methods(cfg, names, resolve_day(cfg, args.date), sets=args.sets)
    _print_metrics(rows, args.json)


def _methods(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def cmd_infer(args: argparse.Namespace) -> None:
    from models.infer import infer
    from models.run import resolve_day

    cfg = _config(args)
    day = resolve_day(cfg, args.date)
    for name in _methods(args.method):
        infer(cfg, name, day, sets=args.sets, version=args.version)


def cmd_publish(args: argparse.Namespace) -> None:
    from models.run import resolve_day
    from pipelines import nightly

    cfg = _config(args)
    day = resolve_day(cfg, args.date)
    for name in _methods(args.method):
        nightly.publish(cfg, name, day)


def cmd_report(args: argparse.Namespace) -> None:
    from pipelines.report import write_report

    print(write_report(_config(args), args.date))


def cmd_backfill(args: argparse.Namespace) -> None:
    from pipelines import nightly

    cfg = _config(args)
    if args.end < args.start:
        raise UsageError(f"--to {args.end} is before --from {args.start}")
    methods = _methods(args.method) if args.method else None
    outcomes = nightly.backfill(cfg, daterange(args.start, args.end), methods, etl=methods is None)
    blocked = [(o.day, m) for o in outcomes for m in o.blocked]
    if blocked:
        from pipelines.gates import GateFailed

        raise GateFailed(f"{len(blocked)} (day, method) not published: "
                         + "; ".join(f"{d} {m}: {o.blocked[m].splitlines()[0]}" for o in outcomes for d, m in
                                     [(o.day, m) for m in o.blocked]))


def _show(rows: list[dict[str, Any]], as_json: bool, title: str = "") -> None:
    import json

    if as_json:
        print(json.dumps(rows, default=str, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None)
    cols = list(rows[0]) if rows else []
    for c in cols:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[_cell(r[c]) for c in cols])
    Console(width=200).print(table) if rows else print(f"{title}: no rows")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (list, tuple)) and len(v) > 4:
        return "[" + ", ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in v[:3]) + f", ... ] ({len(v)})"
    return str(v)


def cmd_query(args: argparse.Namespace) -> None:
    from pipelines.query import Query

    cfg = _config(args)
    with Query(cfg.warehouse, ef_search=cfg.embeddings.hnsw_ef_search) as q:
        if args.query == "sql":
            table = q.sql(args.text)
            rows = table.to_pylist()
            _show(rows if args.json else rows[:args.limit], args.json)
            if not args.json and len(rows) > args.limit:
                print(f"({len(rows):,} rows; {args.limit} shown: --limit N or --json for more)")
            return
        if args.query == "user":
            row = q.user(args.id, args.method, args.date)
            _show([row], args.json, f"user {args.id}: {args.method} as of {row['dt']}")
            return
        if args.query == "similar-items":
            rows = q.similar_items(args.id, args.method, args.k, args.date, args.domain)
            what = f"items similar to {args.id}"
        elif args.query == "similar-users":
            rows = q.similar_users(args.id, args.method, args.k, args.date)
            what = f"users similar to {args.id}"
        else:
            rows = q.recommend(args.id, args.method, args.k, args.date)
            what = f"recommended for user {args.id} (seen items excluded)"
        day = rows[0]["dt"] if rows else args.date
        _show([{k: v for k, v in r.items() if k not in ("method", "dt")} for r in rows] if not args.json else rows,
              args.json, f"{what}: {args.method} as of {day}")


COMMANDS = {"methods": cmd_methods, "train": cmd_train, "evaluate": cmd_evaluate, "ingest": cmd_ingest, "etl": cmd_etl, "validate": cmd_validate, "generate": cmd_generate, "summary": cmd_summary, "demo": cmd_demo,
            "infer": cmd_infer, "publish": cmd_publish, "report": cmd_report, "backfill": cmd_backfill, "query": cmd_query}


def _root_cause(exc: Exception) -> str:
    """The innermost Java exception of a Py4J error, in one line (e.g. a checksum error naming the file)."""
    cause = exc.java_exception
    while cause.getCause() is not None and cause.getCause() != cause:
        cause = cause.getCause()
    return str(cause.toString()).splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    from pipelines.failures import clear_reason, write_reason

    args = _parser().parse_args(argv)
    clear_reason()
    code, message = _run(args)
    if code:
        print(message, file=sys.stderr)
        write_reason(message)
    return code


#: Errors that mean bad input or usage (exit 2, one line), by module: a module not imported by
#: the command cannot have raised its error, so nothing heavy is imported just to name it.
USER_ERRORS = {
    "pipelines.config": ("ConfigError",), "pipelines.ingest": ("InputError",),
    "pipelines.warehouse": ("WarehouseError", "AccountingError"), "pipelines.nightly": ("StepError",),
    "pipelines.query": ("QueryError",), "models.data": ("DataError",), "models.infer": ("InferError",),
    "models.registry": ("MethodError",), "models.run": ("ModelNotFound",),
}


def _run(args: argparse.Namespace) -> tuple[int, str]:
    """Run the command; (exit code, message): 1 a gate stopped it, 2 bad input or usage, 3 Spark."""
    try:
        COMMANDS[args.command](args)
    except Exception as exc:
        gates = sys.modules.get("pipelines.gates")
        if gates is not None and isinstance(exc, gates.GateFailed):
            return 1, f"seqrep {args.command}: stopped by a quality gate\n{exc}"
        user_errors = (UsageError, FileNotFoundError, *(getattr(sys.modules[m], n) for m, names in USER_ERRORS.items()
                                                        if m in sys.modules for n in names))
        if isinstance(exc, user_errors):
            return 2, f"seqrep {args.command}: error: {exc}"
        if "pyspark" in sys.modules:  # Spark's errors: show the message, not the JVM stack
            from py4j.protocol import Py4JJavaError
            from pyspark.errors import PySparkException

            if isinstance(exc, PySparkException):
                return 3, f"seqrep {args.command}: Spark error: {str(exc).strip().splitlines()[0]}"
            if isinstance(exc, Py4JJavaError):
                return 3, f"seqrep {args.command}: Spark error: {_root_cause(exc)}"
        from pipelines.failures import write_reason

        write_reason(f"seqrep {args.command}: {type(exc).__name__}: {exc}")
        raise
    return 0, ""


if __name__ == "__main__":
    sys.exit(main())
