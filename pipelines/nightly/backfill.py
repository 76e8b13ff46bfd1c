"""``seqrep backfill``: the nightly run of each day of a range, in order, without a scheduler.

Each day runs what its nightly run runs (ingest and the ETL with its gates, then every method's
steps, the cross-domain pair runs' too, then the report), so warm starts chain as they do nightly, and sees only data up to that
day: sequences as of the day, models trained on it, publish records of earlier days.
"""

from __future__ import annotations

import time
from datetime import date

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.errors import WarehouseError
from pipelines.core.warehouse import Warehouse
from pipelines.nightly.steps import DayOutcome, Echo, run_methods


def backfill(cfg: Config, days: list[date], methods: list[str] | None = None, *, etl: bool = True,
             echo: Echo = print) -> list[DayOutcome]:
    """The nightly run of each day in order (module docstring).

    ``etl``: ingest the day's log (``ingest.input``) and run the ETL with its gates first, as the
    DAG does; without it (a method added later) the ETL's partitions must already be there.
    Each day ends with its run report."""
    from pipelines.nightly.report import write_report

    from pipelines.modeling.pair_runs import pair_runs

    methods = list(methods or [*cfg.nightly.methods, *(run.name for run in pair_runs(cfg))])
    wh = Warehouse(cfg.warehouse)
    if not etl:
        missing = [d for d in days if not wh.has_partition(layout.SEQUENCES, d)]
        if missing:
            raise WarehouseError(f"no sequences for {', '.join(map(str, missing[:3]))}{'...' if len(missing) > 3 else ''} "
                                 f"in {wh.root}: backfill with the ETL (drop --method) or run `seqrep etl` first")
    outcomes = []
    for i, day in enumerate(days, 1):
        t0 = time.perf_counter()
        echo(f"[backfill] {day} ({i}/{len(days)})")
        if etl:
            run_etl(cfg, day)
        outcomes.append(run_methods(cfg, day, methods, echo=echo))
        write_report(cfg, day)
        echo(f"[backfill] {day} done in {time.perf_counter() - t0:.0f}s: published {outcomes[-1].published or 'nothing'}"
             + (f", blocked {sorted(outcomes[-1].blocked)}" if outcomes[-1].blocked else ""))
    return outcomes


def run_etl(cfg: Config, day: date) -> None:
    """Ingest the day's log and run the ETL with its gates, as the DAG's ETL tasks do."""
    from pipelines.etl import ingest
    from pipelines.etl.spark import get_spark
    from pipelines.nightly import etl

    spark = get_spark(cfg.spark)
    ingest.run(spark, cfg, day=day)
    etl.run(spark, cfg, [day])
