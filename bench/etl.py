"""ETL throughput on synthetic logs, and Spark's sessionization beside DuckDB's on the same Parquet.

For each size (events), the script:

1. writes synthetic logs (``pipelines.etl.synthetic_logs``; users and items scale with the size);
2. runs the whole ETL with Spark (ingest -> clean -> sessionize -> sequences -> graphs) and
   reports seconds per stage and events/s;
3. runs the same sessionization and item-transition SQL (``sql/sessionize.sql``,
   ``sql/item_transitions.sql``) over the same clean Parquet on Spark and on DuckDB (both
   writing Parquet), checks that both engines give the same rows, and prints the time ratio;
4. samples the resident memory of the whole process tree (Python + the Spark JVM) every
   0.2 s and reports the peak.

Each measurement is repeated ``--repeats`` times; medians are reported (``summary``). Run:
``python bench/etl.py --sizes 1000000,10000000 --repeats 3`` (about 30 minutes on 2 cores).
``--record NAME`` also writes ``bench/results/NAME.json`` (``bench/results.py``) with every run's
seconds and peak memory per size (``bench_size``), from which ``table`` renders the table again
(``bench/check.py``); ``--json`` writes the medians (``summary``) of each size.
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
import threading
import time
from datetime import date
from pathlib import Path

import psutil


from pipelines.etl import ingest

from pipelines.nightly import etl
from pipelines.core.config import Config, SyntheticConfig
from pipelines.etl.sessionize import build_sessions
from pipelines.etl.spark import get_spark
from pipelines.core.sqlfiles import duckdb_sql, spark_sql
from pipelines.core.warehouse import Warehouse


def _pss(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) proportional set size of a process, from /proc (Linux).

    PSS, not RSS: when the JVM forks a helper process, the child shares the JVM's pages until
    it execs, and RSS would count those gigabytes twice.
    """
    anon = file = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss_Anon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith(("Pss_File:", "Pss_Shmem:")):
                file += int(line.split()[1]) * 1024
    return anon, file


class PeakRSS:
    """Peak memory of this process and its children (the Spark JVM), sampled every 0.2 s.

    ``peak`` counts anonymous memory (heaps, buffers: what the processes really hold);
    ``peak_with_files`` adds file-backed pages (memory-mapped shuffle and Parquet files, which
    the kernel can drop under pressure).
    """

    def __init__(self) -> None:
        self.peak = self.peak_with_files = self.peak_python = self.peak_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                own_anon, own_file = _pss(me.pid)
                kids = [_pss(c.pid) for c in me.children(recursive=True)]
                anon = own_anon + sum(k[0] for k in kids)
                self.peak = max(self.peak, anon)
                self.peak_with_files = max(self.peak_with_files, anon + own_file + sum(k[1] for k in kids))
                self.peak_python = max(self.peak_python, own_anon)
                self.peak_children = max(self.peak_children, anon - own_anon)
            except (psutil.Error, OSError):
                pass
            time.sleep(0.2)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def synthetic_for(n_events: int, days: int) -> SyntheticConfig:
    return SyntheticConfig(seed=11, start_date=date(2024, 1, 1), days=days, events_per_day=n_events // days,
                           users=max(1000, n_events // 50), items_per_domain=max(1000, n_events // 500))


def write_logs(out: Path, syn: SyntheticConfig, quiet: bool = False) -> None:
    """``seqrep generate`` of ``syn`` into ``out``, in a child process, so the generator's memory is
    not counted as the ETL's (every benchmark's synthetic logs come from here)."""
    subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--out", str(out),
                    "--start", syn.start_date.isoformat(), "--days", str(syn.days),
                    "--events-per-day", str(syn.events_per_day), "--users", str(syn.users),
                    "--items-per-domain", str(syn.items_per_domain), "--seed", str(syn.seed)],
                   check=True, stdout=subprocess.DEVNULL if quiet else None)


def run_etl(spark, cfg: Config, logs: Path) -> dict[str, float]:
    """The whole ETL on a fresh warehouse; seconds per stage."""
    shutil.rmtree(cfg.warehouse, ignore_errors=True)
    times: dict[str, float] = {}
    t = time.perf_counter()
    m = ingest.run(spark, cfg, source="synthetic", input_path=logs)
    times["ingest"] = time.perf_counter() - t
    days = [date.fromisoformat(d) for d in sorted(m["days"])]
    etl.run(spark, cfg, days, progress=lambda name, sec: times.__setitem__(name, sec))
    return times


def spark_sessions_and_edges(spark, cfg: Config, out: Path) -> float:
    """Sessionize the clean events and count item transitions with Spark; write both as Parquet."""
    from pyspark.sql import functions as F

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    events = spark.read.parquet(str(Warehouse(cfg.warehouse).table("clean/events")))
    build_sessions(spark, events, None, cfg).write.parquet(str(out / "sessions"))
    weight = F.create_map(*[F.lit(x) for kv in cfg.graphs.event_weights.items() for x in kv])[F.col("event_type")]
    spark.read.parquet(str(out / "sessions")).withColumn("weight", weight).createOrReplaceTempView("steps")
    spark_sql(spark, "item_transitions", drop_self_loops=True).write.parquet(str(out / "transitions"))
    return time.perf_counter() - t


def duckdb_sessions_and_edges(cfg: Config, out: Path, threads: int) -> float:
    """The same SQL text on DuckDB over the same clean Parquet."""
    import duckdb

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    clean = Warehouse(cfg.warehouse).table("clean/events")
    weights = ", ".join(f"'{k}': {v}" for k, v in cfg.graphs.event_weights.items())
    t = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute(f"""CREATE VIEW events AS SELECT *, epoch_us(ts) AS ts_us, 0 AS is_carry,
        CAST(NULL AS VARCHAR) AS carry_session_id, CAST(NULL AS INTEGER) AS carry_seq,
        CAST(NULL AS BIGINT) AS carry_start_us
        FROM read_parquet('{clean}/*/*.parquet', hive_partitioning = true)""")
    params = {"gap_us": int(cfg.sessionize.gap_minutes * 60_000_000), "max_events": cfg.sessionize.max_events}
    con.execute(f"COPY ({duckdb_sql('sessionize')}) TO '{out / 'sessions.parquet'}' (FORMAT parquet)", params)
    con.execute(f"""CREATE VIEW steps AS SELECT *, MAP {{{weights}}}[event_type] AS weight
                    FROM read_parquet('{out / 'sessions.parquet'}')""")
    con.execute(f"COPY ({duckdb_sql('item_transitions')}) TO '{out / 'transitions.parquet'}' (FORMAT parquet)",
                {"drop_self_loops": True})
    seconds = time.perf_counter() - t
    con.close()
    return seconds


def same_results(spark_out: Path, duck_out: Path) -> dict[str, object]:
    """Row counts and an order-free digest of (event, session, position, previous item) in both engines."""
    import duckdb

    con = duckdb.connect()
    digest = ("SELECT count(*), sum(hash(event_id, session_id, session_seq, prev_item_id)) FROM read_parquet('{}')")
    s = con.execute(digest.format(f"{spark_out}/sessions/*.parquet")).fetchall()[0]
    d = con.execute(digest.format(f"{duck_out}/sessions.parquet")).fetchall()[0]
    edges = "SELECT count(*), sum(count), sum(hash(src_item_id, dst_item_id, count)) FROM read_parquet('{}')"
    se = con.execute(edges.format(f"{spark_out}/transitions/*.parquet")).fetchall()[0]
    de = con.execute(edges.format(f"{duck_out}/transitions.parquet")).fetchall()[0]
    return {"sessions_equal": s == d, "edges_equal": se == de, "session_rows": s[0], "edges": se[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000", help="comma-separated event counts")
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temp folder, removed after)")
    ap.add_argument("--json", dest="json_out", help="write the results here as JSON")
    ap.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="seqrep-bench-"))
    cfg = Config(warehouse=work / "wh")
    spark = get_spark(cfg.spark)
    try:
        results = [bench_size(spark, cfg, work, n, args.days, args.repeats) for n in map(int, args.sizes.split(","))]
    finally:
        spark.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    figures = {"days": args.days, "repeats": args.repeats, "sizes": results}
    text = table(figures)
    print(f"\n{text}\n{notes(figures)}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([summary(r) for r in results], indent=2))
    if args.record:
        from results import record  # bench/results.py (the script's folder is on the path)

        record(args.record, figures, text)


def bench_size(spark, cfg: Config, work: Path, n: int, days: int, repeats: int) -> dict:
    """``repeats`` runs of the ETL on ``n`` synthetic events over ``days`` days, and the
    sessionize + edges comparison with DuckDB: every run's seconds and peak memory (``summary``
    takes their medians), and whether both engines gave the same rows."""
    logs = work / f"logs-{n}"
    shutil.rmtree(logs, ignore_errors=True)
    write_logs(logs, synthetic_for(n, days))
    runs, spark_sql_s, duck_s, peaks, peaks_files = [], [], [], [], []
    check = {}
    for r in range(repeats):
        with PeakRSS() as mem:
            runs.append(run_etl(spark, cfg, logs))
            spark_sql_s.append(spark_sessions_and_edges(spark, cfg, work / "spark-out"))
        peaks.append(mem.peak)
        peaks_files.append(mem.peak_with_files)
        duck_s.append(duckdb_sessions_and_edges(cfg, work / "duck-out", threads=os.cpu_count() or 2))
        if r == 0:
            check = same_results(work / "spark-out", work / "duck-out")
        total = sum(runs[-1].values())
        print(f"[{n:,} events, run {r + 1}] etl {total:.1f}s ({n / total:,.0f} events/s) "
              f"{ {k: round(v, 1) for k, v in runs[-1].items()} }; sessionize+edges spark {spark_sql_s[-1]:.1f}s "
              f"duckdb {duck_s[-1]:.1f}s; peak memory {mem.peak / 2**30:.2f} GiB (python {mem.peak_python / 2**30:.2f}, "
              f"JVM {mem.peak_children / 2**30:.2f}; {mem.peak_with_files / 2**30:.2f} with mapped files)", flush=True)
    shutil.rmtree(logs, ignore_errors=True)
    return {"events": n, "repeats": repeats, "runs_stage_s": runs, "spark_sessionize_edges_runs_s": spark_sql_s,
            "duckdb_sessionize_edges_runs_s": duck_s, "peak_bytes": peaks, "peak_with_files_bytes": peaks_files,
            **check}


def summary(size: dict) -> dict:
    """Medians over the runs of one size (``bench_size``): ETL seconds per stage and in all, events/s,
    both engines' seconds and their ratio; the peak memory (max over runs); the rows check."""
    runs = size["runs_stage_s"]
    total = statistics.median(sum(run.values()) for run in runs)
    spark_s, duck_s = (statistics.median(size[f"{k}_sessionize_edges_runs_s"]) for k in ("spark", "duckdb"))
    return {
        "events": size["events"], "stages_s": {k: statistics.median(run[k] for run in runs) for k in runs[0]},
        "etl_s": total, "events_per_s": size["events"] / total, "spark_sessionize_edges_s": spark_s,
        "duckdb_sessionize_edges_s": duck_s, "spark_over_duckdb": spark_s / duck_s,
        "peak_rss_gib": max(size["peak_bytes"]) / 2**30,
        "peak_rss_with_files_gib": max(size["peak_with_files_bytes"]) / 2**30,
        "repeats": size["repeats"],
        **{k: size[k] for k in ("sessions_equal", "edges_equal", "session_rows", "edges") if k in size},
    }


def table(figures: dict) -> str:
    """The markdown table of bench/README.md, one row per size, from ``figures["sizes"]`` (``bench_size``)."""
    lines = ["| events | ETL s (median) | events/s | Spark sessionize+edges s | DuckDB s | Spark/DuckDB "
             "| peak memory GiB (+ mapped files) | same rows |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"]
    for r in map(summary, figures["sizes"]):
        lines.append(f"| {r['events']:,} | {r['etl_s']:.1f} | {r['events_per_s']:,.0f} | "
                     f"{r['spark_sessionize_edges_s']:.1f} | {r['duckdb_sessionize_edges_s']:.1f} | "
                     f"{r['spark_over_duckdb']:.2f} | {r['peak_rss_gib']:.2f} ({r['peak_rss_with_files_gib']:.2f}) | "
                     f"{'yes' if r.get('sessions_equal') and r.get('edges_equal') else 'NO'} |")
    return "\n".join(lines)


def notes(figures: dict) -> str:
    """The lines printed under the table: the largest size's ETL time against the smallest's, and
    the median seconds per stage of each size."""
    results = [summary(r) for r in figures["sizes"]]
    out = ""
    if len(results) >= 2:
        a, b = results[0], results[-1]
        out = (f"\n{b['events']:,} vs {a['events']:,} events: ETL time x{b['etl_s'] / a['etl_s']:.1f} "
               f"for x{b['events'] / a['events']:.0f} the events\n")
    return out + "stages (median s): " + "; ".join(
        f"{r['events']:,}: {json.dumps({k: round(v, 1) for k, v in r['stages_s'].items()})}" for r in results)


if __name__ == "__main__":
    main()
