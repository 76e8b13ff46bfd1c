"""The ETL's stages by name, in the order they run: a new stage is one module plus one line here.

Each stage is ``run(spark, cfg, days, wh=None)``: it reads its inputs for ``days`` and replaces its
output partitions for them, with a manifest per day, in the run of ``wh`` (or a run of its own). A range runs each stage once over all
its days (one Spark application, one pass per stage) and gives the same rows as running the days
one by one. ``pipelines/nightly/etl.py`` runs them with their quality gates.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Callable

from pipelines.core.config import Config
from pipelines.etl import clean, cross_domain, graphs, sequences, sessionize

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pipelines.core.warehouse import Warehouse

Stage = Callable[["SparkSession", Config, list[date], "Warehouse | None"], None]
STAGES: dict[str, Stage] = {
    "clean": clean.run,
    "sessionize": sessionize.run,
    "sequences": sequences.run,
    "graphs": graphs.run,
    "cross_domain": cross_domain.run,  # only with ``cross_domain.pairs`` set (``configured``)
}


def configured(cfg: Config) -> list[str]:
    """The stages ``cfg`` has work for, in order: every stage, ``cross_domain`` only with pairs."""
    return [s for s in STAGES if s != "cross_domain" or cfg.cross_domain.pairs]
