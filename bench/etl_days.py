"""ETL cost against the number of days: the same events spread over few days and over many.

Synthetic logs of ``--events`` events over the first ``--days`` value (``seqrep generate``), then
the same events spread over each other value (``spread``: same rows, users and items, each at its
time of day on another day) go through what a user runs on a new warehouse: ``seqrep ingest
--source synthetic`` and ``seqrep etl --all`` (gates on), each its own process, as from the
shell. Each is timed from start to exit (the Spark session's start is in it, the same for every
row), ``--repeats`` times on a fresh warehouse (once when the first run takes over 10 minutes);
the table gives medians, the seconds per stage that ``etl`` prints, and the ratio of each row's
time to the first row's (target: 4,000 days within 2x of 30 days for the same 100k events).

Run:
    python bench/etl_days.py --events 100000 --days 30,4000 --repeats 3 --record etl-days
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "pipelines.cli"]
START = "2010-01-01"
LONG_S = 600.0  # a row whose first run takes longer is run once
STAGE_LINE = re.compile(r"^\s+(gate \w+|\w+)\s+([\d.]+)s$")


def generate(out: Path, events: int, days: int, seed: int = 11) -> None:
    """``events`` synthetic events over ``days`` days (users = events / 50, items = events / 100)."""
    from datetime import date

    from etl import write_logs  # bench/etl.py (the script's folder is on the path)
    from pipelines.core.config import SyntheticConfig

    write_logs(out, SyntheticConfig(seed=seed, start_date=date.fromisoformat(START), days=days,
                                    events_per_day=max(1, events // days), users=max(100, events // 50),
                                    items_per_domain=max(100, events // 100)), quiet=True)


def spread(src: Path, out: Path, days: int) -> int:
    """The events of ``src`` (synthetic logs) spread over ``days`` days, one folder per day: the
    k-th of n events (in time order) moves to day ``k * days // n``, at its own time of day. The
    same rows, users and items; only the days differ. Returns the number of events."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pa.concat_tables(pq.read_table(f) for f in sorted(src.glob("dt=*/*.parquet")))
    table = table.sort_by("event_time_ms")
    n, ms_day = table.num_rows, 86_400_000
    day = np.arange(n) * days // n
    start = int(np.datetime64(START, "ms").astype(np.int64))
    t = table.column("event_time_ms").to_numpy()
    table = table.set_column(table.schema.get_field_index("event_time_ms"), "event_time_ms",
                             pa.array(start + day * ms_day + t % ms_day))
    for d in np.unique(day):
        folder = out / f"dt={np.datetime64(START) + int(d)}"
        folder.mkdir(parents=True)
        pq.write_table(table.filter(pc.equal(pa.array(day), int(d))), folder / "part-0.parquet")
    shutil.copytree(src / "_items", out / "_items")
    return n


def timed(cmd: list[str]) -> tuple[float, str]:
    """Seconds from start to exit of ``cmd``, and its output (it must succeed)."""
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return seconds, out.stdout


def one_run(logs: Path, wh: Path) -> dict:
    """Ingest and ``etl --all`` on a fresh warehouse: seconds of each process and of each stage."""
    shutil.rmtree(wh, ignore_errors=True)
    ingest_s, _ = timed([*CLI, "ingest", "--source", "synthetic", "--input", str(logs), "--warehouse", str(wh)])
    etl_s, text = timed([*CLI, "etl", "--all", "--warehouse", str(wh)])
    stages = {m.group(1): float(m.group(2)) for m in map(STAGE_LINE.match, text.splitlines()) if m}
    return {"ingest_s": ingest_s, "etl_s": etl_s, "stages_s": stages}


def table(figures: dict) -> str:
    """One row per number of days: medians over the runs, and the ratio to the first row."""
    lines = ["| events | days | ingest s | etl --all s | total s | x first row | runs | etl stages (median s) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    base = None
    for row in figures["rows"]:
        runs = row["runs"]
        ingest = statistics.median(r["ingest_s"] for r in runs)
        etl = statistics.median(r["etl_s"] for r in runs)
        total = statistics.median(r["ingest_s"] + r["etl_s"] for r in runs)
        base = base or total
        stages = ", ".join(f"{k} {statistics.median(r['stages_s'].get(k, 0.0) for r in runs):.1f}"
                           for k in runs[0]["stages_s"])
        lines.append(f"| {row['events']:,} | {row['days']:,} | {ingest:.1f} | {etl:.1f} | {total:.1f} | "
                     f"{total / base:.2f} | {len(runs)} | {stages} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--days", default="30,4000", help="comma-separated numbers of days")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", help="scratch folder (default: a temp folder, removed after)")
    ap.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    args = ap.parse_args()
    import pyarrow.parquet as pq

    work = Path(args.workdir or tempfile.mkdtemp(prefix="seqrep-bench-days-"))
    rows = []
    try:
        counts = [int(d) for d in args.days.split(",")]
        base = work / f"logs-{counts[0]}"
        shutil.rmtree(base, ignore_errors=True)
        generate(base, args.events, counts[0])
        n = sum(pq.read_metadata(f).num_rows for f in base.glob("dt=*/*.parquet"))
        for days in counts:
            logs = base if days == counts[0] else work / f"logs-{days}"
            if days != counts[0]:
                shutil.rmtree(logs, ignore_errors=True)
                spread(base, logs, days)
            runs = []
            for r in range(args.repeats):
                if runs and runs[0]["ingest_s"] + runs[0]["etl_s"] > LONG_S:
                    break  # one run of a size that takes longer than 10 minutes
                runs.append(one_run(logs, work / "wh"))
                print(f"[{n:,} events over {days:,} days, run {r + 1}] ingest {runs[-1]['ingest_s']:.1f}s, "
                      f"etl {runs[-1]['etl_s']:.1f}s {runs[-1]['stages_s']}", flush=True)
            rows.append({"events": n, "days": days, "runs": runs})
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    figures = {"rows": rows}
    text = table(figures)
    print(f"\n{text}")
    if args.record:
        from results import record  # bench/results.py (the script's folder is on the path)

        record(args.record, figures, text)


if __name__ == "__main__":
    main()
