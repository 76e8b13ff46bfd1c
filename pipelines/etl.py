"""The ETL: clean -> sessionize -> sequences -> graphs for a day or a range of days.

A range runs each stage once over all its days (one Spark application, one pass per stage)
and gives the same rows as running the days one by one.
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
    progress: Callable[[str, float], None] | None = None,
) -> None:
    """Run ``stages`` (default: all, in order) for ``days``; ``progress(stage, seconds)`` after each."""
    for name in stages or list(STAGES):
        t0 = time.perf_counter()
        STAGES[name](spark, cfg, days)
        if progress is not None:
            progress(name, time.perf_counter() - t0)
