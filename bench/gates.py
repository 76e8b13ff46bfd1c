"""Quality-gate overhead: each gate's time beside its stage's time, on one synthetic day.

Generates one day of synthetic logs (default 10M events), ingests it, then for each repeat runs
every ETL stage with gates off (timed) followed by its gate (timed), and prints the median
seconds and the gate's share of its stage (target: at most 20%). The raw gate is compared with
ingest. Run: ``python bench/gates.py --events 10000000 --repeats 3``. ``--record NAME`` also writes
``bench/results/NAME.json`` (``bench/results.py``) with every run's seconds per stage and gate, from
which ``table`` renders the table again (``bench/check.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path


from etl import synthetic_for, write_logs  # bench/etl.py (the script's folder is on the path)

from pipelines.nightly import etl as etl_stages
from pipelines.etl import ingest
from pipelines.core.config import Config
from pipelines.gates.registry import AFTER_STAGE, run_gate
from pipelines.etl.spark import get_spark


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--record", metavar="NAME", help="write the raw results to bench/results/NAME.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="seqrep-gates-"))
    logs = work / "logs"
    write_logs(logs, synthetic_for(args.events, days=1))
    cfg = Config(warehouse=work / "wh")
    spark = get_spark(cfg.spark)
    try:
        events, times = measure(spark, cfg, logs, args.repeats)
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = [["ingest", "raw"]] + [[s, AFTER_STAGE[s]] for s in etl_stages.STAGES]
    figures = {"events": events, "repeats": args.repeats, "rows": rows, "runs_s": times}
    text = table(figures)
    print(f"\n{events:,} events in one day, median of {args.repeats} run(s)\n\n{text}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"events": events, "median_s": medians(times), "runs": times},
                                                  indent=2))
    if args.record:
        from results import record  # bench/results.py (the script's folder is on the path)

        record(args.record, figures, text)


def measure(spark, cfg: Config, logs: Path, repeats: int) -> tuple[int, dict[str, list[float]]]:
    """Ingest the one day under ``logs``, then every stage with gates off followed by its gate, ``repeats``
    times: the events ingested and every run's seconds, by stage and by ``gate <name>``."""
    day = date.fromisoformat(next(logs.glob("dt=*")).name[3:])
    times: dict[str, list[float]] = {}
    for r in range(repeats):
        shutil.rmtree(cfg.warehouse, ignore_errors=True)
        t = time.perf_counter()
        m = ingest.run(spark, cfg, source="synthetic", input_path=logs / f"dt={day}", day=day)
        times.setdefault("ingest", []).append(time.perf_counter() - t)
        t = time.perf_counter()
        run_gate(spark, cfg, "raw", [day])
        times.setdefault("gate raw", []).append(time.perf_counter() - t)
        for stage in etl_stages.STAGES:
            t = time.perf_counter()
            etl_stages.run(spark, cfg, [day], [stage], gates=False)
            times.setdefault(stage, []).append(time.perf_counter() - t)
            t = time.perf_counter()
            report = run_gate(spark, cfg, AFTER_STAGE[stage], [day])
            times.setdefault(f"gate {AFTER_STAGE[stage]}", []).append(time.perf_counter() - t)
            assert report.passed
        print(f"[run {r + 1}] " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()), flush=True)
    return m["rows_in"], times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    """The median seconds of each stage and gate over the runs."""
    return {k: statistics.median(v) for k, v in times.items()}


def table(figures: dict) -> str:
    """The markdown table of the module docstring, from ``figures``: ``rows`` ([stage, gate] in order)
    and ``runs_s`` (every run's seconds by stage and by ``gate <name>``); the last row sums the medians."""
    med = medians(figures["runs_s"])
    lines = ["| stage | stage s | gate | gate s | gate / stage |", "| --- | ---: | --- | ---: | ---: |"]
    for stage, gate in figures["rows"]:
        lines.append(f"| {stage} | {med[stage]:.1f} | {gate} | {med['gate ' + gate]:.1f} "
                     f"| {med['gate ' + gate] / med[stage]:.0%} |")
    total_stage = sum(med[s] for s, _ in figures["rows"])
    total_gate = sum(med["gate " + g] for _, g in figures["rows"])
    lines.append(f"| all | {total_stage:.1f} | all | {total_gate:.1f} | {total_gate / total_stage:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
