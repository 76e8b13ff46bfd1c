"""Erasure cost (``seqrep forget``): 1 user and 1,000 users out of a synthetic warehouse.

A synthetic log (``--events`` over ``--days`` days; users = events / 50, items = events / 500 per
domain, as ``bench/etl.py``) goes through ingest and the ETL once; then, for each size in
``--sizes``, a copy of that warehouse has that many users erased (the users of the vocabulary
picked with a fixed seed), ``--repeats`` times on fresh copies. The table gives the median wall
time of ``forget`` (the rewrite and its commit; then the erasure gate's scan of the whole
warehouse, timed apart), the partitions and bytes rewritten and the rows removed, from its audit
record. Nothing but ``forget`` runs while it is timed.

Run:
    python bench/erasure.py --events 10000000 --days 5 --sizes 1,1000 --repeats 1 --record erasure-synthetic
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.cli import main as seqrep


def build(work: Path, events: int, days: int) -> tuple[Path, Path, float]:
    """The synthetic warehouse (logs, ingest, ETL with its gates); its config and seconds."""
    cfg = work / "seqrep.yaml"
    cfg.write_text(f'warehouse: {work / "wh"}\nspark: {{shuffle_partitions: 4, driver_memory: 4g}}\n'
                   f'ingest: {{source: synthetic, input: "{work}/logs/dt={{date}}"}}\n')
    per_day, users = events // days, max(events // 50, 10)
    t0 = time.perf_counter()
    assert seqrep(["generate", "--out", str(work / "logs"), "--days", str(days), "--events-per-day", str(per_day),
                   "--users", str(users), "--items-per-domain", str(max(events // 500, 10)), "--config", str(cfg)]) == 0
    for d in sorted(p.name[3:] for p in (work / "logs").glob("dt=*")):
        assert seqrep(["ingest", "--date", d, "--config", str(cfg)]) == 0
    assert seqrep(["etl", "--all", "--config", str(cfg)]) == 0
    return work / "wh", cfg, time.perf_counter() - t0


def pick_users(wh: Path, n: int, seed: int = 0) -> list[str]:
    import pyarrow.parquet as pq

    ids = sorted(pq.read_table(wh / "vocab/users", columns=["user_id"]).column("user_id").to_pylist())
    return sorted(np.random.default_rng(seed).choice(ids, size=n, replace=False).tolist())


def erase_once(wh: Path, cfg: Path, users: list[str], work: Path) -> dict:
    """``forget`` on a fresh copy of ``wh``: its audit record with the wall times."""
    copy = work / "copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(wh, copy)
    user_file = work / "users.txt"
    user_file.write_text("\n".join(users) + "\n")
    common = ["--config", str(cfg), "--warehouse", str(copy)]
    t0 = time.perf_counter()
    assert seqrep(["forget", "--user-file", str(user_file), "--reason", "bench", "--no-gate", *common]) == 0
    forget_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert seqrep(["forget", "--user-file", str(user_file), "--verify", *common]) == 0
    gate_s = time.perf_counter() - t0
    (audit,) = [json.loads(p.read_text()) for p in (copy / "_privacy/erasures").glob("*.json")]
    return {"forget_s": forget_s, "gate_s": gate_s, "partitions": audit["partitions_rewritten"],
            "bytes": audit["bytes_written"], "rows": sum(audit["rows_removed"].values()),
            "raw_rows": sum(v for k, v in audit["rows_removed"].items() if k.startswith("raw/events"))}


def table(figures: dict) -> str:
    lines = ["| users erased | forget s (median) | erasure gate s | partitions rewritten | MB written | "
             "raw events removed | rows removed (all tables) |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n, runs in figures["runs"].items():
        med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
        lines.append(f"| {int(n):,} | {med('forget_s'):.1f} | {med('gate_s'):.1f} | {runs[0]['partitions']:,} | "
                     f"{runs[0]['bytes'] / 1e6:,.1f} | {runs[0]['raw_rows']:,} | {runs[0]['rows']:,} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--sizes", default="1,1000")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", help="keep the warehouse here (built once; reused when it exists)")
    ap.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    args = ap.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="seqrep-bench-erasure-"))
    work.mkdir(parents=True, exist_ok=True)
    if (work / "wh" / "sequences").is_dir():
        wh, cfg, build_s = work / "wh", work / "seqrep.yaml", None
    else:
        wh, cfg, build_s = build(work, args.events, args.days)
        print(f"[bench] warehouse of {args.events:,} events built in {build_s:.0f}s", flush=True)
    runs: dict[str, list[dict]] = {}
    for n in (int(x) for x in args.sizes.split(",")):
        users = pick_users(wh, n)
        runs[str(n)] = [erase_once(wh, cfg, users, work) for _ in range(args.repeats)]
        print(f"[bench] {n} user(s): {runs[str(n)]}", flush=True)
    figures = {"events": args.events, "days": args.days, "build_s": build_s, "runs": runs,
               "warehouse_bytes": sum(f.stat().st_size for f in wh.rglob("*") if f.is_file())}
    text = table(figures)
    print(f"\n{text}\n\nwarehouse: {figures['warehouse_bytes'] / 1e9:.2f} GB, {args.events:,} events over {args.days} days")
    if args.record:
        from results import record  # bench/results.py (the script's folder is on the path)

        record(args.record, figures, text)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
