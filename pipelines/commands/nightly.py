"""Nightly commands: ``report``, ``backfill``, ``demo``, ``airflow``, ``task-server``."""

from __future__ import annotations

import argparse
import time

from pipelines.commands.common import config, config_file, names, parse_date
from pipelines.core.errors import GateFailed, UsageError
from pipelines.core.warehouse import daterange


def register(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("report", parents=[common], help="write a day's run report (HTML and PNGs) and print its path")
    s.add_argument("--date", type=parse_date, required=True)
    s.set_defaults(func=report)

    s = sub.add_parser("backfill", parents=[common],
                       help="the nightly run of each day of a range, in order, without a scheduler")
    s.add_argument("--from", dest="start", type=parse_date, required=True, help="first day (inclusive)")
    s.add_argument("--to", dest="end", type=parse_date, required=True, help="last day (inclusive)")
    s.add_argument("--method", help="only these methods (comma-separated), on the ETL's existing partitions; "
                                    "default: ingest, ETL and every method of nightly.methods")
    s.set_defaults(func=backfill)

    s = sub.add_parser("demo", parents=[common],
                       help="generate logs and run the nightly DAG on them (Airflow, Spark) under ./demo")
    s.set_defaults(func=demo)

    s = sub.add_parser("airflow", parents=[common],
                       help="start, stop or check a local Airflow (api-server, scheduler, dag-processor) with the seqrep DAGs")
    s.add_argument("action", choices=["start", "stop", "status"])
    s.add_argument("--port", type=int, default=8080, help="the api-server's port (default 8080)")
    s.add_argument("--home", default=".airflow", help="AIRFLOW_HOME: database, logs, pids (default ./.airflow)")
    s.set_defaults(func=airflow)

    s = sub.add_parser("task-server", parents=[common],
                       help="start, stop or check a server that runs seqrep commands with their imports done once")
    s.add_argument("action", choices=["start", "stop", "status"])
    s.add_argument("--socket", help="its Unix socket (default ~/.cache/seqrep/task-server/seqrep.sock)")
    s.set_defaults(func=task_server)


def report(args: argparse.Namespace) -> None:
    from pipelines.nightly.report import write_report

    print(write_report(config(args), args.date))


def backfill(args: argparse.Namespace) -> None:
    from pipelines.nightly.backfill import backfill as run

    cfg = config(args)
    if args.end < args.start:
        raise UsageError(f"--to {args.end} is before --from {args.start}")
    methods = names(args.method) if args.method else None
    outcomes = run(cfg, daterange(args.start, args.end), methods, etl=methods is None)
    blocked = [(o.day, m, reason) for o in outcomes for m, reason in o.blocked.items()]
    if blocked:
        raise GateFailed(f"{len(blocked)} (day, method) not published: "
                         + "; ".join(f"{d} {m}: {reason.splitlines()[0]}" for d, m, reason in blocked))


def demo(args: argparse.Namespace) -> None:
    from pipelines.nightly.demo import run_demo

    run_demo(config_file(args))


def airflow(args: argparse.Namespace) -> None:
    """A local Airflow of the DAG folder (``pipelines/nightly/airflow_local.py``): the DAG's
    ``warehouse`` and ``config`` parameters default to ``--warehouse`` and ``--config``."""
    from pathlib import Path

    from pipelines.nightly import airflow_local as local

    home = Path(args.home).resolve()
    if args.action == "stop":
        print(f"stopped Airflow of {home}" if local.stop(home) else f"no Airflow started from {home}")
        return
    if args.action == "status":
        found = local.running(home)
        if not found:
            raise UsageError(f"no Airflow started from {home}; `seqrep airflow start --home {args.home}`")
        print(f"running from {home}: " + ", ".join(f"{n} (pid {p})" for n, p in found.items()))
        return
    cfg = config(args)
    path = config_file(args)
    env = local.environment(home, Path(path).resolve() if path else None, Path(cfg.warehouse).resolve(), args.port)
    pids = local.start(env, args.port)
    print(f"Airflow is up: http://127.0.0.1:{args.port}  (login admin / {local.password(home) or 'see the api-server log'})")
    print(f"  processes: {', '.join(f'{n} {p}' for n, p in pids.items())}; logs and pids in {home}")
    print("  the seqrep DAGs start paused: `airflow dags unpause seqrep_nightly` (with AIRFLOW_HOME set), or the UI")
    print(f"  stop with: seqrep airflow stop --home {args.home}")


def task_server(args: argparse.Namespace) -> None:
    """A fork server for later ``seqrep`` processes: each that has ``SEQREP_TASK_SERVER`` set
    runs in a fork of it, without importing torch or Great Expectations again."""
    from pathlib import Path

    from pipelines.nightly import task_server as server

    path = Path(args.socket or server.default_socket()).resolve()
    if args.action == "start":
        t0 = time.monotonic()
        path, pid, started = server.start(path)
        print(f"{'started' if started else 'already running'}: task server {path} (pid {pid}"
              f"{f', {time.monotonic() - t0:.1f} s' if started else ''}; log {server.log_file(path)})")
        print(f"make seqrep commands its clients with: export {server.SERVER_ENV}={path}")
    elif args.action == "stop":
        print(f"stopped the task server {path}" if server.stop(path) else f"no task server started by seqrep at {path}")
    else:
        pid = server.running_pid(path)
        if pid is None:
            raise UsageError(f"no task server started by seqrep at {path}; `seqrep task-server start`")
        print(f"running: task server {path} (pid {pid}; log {server.log_file(path)})")
