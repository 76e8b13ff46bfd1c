"""Per-task cost of the nightly DAG's Spark tasks: ``spark-submit``, a Spark Connect client, and a
Spark Connect client forked by a task server.

The seven ETL tasks of the DAG (``pipelines/nightly/etl_tasks.py``) run, in order, over
``--days`` days of ``--events-per-day`` synthetic events, each task its own process as Airflow runs
it: (a) as the SparkSubmitOperator submits it (``spark-submit --master local[2]`` of
``pipelines/spark_app.py``), a JVM and driver per task; (b) as a ``seqrep`` process that is a
client of one Spark Connect server (``seqrep spark-server start``, timed once); (c) the same, run
by a task server (``seqrep task-server start``, ``pipelines/nightly/task_server.py``: the imports
done once, a fork per task; the task's process is a thin client). Each mode has its own warehouse. The days are small, so a task's time is nearly all fixed cost (process, imports,
session): the table gives each task's median over the days, per mode, and their ratio.
Target (issue 18): at most 3 s per task on the embedded default.

Run:
    python bench/task_cost.py --days 3 --events-per-day 200 --record task-cost
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pyspark

from pipelines.nightly.etl_tasks import ETL_TASKS

START = date(2024, 1, 1)
SUBMIT = Path(pyspark.__file__).parent / "bin" / "spark-submit"
APP = Path(__file__).resolve().parent.parent / "pipelines" / "spark_app.py"
MODES = ("spark-submit", "connect", "task-server")


def task_command(mode: str, args: list[str], day: date, wh: Path, cfg: Path) -> list[str]:
    """The command line of one task in ``mode`` (what the DAG's operator runs)."""
    tail = [*args, "--date", day.isoformat(), "--warehouse", str(wh), "--config", str(cfg)]
    if mode == "spark-submit":
        return [str(SUBMIT), "--master", "local[2]", "--conf", "spark.driver.memory=2g",
                "--conf", "spark.driver.extraJavaOptions=-Duser.timezone=UTC -XX:MaxDirectMemorySize=1g",
                "--name", f"seqrep-{args[0]}", str(APP), *tail]
    return [sys.executable, "-m", "pipelines.cli", *tail]


def run_mode(mode: str, days: list[date], work: Path, cfg: Path, env: dict[str, str]) -> dict[str, list[float]]:
    """Seconds of each task on each day (every task must succeed)."""
    wh = work / f"wh-{mode}"
    shutil.rmtree(wh, ignore_errors=True)
    seconds: dict[str, list[float]] = {t.task_id: [] for t in ETL_TASKS}
    for day in days:
        for t in ETL_TASKS:
            t0 = time.perf_counter()
            out = subprocess.run(task_command(mode, t.args, day, wh, cfg), env=env, capture_output=True, text=True)
            seconds[t.task_id].append(time.perf_counter() - t0)
            if out.returncode != 0:
                errors = [ln for ln in out.stderr.splitlines() if " INFO " not in ln]  # Spark's log is noise here
                raise SystemExit(f"{mode} {t.task_id} {day} failed ({out.returncode}):\n" + "\n".join(errors[-40:]))
        print(f"[{mode} {day}] " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in seconds.items()), flush=True)
    return seconds


def table(figures: dict) -> str:
    modes = figures["modes"]
    lines = ["| task | spark-submit s | Spark Connect client s | client, forked by the task server s | "
             "spark-submit / forked |", "| --- | ---: | ---: | ---: | ---: |"]
    rows = [(t.task_id, [statistics.median(modes[m][t.task_id]) for m in MODES]) for t in ETL_TASKS]
    rows.append(("median task", [statistics.median(v for vs in modes[m].values() for v in vs) for m in MODES]))
    for name, (a, b, c) in rows:
        lines.append(f"| {name} | {a:.2f} | {b:.2f} | {c:.2f} | {a / c:.1f}x |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--events-per-day", type=int, default=200)
    ap.add_argument("--port", type=int, default=15012)
    ap.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    args = ap.parse_args()
    from pipelines.core.config import SparkConfig
    from pipelines.etl import spark_server
    from pipelines.nightly import task_server

    work = Path(tempfile.mkdtemp(prefix="seqrep-bench-tasks-"))
    days = [START + timedelta(days=i) for i in range(args.days)]
    env = {**{k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SEQREP_CONFIG", "SEQREP_WAREHOUSE")},
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,  # as the DAG's workers have
           "SPARK_LOCAL_IP": "127.0.0.1", "MALLOC_ARENA_MAX": "2"}
    try:
        subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--out", str(work / "logs"),
                        "--start", str(START), "--days", str(args.days), "--events-per-day", str(args.events_per_day),
                        "--users", "100", "--items-per-domain", "100"], env=env, check=True, capture_output=True)
        cfg = work / "seqrep.yaml"
        cfg.write_text(f'spark: {{shuffle_partitions: 2, driver_memory: 2g}}\n'
                       f'ingest: {{source: synthetic, input: "{work}/logs/dt={{date}}"}}\n')
        modes = {"spark-submit": run_mode("spark-submit", days, work, cfg, env)}
        starts = {}
        for mode in ("connect", "task-server"):  # each on a fresh Spark Connect server: both start cold
            t0 = time.perf_counter()
            spark_server.start(SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="2g"), args.port)
            starts["spark_connect"] = time.perf_counter() - t0
            try:
                connect = {**env, "SPARK_REMOTE": spark_server.url(args.port)}
                if mode == "connect":
                    modes[mode] = run_mode(mode, days, work, cfg, connect)
                    continue
                t0 = time.perf_counter()
                sock, _, _ = task_server.start(work / "tasks" / "seqrep.sock")
                starts["task_server"] = time.perf_counter() - t0
                try:
                    modes[mode] = run_mode(mode, days, work, cfg, {**connect, task_server.SERVER_ENV: str(sock)})
                finally:
                    task_server.stop(sock)
            finally:
                spark_server.stop(args.port)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {"days": args.days, "events_per_day": args.events_per_day, "server_start_s": starts["spark_connect"],
               "task_server_start_s": starts["task_server"], "modes": modes}
    text = table(figures)
    print(f"\n{text}\n\nServer starts (once per mode): Spark Connect {starts['spark_connect']:.1f} s, "
          f"task server {starts['task_server']:.1f} s; "
          f"{args.days} days of {args.events_per_day} events; medians over the days.")
    if args.record:
        from results import record  # bench/results.py (the script's folder is on the path)

        record(args.record, figures, text)


if __name__ == "__main__":
    main()
