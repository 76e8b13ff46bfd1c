"""Privacy and data lifecycle: ``forget`` (erase users everywhere, with an audit record) and
``retention`` (drop partitions past their window)."""

from __future__ import annotations

import argparse

from pipelines.commands.common import config, parse_date, show


def register(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("forget", parents=[common],
                       help="erase users from every table, embedding table and record of the warehouse, with an audit record")
    s.add_argument("--user", dest="users", action="append", default=[], metavar="ID",
                   help="a user's id as your product knows it (repeat for several)")
    s.add_argument("--user-file", help="a file of ids, one per line")
    s.add_argument("--reason", help="why (e.g. the request's reference); kept in the audit record")
    s.add_argument("--no-gate", action="store_true", help="leave the scan for traces to `forget --verify`")
    s.add_argument("--verify", action="store_true",
                   help="only the erasure gate: scan the warehouse for the users, already erased (exit 1 on a trace)")
    s.add_argument("--audit", action="store_true",
                   help="print every erasure record, with when each method was retrained without the users")
    s.set_defaults(func=forget)

    s = sub.add_parser("retention", parents=[common],
                       help="drop partitions older than each table family's window (retention.<family>_days)")
    s.add_argument("--date", type=parse_date, required=True, help="the run's day: windows count back from it")
    s.add_argument("--dry-run", action="store_true", help="list what would be dropped")
    s.set_defaults(func=retention)


def forget(args: argparse.Namespace) -> None:
    from pipelines.core.errors import UsageError
    from pipelines.nightly.forget import audit, forget as run, read_user_file, verify

    if args.audit:
        show(audit(config(args)), True)
        return
    users = [*args.users, *(read_user_file(args.user_file) if args.user_file else [])]
    if args.verify:
        verify(config(args), users)
        return
    if not args.reason:
        raise UsageError("forget: --reason is required (e.g. the request's reference)")
    run(config(args), users, args.reason, gate=not args.no_gate)


def retention(args: argparse.Namespace) -> None:
    from pipelines.core.warehouse import Warehouse
    from pipelines.nightly.retention import apply, expired

    cfg = config(args)
    if args.dry_run:
        for family, folders in expired(Warehouse(cfg.warehouse), cfg, args.date).items():
            print(f"{family}: {len(folders)} partition(s) past the window")
        return
    apply(cfg, args.date)
