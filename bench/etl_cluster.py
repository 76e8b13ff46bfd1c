"""The cost of the cluster path: the whole ETL on ``local[2]`` against a 2-worker Spark standalone
cluster on the same machine (issue 20).

One synthetic log (``bench/etl.py``'s generator, the same seed and sizes) goes through the whole ETL
(ingest, clean, sessionize, sequences, graphs and their gates, as ``bench/etl.py``) twice per repeat:
once with the driver's own ``local[2]`` (2 task slots, ``--memory`` of driver heap) and once as a
client of ``seqrep spark-cluster`` (a master and two workers of one core each, an executor of
``--memory`` / 2 per worker, so the same slots and heap per slot), each on a fresh warehouse. The
cluster's extra cost is what a user pays for the same code on more machines: executor JVMs,
shuffle through the workers' block managers, task serialization over RPC. Both give the same
rows (order-free digest of every ETL table, ``bench/etl_duckdb.py``), checked on the first repeat.

Run (about 25 minutes at 10M events on 2 cores):
    python bench/etl_cluster.py --events 10000000 --repeats 1 --record etl-cluster
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import etl as etl_bench  # bench/etl.py (the script's folder is on the path)
import etl_duckdb

from pipelines.core.config import Config
from pipelines.etl import spark_cluster
from pipelines.etl.processes import free_port
from pipelines.etl.spark import get_spark


def _config(warehouse: Path, master: str, memory_gb: int) -> Config:
    """local[2] with all of ``memory_gb`` as driver heap, or the cluster with half of it per executor."""
    spark: dict = {"master": master, "shuffle_partitions": 4}
    if master.startswith("local"):
        spark["driver_memory"] = f"{memory_gb}g"
    else:
        spark.update(driver_memory="1g", conf={"spark.executor.memory": f"{memory_gb * 1024 // 2}m",
                                               "spark.executor.cores": "1"})
    return Config.model_validate({"warehouse": warehouse, "spark": spark})


def one_run(cfg: Config, logs: Path) -> dict[str, float]:
    """The whole ETL on a fresh warehouse in a fresh session (JVM start included); seconds per stage
    and for the session's start."""
    t = time.perf_counter()
    spark = get_spark(cfg.spark)
    started = time.perf_counter() - t
    try:
        return {"session": started, **etl_bench.run_etl(spark, cfg, logs)}
    finally:
        spark.stop()


def in_child(warehouse: Path, master: str, memory_gb: int, logs: Path) -> dict[str, float]:
    """``one_run`` in a process of its own: PySpark keeps a builder's settings for the process's
    later sessions (local mode's file system class would reach the executors, which lack it)."""
    out = subprocess.run([sys.executable, __file__, "--child", str(warehouse), master, str(memory_gb), str(logs)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the ETL on {master} failed:\n" + out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def same_rows(a: Path, b: Path) -> list[str]:
    """Tables whose order-free digest differs between the two warehouses."""
    return [t for t in etl_duckdb.TABLES if etl_duckdb.digest(a, t) != etl_duckdb.digest(b, t)]


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        warehouse, master, memory_gb, logs = sys.argv[2:]
        print(json.dumps(one_run(_config(Path(warehouse), master, int(memory_gb)), Path(logs))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--memory-gb", type=int, default=4, help="heap for task slots in all (local: the driver's)")
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temp folder, removed after)")
    ap.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="seqrep-bench-cluster-"))
    logs = work / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    etl_bench.write_logs(logs, etl_bench.synthetic_for(args.events, args.days), quiet=True)
    port = free_port()
    cluster, _ = spark_cluster.start(port, workers=2, cores=1, memory=f"{args.memory_gb * 1024 // 2 + 512}m")
    runs: dict[str, list[dict[str, float]]] = {"local[2]": [], "cluster": []}
    differ: list[str] = []
    try:
        for r in range(args.repeats):
            for mode, master in (("local[2]", "local[2]"), ("cluster", cluster.url)):
                wh = work / f"wh-{mode.split('[')[0]}"  # "[2]" in a path would be a glob
                runs[mode].append(in_child(wh, master, args.memory_gb, logs))
                print(f"[{mode}, run {r + 1}] {sum(runs[mode][-1].values()):.1f}s "
                      f"{ {k: round(v, 1) for k, v in runs[mode][-1].items()} }", flush=True)
            if r == 0:
                differ = same_rows(work / "wh-local", work / "wh-cluster")
    finally:
        spark_cluster.stop(port)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    figures = {"events": args.events, "days": args.days, "repeats": args.repeats, "memory_gb": args.memory_gb,
               "runs_stage_s": runs, "tables_differing": differ}
    text = table(figures)
    print("\n" + text)
    if args.record:
        from results import record

        record(args.record, figures, text)


def _stages(run: dict[str, float]) -> dict[str, float]:
    """A run's seconds by stage, its gates summed into one column."""
    out = {k: v for k, v in run.items() if not k.startswith("gate")}
    return {**out, "gates": sum(v for k, v in run.items() if k.startswith("gate"))}


def table(figures: dict) -> str:
    """bench/README.md's table: median seconds of each mode, per stage and in all, and the ratio."""
    runs = {m: [_stages(r) for r in rs] for m, rs in figures["runs_stage_s"].items()}
    stages = list(runs["local[2]"][0])
    total = {m: statistics.median(sum(r.values()) for r in rs) for m, rs in runs.items()}
    differ = figures["tables_differing"]
    lines = [f"| Spark | ETL s (median of {figures['repeats']}) | events/s | "
             + " | ".join(f"{s} s" for s in stages) + " | vs local[2] | same rows |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in stages) + " | ---: | :---: |"]
    for mode, rs in runs.items():
        per = " | ".join(f"{statistics.median(r[s] for r in rs):.1f}" for s in stages)
        lines.append(f"| {mode} | {total[mode]:.1f} | {figures['events'] / total[mode]:,.0f} | {per} | "
                     f"{total[mode] / total['local[2]']:.2f}x | {'no: ' + ', '.join(differ) if differ else 'yes'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
