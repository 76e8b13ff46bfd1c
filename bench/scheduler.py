"""Per-task overhead of Airflow's scheduler path against ``dag.test()`` for the nightly DAG (issue 20),
and a screenshot of the DAG's grid in a real browser.

Both paths run the same nights of the same DAG with the same work: the ml-100k slice of
``tests/test_dag.py`` (the ratings of ``--days`` days from 1997-11-12, one Parquet log per day),
its test profile (SASRec, 3 epochs), Airflow's metadata in a throwaway PostgreSQL 15 cluster per path,
every Spark task a client of one Spark Connect server, each path with its own warehouse:

1. ``airflow dags test seqrep_nightly`` of each night in turn (what ``dag.test()`` runs: every task
   in that one process, no scheduler);
2. the api-server, scheduler and dag-processor as processes (``seqrep airflow``'s, LocalExecutor),
   the DAG unpaused and an ``airflow backfill create`` of the same nights, one run at a time.

From Postgres' ``task_instance`` rows, for every (night, task) of each path: its duration
(``end_date - start_date``) and its wait (``start_date`` minus the latest end of its upstream tasks,
or the run's start for the first task). A task's cost is wait + duration; the overhead per task of
the scheduler path is the median over (night, task) pairs of its cost minus the same task's cost
under ``dags test``, with the runs' wall times beside it. The work is the same, so the difference is
the scheduler's: queueing, a supervisor and a fresh interpreter per task, heartbeats.

``--screenshot PATH``: after the backfill, headless Chromium loads the DAG's page of the running
api-server (the simple auth manager's ``all admins`` mode, so no login) and saves its grid.

Run (about 10 minutes for 3 nights on 2 cores):
    python bench/scheduler.py --days 3 --record scheduler --screenshot docs/img/airflow-grid.png
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's throwaway Postgres (postgres.py) and ml-100k slice (ml_slice.py)
FIRST = date(1997, 11, 12)


def airflow(env: dict[str, str], *args: str, timeout: float = 1800) -> None:
    out = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"`airflow {' '.join(args[:3])}` failed:\n{(out.stdout + out.stderr)[-3000:]}")


def dags_test(env: dict[str, str], days: list[date], config: Path, wh: Path) -> float:
    """Path 1: ``airflow dags test`` of each night (its logical date ends the day it processes); the
    median seconds of a night's command (parsing the DAG included)."""
    seconds = []
    for day in days:
        end = datetime(day.year, day.month, day.day) + timedelta(days=1)
        conf = json.dumps({"warehouse": str(wh), "config": str(config), "driver_memory": "1g"})
        t = time.perf_counter()
        airflow(env, "dags", "test", "seqrep_nightly", end.isoformat() + "+00:00", "--conf", conf)
        seconds.append(time.perf_counter() - t)
        print(f"[dags test] {day}: {seconds[-1]:.0f}s", flush=True)
    return statistics.median(seconds)


def _runs(url: str, where: str) -> list[tuple]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.connect() as con:
        rows = con.execute(sqlalchemy.text(
            f"SELECT run_id, state FROM dag_run WHERE dag_id = 'seqrep_nightly' AND {where} ORDER BY logical_date")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def _wait(url: str, where: str, n: int, minutes: float) -> list[tuple]:
    """Poll until ``n`` runs matching ``where`` have ended; their (run_id, state)."""
    deadline, runs = time.monotonic() + minutes * 60, []
    while time.monotonic() < deadline:
        runs = _runs(url, where)
        if len(runs) >= n and all(s in ("success", "failed") for _, s in runs):
            return runs
        time.sleep(3)
    raise SystemExit(f"runs not finished after {minutes} min: {runs}")


def scheduled(env: dict[str, str], url: str, days: list[date], screenshot: Path | None) -> float:
    """Path 2: the processes, the DAG unpaused (its latest scheduled run, a day without a log, is
    let fail first so it does not overlap), then a backfill of ``days`` through the scheduler; the
    backfill's seconds per night (from ``backfill create`` until the last run ended, polled every 3 s)."""
    from pipelines.nightly import airflow_local

    port = int(env["AIRFLOW__API__PORT"])
    airflow_local.start(env, port)
    try:
        airflow(env, "dags", "reserialize")
        airflow(env, "dags", "unpause", "seqrep_nightly")
        _wait(url, "run_type = 'scheduled'", 1, 10)
        t = time.perf_counter()
        airflow(env, "backfill", "create", "--dag-id", "seqrep_nightly", "--from-date", str(days[0]),
                "--to-date", str(days[-1]), "--max-active-runs", "1", "--reprocess-behavior", "completed")
        runs = _wait(url, "run_type = 'backfill'", len(days), 20 * len(days))
        total = time.perf_counter() - t
        print(f"[scheduler] {len(days)} nights: {total:.0f}s, {runs}", flush=True)
        if screenshot:
            grid(port, screenshot)
    finally:
        airflow_local.stop(Path(env["AIRFLOW_HOME"]))
    return total / len(days)


def grid(port: int, path: Path) -> None:
    """Headless Chromium's screenshot of the DAG's page (its grid of runs and tasks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--window-size=1600,1000", "--virtual-time-budget=20000", f"--screenshot={path}",
                          f"http://127.0.0.1:{port}/dags/seqrep_nightly"], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0 or not path.is_file():
        raise SystemExit(f"chromium failed: {out.stderr[-2000:]}")
    print(f"[scheduler] screenshot: {path}", flush=True)


def task_costs(url: str, where: str) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, float]]:
    """run day -> task -> {duration, wait} in seconds, from Postgres (module docstring), and run day
    -> the run's wall time (its start to its last task's end)."""
    import sqlalchemy

    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["seqrep_nightly"]  # parsed here: no database read
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as con:
        rows = con.execute(sqlalchemy.text(
            "SELECT r.data_interval_start, r.start_date, t.task_id, t.start_date, t.end_date "
            "FROM task_instance t JOIN dag_run r ON r.dag_id = t.dag_id AND r.run_id = t.run_id "  # noqa: S608 (fixed text)
            f"WHERE r.dag_id = 'seqrep_nightly' AND r.{where} AND t.state = 'success'")).all()
    engine.dispose()
    tasks: dict[str, dict[str, dict[str, float]]] = {}
    ends = {(str(day.date()), task): end for day, _, task, _, end in rows}
    first: dict[str, datetime] = {}
    for day, run_start, task, start, end in rows:
        key = str(day.date())
        up = [ends[(key, u)] for u in dag.get_task(task).upstream_task_ids if (key, u) in ends]
        # `dags test` records its run's logical date as the run's start: its first task starts at once
        ready = max(up) if up else run_start if timedelta(0) <= start - run_start < timedelta(hours=1) else start
        first[key] = min(first.get(key, ready), ready)
        tasks.setdefault(key, {})[task] = {"duration": (end - start).total_seconds(),
                                           "wait": max(0.0, (start - ready).total_seconds())}
    walls = {key: (max(e for (k, _), e in ends.items() if k == key) - first[key]).total_seconds() for key in first}
    return tasks, walls


def measure(args: argparse.Namespace, work: Path) -> dict:
    """Both paths against one Postgres and one Spark Connect server; the raw figures."""
    import postgres

    from pipelines.core.config import SparkConfig
    from pipelines.etl import spark_server
    from pipelines.etl.processes import free_port
    from pipelines.nightly import airflow_local

    days = [FIRST + timedelta(days=i) for i in range(args.days)]
    from ml_slice import write_config, write_daily_logs

    logs = write_daily_logs(Path(args.data) / "ml-100k" / "u.data", days, work / "logs")
    config = write_config(work / "seqrep.yaml", logs)
    os.environ["SEQREP_CONFIG"] = str(config)  # the DAG's method groups, when task_costs parses it
    spark_port = free_port()
    spark_server.start(SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="2g"), spark_port)
    try:
        # a database per path: a backfill would otherwise take over the runs `dags test` made
        with postgres.cluster() as url_test, postgres.cluster() as url_scheduler:
            envs = {}
            for name, url in (("dags_test", url_test), ("scheduler", url_scheduler)):
                env = airflow_local.environment(work / f"airflow-{name}", config, work / f"wh-{name}", free_port())
                env.update({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url, "SEQREP_SPARK_REMOTE": spark_server.url(spark_port),
                            "SEQREP_START_DATE": "1997-01-01", "SEQREP_RETRIES": "0", "AIRFLOW__CORE__PARALLELISM": "2",
                            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"})
                airflow(env, "db", "migrate")
                airflow(env, "pools", "set", "gpu", "1", "torch tasks")
                envs[name] = env
            seconds = {"dags_test": dags_test(envs["dags_test"], days, config, work / "wh-dags-test"),
                       "scheduler": scheduled(envs["scheduler"], url_scheduler, days,
                                              Path(args.screenshot) if args.screenshot else None)}
            figures = {"days": [str(d) for d in days]}
            for name, url, where in (("dags_test", url_test, "run_type = 'manual'"),
                                     ("scheduler", url_scheduler, "run_type = 'backfill'")):
                tasks, walls = task_costs(url, where)
                figures[name] = {"tasks": tasks, "wall_s": walls, "command_s": seconds[name]}
    finally:
        spark_server.stop(spark_port)
    return figures


def table(figures: dict) -> str:
    """bench/README.md's table: per path, the median run wall, task duration and wait; the scheduler's
    overhead per task (median of paired differences in wait + duration)."""
    paths = ("dags_test", "scheduler")
    pairs = [(day, task) for day in figures["days"] for task in figures["dags_test"]["tasks"].get(day, {})
             if task in figures["scheduler"]["tasks"].get(day, {})]

    def cost(path: str, key: tuple[str, str]) -> float:
        c = figures[path]["tasks"][key[0]][key[1]]
        return c["wait"] + c["duration"]

    diff = statistics.median(cost("scheduler", k) - cost("dags_test", k) for k in pairs)
    lines = ["| path | nights | command s per night | run wall s (median) | tasks per night | task s (median) "
             "| wait before a task s (median) | overhead per task s (median, paired) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for path in paths:
        f = figures[path]
        ts = [c for day in f["tasks"].values() for c in day.values()]
        lines.append(f"| {'`airflow dags test`' if path == 'dags_test' else 'scheduler + LocalExecutor (backfill)'} | "
                     f"{len(f['wall_s'])} | {f['command_s']:.1f} | {statistics.median(f['wall_s'].values()):.1f} | "
                     f"{len(ts) // max(1, len(f['tasks']))} | {statistics.median(c['duration'] for c in ts):.1f} | "
                     f"{statistics.median(c['wait'] for c in ts):.1f} | "
                     f"{'-' if path == 'dags_test' else f'{diff:+.1f} ({len(pairs)} pairs)'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--data", default=os.environ.get("SEQREP_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--screenshot", help="save the DAG's grid here (PNG)")
    ap.add_argument("--workdir", help="scratch folder (default: a temp folder, removed after)")
    ap.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="seqrep-bench-scheduler-"))
    try:
        figures = measure(args, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    text = table(figures)
    print("\n" + text)
    if args.record:
        from results import record

        record(args.record, figures, text)


if __name__ == "__main__":
    main()
