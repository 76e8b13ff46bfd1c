"""The whole ETL's throughput on synthetic logs, Spark beside the DuckDB reference of its logic.

For each size (events), the script:

1. writes synthetic logs (``pipelines.etl.synthetic_logs``; users and items scale with the size);
2. runs the whole ETL with Spark on a fresh warehouse (ingest, then clean -> sessionize ->
   sequences -> graphs, each followed by its gate) and reports seconds per stage and events/s,
   sampling the memory of the whole process tree (Python + the Spark JVM) every 0.2 s for the peak;
3. runs the DuckDB reference of the same logic (``bench/etl_duckdb.py``: clean with quarantine
   reasons and dedup, sessionize, sequences as of each day, graphs) over the same raw events, on
   as many threads as cores, and reports Spark's clean-to-graphs seconds over DuckDB's (and the
   whole ETL's, ingest and gates included, over DuckDB's);
4. after the first run, compares the two engines' tables by an order-free digest (``etl_duckdb.compare``).

Each measurement is repeated ``--repeats`` times (one count, or one per size); medians are reported
(``summary``). Run: ``python bench/etl.py --sizes 1000000,10000000 --repeats 3`` (about 40 minutes
on 2 cores; ``--repeats 3,1`` runs the larger size once).
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
from pipelines.etl.spark import get_spark

import etl_duckdb  # bench/etl_duckdb.py (the script's folder is on the path)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000", help="comma-separated event counts")
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--repeats", default="3", help="runs per size: one count, or comma-separated, one per size")
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temp folder, removed after)")
    ap.add_argument("--json", dest="json_out", help="write the results here as JSON")
    ap.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    args = ap.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    repeats = [int(r) for r in args.repeats.split(",")]
    if len(repeats) == 1:
        repeats *= len(sizes)
    if len(repeats) != len(sizes) or min(repeats) < 1:
        ap.error(f"--repeats {args.repeats}: one count of at least 1, or one per size ({len(sizes)})")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="seqrep-bench-"))
    cfg = Config(warehouse=work / "wh")
    spark = get_spark(cfg.spark)
    try:
        results = [bench_size(spark, cfg, work, n, args.days, r) for n, r in zip(sizes, repeats)]
    finally:
        spark.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    figures = {"days": args.days, "repeats": repeats, "sizes": results}
    text = table(figures)
    print(f"\n{text}\n{notes(figures)}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([summary(r) for r in results], indent=2))
    if args.record:
        from results import record  # bench/results.py (the script's folder is on the path)

        record(args.record, figures, text)


def bench_size(spark, cfg: Config, work: Path, n: int, days: int, repeats: int) -> dict:
    """``repeats`` runs of Spark's whole ETL on ``n`` synthetic events over ``days`` days, each on a
    fresh warehouse, then the DuckDB reference (``bench/etl_duckdb.py``) over the same raw events:
    every run's seconds per stage and step and Spark's peak memory (``summary`` takes their
    medians); after the first run, every difference between the two engines' tables."""
    logs = work / f"logs-{n}"
    shutil.rmtree(logs, ignore_errors=True)
    write_logs(logs, synthetic_for(n, days))
    runs, duck_runs, peaks, peaks_files = [], [], [], []
    differences: list[str] | None = None
    threads = os.cpu_count() or 2
    for r in range(repeats):
        with PeakRSS() as mem:
            runs.append(run_etl(spark, cfg, logs))
        peaks.append(mem.peak)
        peaks_files.append(mem.peak_with_files)
        shutil.rmtree(work / "duck-out", ignore_errors=True)
        duck_runs.append(etl_duckdb.run_reference(cfg.warehouse, cfg, work / "duck-out", threads))
        if r == 0:
            differences = etl_duckdb.compare(cfg.warehouse, work / "duck-out", threads)
        total, logic, duck = sum(runs[-1].values()), spark_logic_s(runs[-1]), sum(duck_runs[-1].values())
        print(f"[{n:,} events, run {r + 1}] etl {total:.1f}s ({n / total:,.0f} events/s) "
              f"{ {k: round(v, 1) for k, v in runs[-1].items()} }; clean to graphs: spark {logic:.1f}s, "
              f"duckdb {duck:.1f}s { {k: round(v, 1) for k, v in duck_runs[-1].items()} }; peak memory "
              f"{mem.peak / 2**30:.2f} GiB (python {mem.peak_python / 2**30:.2f}, JVM {mem.peak_children / 2**30:.2f}; "
              f"{mem.peak_with_files / 2**30:.2f} with mapped files)", flush=True)
    shutil.rmtree(logs, ignore_errors=True)
    return {"events": n, "repeats": repeats, "runs_stage_s": runs, "duckdb_runs_step_s": duck_runs,
            "duckdb_threads": threads, "peak_bytes": peaks, "peak_with_files_bytes": peaks_files,
            "differences": differences}


def spark_logic_s(stages: dict[str, float]) -> float:
    """Spark's seconds for what the DuckDB reference does: clean, sessionize, sequences and graphs
    (not ingest, which the reference reads the output of, nor the gates)."""
    return sum(v for k, v in stages.items() if k != "ingest" and not k.startswith("gate"))


def summary(size: dict) -> dict:
    """Medians over the runs of one size (``bench_size``): ETL seconds per stage and in all, events/s,
    Spark's clean-to-graphs seconds, DuckDB's and their ratio; the peak memory (max over runs); the
    tables check."""
    runs = size["runs_stage_s"]
    total = statistics.median(sum(run.values()) for run in runs)
    logic = statistics.median(spark_logic_s(run) for run in runs)
    duck = statistics.median(sum(run.values()) for run in size["duckdb_runs_step_s"])
    return {
        "events": size["events"], "stages_s": {k: statistics.median(run[k] for run in runs) for k in runs[0]},
        "etl_s": total, "events_per_s": size["events"] / total, "spark_clean_to_graphs_s": logic,
        "duckdb_s": duck, "spark_over_duckdb": logic / duck, "etl_over_duckdb": total / duck,
        "peak_rss_gib": max(size["peak_bytes"]) / 2**30,
        "peak_rss_with_files_gib": max(size["peak_with_files_bytes"]) / 2**30,
        "repeats": size["repeats"], "same_tables": size["differences"] == [],
    }


def table(figures: dict) -> str:
    """The markdown table of bench/README.md, one row per size, from ``figures["sizes"]`` (``bench_size``)."""
    lines = ["| events | ETL s (median) | events/s | Spark clean to graphs s | DuckDB s | Spark/DuckDB "
             "| whole ETL/DuckDB | peak memory GiB (+ mapped files) | same tables | runs |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: |"]
    for r in map(summary, figures["sizes"]):
        lines.append(f"| {r['events']:,} | {r['etl_s']:.1f} | {r['events_per_s']:,.0f} | "
                     f"{r['spark_clean_to_graphs_s']:.1f} | {r['duckdb_s']:.1f} | {r['spark_over_duckdb']:.2f} | "
                     f"{r['etl_over_duckdb']:.2f} | {r['peak_rss_gib']:.2f} ({r['peak_rss_with_files_gib']:.2f}) | "
                     f"{'yes' if r['same_tables'] else 'NO'} | {r['repeats']} |")
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
    out += "stages (median s): " + "; ".join(
        f"{r['events']:,}: {json.dumps({k: round(v, 1) for k, v in r['stages_s'].items()})}" for r in results)
    for size in figures["sizes"]:
        for d in (size["differences"] or [])[:10]:
            out += f"\nDIFFER at {size['events']:,} events: {d}"
    return out


if __name__ == "__main__":
    main()
