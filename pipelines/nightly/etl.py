"""The ETL of a day or a range of days: its stages in order, each followed by its quality gate.

``run(spark, cfg, days)`` runs ``clean -> sessionize -> sequences -> graphs`` (and
``cross_domain`` when ``cross_domain.pairs`` is set; ``pipelines/etl/stages.py``) over ``days`` in one run (``pipelines/core/runs.py``): every table
and manifest they write becomes visible together when the last one is done, or none does. With
``gates.enabled`` the raw gate runs before clean and each stage's gate after it
(``pipelines/gates/``), on the run's own output: a failed gate stops the run before the next
stage reads the bad output (what was written up to it is committed, for inspection). The nightly
DAG runs the same stages and gates as its own tasks, each task a run.
"""

from __future__ import annotations

import time
from datetime import date
from typing import TYPE_CHECKING, Callable

from pipelines.core.config import Config
from pipelines.core.runs import transaction
from pipelines.core.warehouse import Warehouse
from pipelines.etl.stages import STAGES, configured
from pipelines.gates.registry import AFTER_STAGE, run_gate

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def run(
    spark: "SparkSession", cfg: Config, days: list[date], stages: list[str] | None = None,
    progress: Callable[[str, float], None] | None = None, gates: bool | None = None,
) -> None:
    """Run ``stages`` (default: all that ``cfg`` configures, in order) for ``days``; ``progress(step, seconds)`` after each.

    ``gates`` (default ``cfg.gates.enabled``) runs the quality gates around the stages.
    """
    gates = cfg.gates.enabled if gates is None else gates

    def step(name: str, fn: Callable[[], object]) -> None:
        t0 = time.perf_counter()
        fn()
        if progress is not None:
            progress(name, time.perf_counter() - t0)

    with transaction(Warehouse(cfg.warehouse), "etl") as wh:
        for name in stages or configured(cfg):
            if gates and name == "clean":
                step("gate raw", lambda: run_gate(spark, cfg, "raw", days, wh=wh))
            step(name, lambda: STAGES[name](spark, cfg, days, wh))
            if gates:
                step(f"gate {AFTER_STAGE[name]}", lambda: run_gate(spark, cfg, AFTER_STAGE[name], days, wh=wh))
