"""Real-time commands: ``stream``."""

from __future__ import annotations

import argparse

from pipelines.commands.common import config


def register(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("stream", parents=[common],
                       help="fold fresh events of a landing folder into live user vectors (Spark Structured Streaming)")
    s.add_argument("--method", required=True, help="a published method whose model encodes the fresh histories")
    s.add_argument("--landing", help="the folder event files land in (default: stream.landing)")
    s.add_argument("--trigger", help="time between micro-batches, e.g. 2s or 500ms (default: stream.trigger_s)")
    s.add_argument("--stop-when-idle", type=float, metavar="SECONDS",
                   help="stop once every landed file is in a committed micro-batch and none has run for this "
                        "long (replays, tests); default: run until stopped")
    s.add_argument("--check", action="store_true",
                   help="check the running stream's heartbeat and exit: 0 alive, 2 stopped (the DAG's task)")
    s.add_argument("--date", help=argparse.SUPPRESS)  # the DAG's tasks all pass the day; a stream has none
    s.set_defaults(func=stream)


def stream(args: argparse.Namespace) -> None:
    from pipelines.streaming.stream import parse_trigger, run

    if args.check:
        from pipelines.core.warehouse import Warehouse
        from pipelines.serving.live import check_heartbeat

        cfg = config(args)
        beat = check_heartbeat(Warehouse(cfg.warehouse), args.method, cfg.stream.heartbeat_max_age_s)
        print(f"stream {args.method}: {beat['state']}, heartbeat {beat['age_s']}s old, pid {beat['pid']} on "
              f"{beat['host']}, last batch {beat['last_batch']}")
        return
    done = run(config(args), args.method, landing=args.landing,
               trigger_s=parse_trigger(args.trigger) if args.trigger else None, stop_when_idle_s=args.stop_when_idle)
    print(f"stream {args.method}: {done['batches']} micro-batches (last {done['last_batch']})")
