"""The gates by name: a new gate is one module (``frames(spark, cfg, days) -> list[Frame]``) plus
one line here. ``AFTER_STAGE`` names the gate that follows each ETL stage."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Callable

from pipelines.core.config import Config
from pipelines.core.errors import UsageError
from pipelines.gates import clean, embeddings, graphs, raw, sequences, sessions
from pipelines.gates.check import Frame, GateReport, record_gate, run_frames

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

GATES: dict[str, Callable[["SparkSession", Config, list[date]], list[Frame]]] = {
    "raw": raw.frames,
    "clean": clean.frames,
    "sessions": sessions.frames,
    "sequences": sequences.frames,
    "graphs": graphs.frames,
}
#: The gate that follows each ETL stage.
AFTER_STAGE = {"clean": "clean", "sessionize": "sessions", "sequences": "sequences", "graphs": "graphs"}


def run_gate(spark: "SparkSession", cfg: Config, gate: str, days: list[date], *, raise_on_failure: bool = True) -> GateReport:
    """Validate ``gate``'s tables for ``days``; write the results; raise ``GateFailed`` on a failure."""
    if gate not in GATES:
        raise UsageError(f"unknown gate {gate!r}; choose from {list(GATES)}")
    report = run_frames(gate, days, lambda: GATES[gate](spark, cfg, days))
    return record_gate(cfg, report, raise_on_failure=raise_on_failure)


def run_embeddings_gate(cfg: Config, method: str, day: date, *, raise_on_failure: bool = True) -> GateReport:
    """The gate on ``method``'s embedding tables as of ``day`` (``_gates/stage=embeddings/model=M/``)."""
    report = run_frames("embeddings", [day], lambda: embeddings.frames(cfg, method, day))
    return record_gate(cfg, report, f"model={method}", raise_on_failure=raise_on_failure)
