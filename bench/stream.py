"""Streaming fold-in latency (``seqrep stream``): events landed at a sustained rate, time to a queryable vector.

Setup: a copy of an ETL'd ml-100k warehouse with a SASRec (the method's defaults, ``--epochs``
epochs: latency does not depend on quality) trained, inferred and published as of its last day.
Then ``seqrep stream --method sasrec --trigger 2s`` runs as its own process while this script
lands event files (written aside, renamed in) at ``--rate`` events per second for ``--seconds``
seconds, one file every ``--every`` seconds. The events are of the day after the published one:
users drawn with a heavy tail (Zipf exponent 1.1) from the 943 ml-100k users plus ``--new-users``
new ones, items by the catalogue's popularity, 1% on items the model has never seen, 0.2% rows
with a null user (quarantined).

Latency of a file = the commit time of the micro-batch that took it (its manifest's
``committed``: from then on its users' vectors are queryable) minus the time the file was renamed
into the landing folder. The table gives p50 / p99 / max over files, per phase; events in and
out; the stream's processing capacity (events / seconds its batches took, i.e. the rate at which
it would fall behind); the median batch's seconds, split into Spark (read, map, label, collect),
the state and the encoding, and the write (the manifests' ``seconds_by_step``); and the peak memory of the stream process and its JVM (VmHWM).

Phases (``--rates``): each rate runs for ``--seconds``; the first is the target (1,000 events/s).

Run (after ``seqrep ingest --source movielens`` and ``seqrep etl --all`` into wh-ml):
    python bench/stream.py --warehouse wh-ml --rates 1000,3000 --seconds 300 --record stream-ml100k
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def prepare(src: Path, work: Path, epochs: int) -> tuple[Path, Path, str]:
    """A copy of ``src`` with SASRec published as of its last day; (warehouse, config, day)."""
    from pipelines.cli import main as seqrep
    from pipelines.modeling.data import latest_day

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    wh = work / "wh"
    shutil.copytree(src, wh, ignore=shutil.ignore_patterns("models", "metrics", "metric_segments", "embeddings",
                                                           "_staging", "_locks", "tuning", "comparisons", "live",
                                                           "stage=publish", "stage=stream"))
    day = str(latest_day(wh))
    cfg = work / "cfg.yaml"
    cfg.write_text(f"methods:\n  sasrec:\n    train: {{epochs: {epochs}}}\n"
                   "ingest:\n  source: parquet\n  domain: movies\n"
                   "  columns: {user_id: user, item_id: item, event_type: action, ts: at}\n  ts_unit: ms\n")
    common = ["--warehouse", str(wh), "--config", str(cfg), "--date", day]
    for step in ("train", "infer", "publish"):
        assert seqrep([step, "--method", "sasrec", *common]) == 0, step
    return wh, cfg, day


def catalogue(wh: Path) -> tuple[list[str], list[str], np.ndarray]:
    """User ids, item ids and item popularity of the warehouse."""
    import duckdb

    users = [r[0] for r in duckdb.sql(f"SELECT DISTINCT user_id FROM read_parquet('{wh}/sequences/dt=*/*.parquet')").fetchall()]
    items = duckdb.sql(f"SELECT item_id, count(*) AS n FROM read_parquet('{wh}/clean/events/dt=*/*.parquet') "
                       "GROUP BY item_id ORDER BY item_id").fetchnumpy()
    return users, items["item_id"].tolist(), items["n"].astype(float)


def land(landing: Path, rate: int, seconds: float, every: float, day_start: datetime, users: list[str],
         items: list[str], pop: np.ndarray, seed: int, tag: str, log: list[dict]) -> None:
    """Write a file every ``every`` seconds holding ``rate * every`` events; record each landing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(users) + 1) ** 1.1
    weights /= weights.sum()
    order = rng.permutation(len(users))
    per_file = max(1, int(round(rate * every)))
    pop = pop / pop.sum()
    t0 = time.time()
    n = 0
    while True:
        due = t0 + n * every
        if due - t0 >= seconds:
            break
        time.sleep(max(0.0, due - time.time()))
        u = np.asarray(users, dtype=object)[order[rng.choice(len(users), per_file, p=weights)]]
        it = np.asarray(items, dtype=object)[rng.choice(len(items), per_file, p=pop)]
        unknown = rng.random(per_file) < 0.01
        it[unknown] = [f"new-item-{x}" for x in rng.integers(0, 10**6, unknown.sum())]
        u[rng.random(per_file) < 0.002] = None
        now = datetime.now(timezone.utc)
        at = int((day_start + (now - now.replace(hour=0, minute=0, second=0, microsecond=0))).timestamp() * 1000)
        table = pa.table({"user": pa.array(u.tolist(), pa.string()), "item": pa.array(it.tolist(), pa.string()),
                          "action": pa.array(["rate"] * per_file), "at": pa.array(at + np.arange(per_file), pa.int64())})
        name = f"{tag}-{n:06d}.parquet"
        tmp = landing.parent / f".{name}"
        pq.write_table(table, tmp)
        os.replace(tmp, landing / name)
        log.append({"file": name, "landed": time.time(), "rows": per_file, "phase": tag})
        n += 1


def peak_memory(pid: int) -> dict[str, float]:
    """VmHWM (MB) of ``pid`` and of its children (the JVM)."""
    def hwm(p: int) -> float:
        try:
            line = next(x for x in Path(f"/proc/{p}/status").read_text().splitlines() if x.startswith("VmHWM"))
            return int(line.split()[1]) / 1024
        except (OSError, StopIteration):
            return 0.0

    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        children = []
    return {"python_mb": round(hwm(pid), 1), "children_mb": round(sum(hwm(c) for c in children), 1)}


def summarize(docs: list[dict], log: list[dict], rates: list[int]) -> dict:
    """Per phase: each file's latency (its batch's commit minus its landing), events, capacity."""
    committed = {Path(f).name: datetime.fromisoformat(d["committed"]).timestamp() for d in docs for f in d["files"]}
    phases = []
    for rate in rates:
        tag = f"r{rate}"
        mine = [e for e in log if e["phase"] == tag]
        batches = [d for d in docs if any(Path(f).name.startswith(tag) for f in d["files"])]
        phases.append({"tag": tag, "rate": rate, "events": sum(e["rows"] for e in mine),
                       "latency_s": [round(committed[e["file"]] - e["landed"], 3) for e in mine],
                       "batches": len(batches), "batch_seconds": [d["seconds"] for d in batches],
                       "step_seconds": {k: [d["seconds_by_step"][k] for d in batches] for k in ("spark", "encode", "write")},
                       "capacity": sum(d["rows_in"] for d in batches) / max(sum(d["seconds"] for d in batches), 1e-9)})
    return {"rates": rates, "phases": phases, "rows_in": sum(d["rows_in"] for d in docs),
            "rows_out": sum(d["rows_out"] for d in docs), "rows_quarantined": sum(d["rows_quarantined"] for d in docs),
            "landed": sum(e["rows"] for e in log)}


def table(figures: dict) -> str:
    rows = ["| phase | events/s landed | files | events in | p50 latency s | p99 latency s | max s | "
            "capacity events/s | median batch s (Spark + encode + write) |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for ph in figures["phases"]:
        lat = np.asarray(ph["latency_s"])
        rows.append(f"| {ph['tag']} | {ph['rate']:,} | {len(lat):,} | {ph['events']:,} | {np.percentile(lat, 50):.2f} | "
                    f"{np.percentile(lat, 99):.2f} | {lat.max():.2f} | {ph['capacity']:,.0f} | "
                    f"{np.median(ph['batch_seconds']):.2f} ({' + '.join(f'{np.median(v):.2f}' for v in ph['step_seconds'].values())}) |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warehouse", required=True, help="an ETL'd ml-100k warehouse (read; a copy is written)")
    ap.add_argument("--work", default="/tmp/seqrep-bench-stream")
    ap.add_argument("--rates", default="1000", help="events/s of each phase, comma-separated")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--every", type=float, default=0.5, help="seconds between files")
    ap.add_argument("--new-users", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--trigger", default="2s")
    ap.add_argument("--record")
    args = ap.parse_args()

    work = Path(args.work)
    wh, cfg, day = prepare(Path(args.warehouse), work, args.epochs)
    users, items, pop = catalogue(wh)
    users += [f"new-user-{i}" for i in range(args.new_users)]
    landing = work / "landing"
    landing.mkdir()
    start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc) + timedelta(days=1)
    log: list[dict] = []
    # The first file makes the stream's schema; it is not timed (the stream starts its JVM on it).
    land(landing, 10, 0.1, 1.0, start, users, items, pop, 0, "warmup", log)
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "stream", "--method", "sasrec", "--warehouse",
                             str(wh), "--config", str(cfg), "--landing", str(landing), "--trigger", args.trigger,
                             "--stop-when-idle", "15"], stdout=open(work / "stream.log", "w"), stderr=subprocess.STDOUT)
    manifests = wh / "_manifests/stage=stream/model=sasrec"
    while not manifests.is_dir() or not list(manifests.glob("batch=*.json")):
        if proc.poll() is not None:
            raise SystemExit(f"the stream stopped: {(work / 'stream.log').read_text()[-3000:]}")
        time.sleep(0.5)
    peak = {"python_mb": 0.0, "children_mb": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            m = peak_memory(proc.pid)
            for k in peak:
                peak[k] = max(peak[k], m[k])
            time.sleep(2)

    threading.Thread(target=sample, daemon=True).start()
    rates = [int(r) for r in args.rates.split(",")]
    for k, rate in enumerate(rates):
        print(f"[bench] landing {rate:,} events/s for {args.seconds:g}s", flush=True)
        land(landing, rate, args.seconds, args.every, start, users, items, pop, k + 1, f"r{rate}", log)
    proc.wait(timeout=args.seconds * len(rates) + 1800)
    stop.set()
    figures = summarize([json.loads(p.read_text()) for p in sorted(manifests.glob("batch=*.json"))], log, rates)
    figures.update({"seconds": args.seconds, "every": args.every, "trigger": args.trigger, "users": len(users),
                    "items": len(items), "peak_memory_mb": peak})
    text = table(figures)
    print(text)
    print(f"[bench] landed {figures['landed']:,} events, the stream took in {figures['rows_in']:,} "
          f"({figures['rows_out']:,} clean, {figures['rows_quarantined']:,} quarantined); peak memory {peak}", flush=True)
    if args.record:
        from bench.results import record

        record(args.record, figures, text)


if __name__ == "__main__":
    main()
