"""The gates by name: a new gate is one module (``frames(spark, cfg, days) -> list[Frame]``) plus
one line here. ``AFTER_STAGE`` names the gate that follows each ETL stage."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Callable

from pipelines.core.config import Config
from pipelines.core.errors import UsageError
from pipelines.core.warehouse import Warehouse
from pipelines.gates import clean, cross_domain, embeddings, graphs, raw, sequences, sessions
from pipelines.gates.check import Frame, GateReport, record_gate, run_frames

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

GATES: dict[str, Callable[["SparkSession", Config, list[date], Warehouse], list[Frame]]] = {
    "raw": raw.frames,
    "clean": clean.frames,
    "sessions": sessions.frames,
    "sequences": sequences.frames,
    "graphs": graphs.frames,
    "cross_domain": cross_domain.frames,
}
#: The gate that follows each ETL stage.
AFTER_STAGE = {"clean": "clean", "sessionize": "sessions", "sequences": "sequences", "graphs": "graphs",
               "cross_domain": "cross_domain"}


def run_gate(spark: "SparkSession", cfg: Config, gate: str, days: list[date], *, wh: Warehouse | None = None,
             raise_on_failure: bool = True) -> GateReport:
    """Validate ``gate``'s tables for ``days`` (as the run of ``wh`` sees them, when given); write
    the results; raise ``GateFailed`` on a failure."""
    if gate not in GATES:
        raise UsageError(f"unknown gate {gate!r}; choose from {list(GATES)}")
    wh = wh or Warehouse(cfg.warehouse)
    report = run_frames(gate, days, lambda: GATES[gate](spark, cfg, days, wh))
    return record_gate(wh, report, raise_on_failure=raise_on_failure)


def run_embeddings_gate(cfg: Config, method: str, day: date, version: str, *, wh: Warehouse | None = None,
                        raise_on_failure: bool = True) -> GateReport:
    """The gate on a version's embedding tables as of ``day`` (``_gates/stage=embeddings/model=M/version=V/``)."""
    wh = wh or Warehouse(cfg.warehouse)
    report = run_frames("embeddings", [day], lambda: embeddings.frames(cfg, method, day, version, wh))
    # Which inference it judged: publish gates again when the tables were written since.
    report.context = {"infer_run": (wh.read_manifest("infer", wh.infer_key(method, day, version)) or {}).get("run")}
    return record_gate(wh, report, embeddings_partition(method, version), raise_on_failure=raise_on_failure)


def embeddings_partition(method: str, version: str) -> str:
    """Where the embeddings gate of a version keeps its results, under ``_gates/stage=embeddings``."""
    return f"model={method}/version={version}"
