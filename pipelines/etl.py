"""The ETL: clean -> sessionize -> sequences -> graphs for a day or a range of days.

A range runs each stage once over all its days (one Spark application, one pass per stage)
and gives the same rows as running the days one by one. With ``gates.enabled`` the raw gate
runs before clean and each stage's gate after it (``pipelines/gates.py``): a failed gate stops
the run before the next stage reads the bad output.
"""

from __future__ import annotations

import time
from datetime import date
from typing import TYPE_CHECKING, Callable

from pipelines import clean, graphs, sequences, sessionize
from pipelines.config import Config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Stage = Callable[["SparkSession", Config, list[date]], None]
STAGES: dict[str, Stage] = {
    "clean": clean.run,
    "sessionize": sessionize.run,
    "sequences": sequences.run,
    "graphs": graphs.run,
}


def run(
    spark: "SparkSession", cfg: Config, days: list[date], stages: list[str] | None = None,
    progress: Callable[[str, float], None] | None = None, gates: bool | None = None,
) -> None:
    """Run ``stages`` (default: all, in order) for ``days``; ``progress(step, seconds)`` after each.

    ``gates`` (default ``cfg.gates.enabled``) runs the quality gates around the stages.
    """
    from pipelines.gates import AFTER_STAGE, run_gate

    gates = cfg.gates.enabled if gates is None else gates

    def step(name: str, fn: Callable[[], object]) -> None:
        t0 = time.perf_counter()
        fn()
        if progress is not None:
            progress(name, time.perf_counter() - t0)

    for name in stages or list(STAGES):
        if gates and name == "clean":
            step("gate raw", lambda: run_gate(spark, cfg, "raw", days))
        step(name, lambda: STAGES[name](spark, cfg, days))
        if gates:
            step(f"gate {AFTER_STAGE[name]}", lambda: run_gate(spark, cfg, AFTER_STAGE[name], days))
