"""The gate engine: expectations run by Great Expectations, their outcomes, and the gate's record.

A gate builds :class:`Frame` s (a DataFrame and the expectations it must meet) and
:func:`validate` runs them; a :class:`GateReport` holds the outcomes and ``record_gate`` writes
``_gates/stage=S[/model=M]/dt=D.json`` (the results, as data) and ``.md`` (a readable table)
under the warehouse, and raises :class:`GateFailed` when a critical expectation failed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Any, Callable

from pipelines.core.errors import GateFailed
from pipelines.core.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.expectations import Expectation
    from pyspark.sql import DataFrame

__all__ = ["CRITICAL", "WARNING", "Frame", "GateFailed", "GateReport", "Outcome", "record_gate", "validate"]

CRITICAL, WARNING = "critical", "warning"


@dataclass
class Frame:
    """One DataFrame to validate and the expectations it must meet."""

    name: str
    df: "DataFrame | pd.DataFrame"  # a table (Spark) or per-day numbers (pandas)
    expectations: list[tuple["Expectation", str]]  # (expectation, severity)


@dataclass
class Outcome:
    frame: str
    expectation: str
    kwargs: dict[str, Any]
    severity: str
    success: bool
    unexpected: int | None = None
    rows: int | None = None
    observed: Any = None
    sample: list[Any] = field(default_factory=list)
    error: str | None = None  # the expectation could not be evaluated (e.g. an unreadable file)

    def line(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items() if k not in ("batch_id",))
        what = f"{self.frame}: {self.expectation}({args})"
        if self.success:
            return what
        detail = [f"could not be evaluated: {self.error}"] if self.error else []
        if self.unexpected is not None:
            detail.append(f"{self.unexpected:,} of {self.rows:,} rows" if self.rows is not None else f"{self.unexpected:,} rows")
        if self.observed is not None:
            detail.append(f"observed {self.observed!r}")
        if self.sample:
            detail.append(f"e.g. {self.sample[:5]!r}")
        return f"{what}: {'; '.join(detail)}"


@cache
def _gx():
    """One ephemeral GX context per process, with a pandas data source for the few-row frames of
    per-day numbers and the pandas tables of the embeddings gate."""
    import logging

    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    pandas = context.data_sources.add_pandas(name="seqrep-numbers").add_dataframe_asset(name="numbers")
    return gx, context, pandas.add_batch_definition_whole_dataframe("whole")


@cache
def _spark_batches():
    """The Spark data source of the context, for the tables (validated where they are, never
    collected); added on the first Spark frame only, since adding it gets (or starts) a Spark
    session: a gate of pandas frames alone starts no JVM."""
    _, context, _ = _gx()
    spark = context.data_sources.add_spark(name="seqrep", persist=False).add_dataframe_asset(name="frame")
    return spark.add_batch_definition_whole_dataframe("whole")


def validate(frames: list[Frame]) -> list[Outcome]:
    """Run every frame's expectations with GX.

    A first pass asks GX for pass/fail only, which it computes as a few bundled aggregations over
    the frame; only expectations that failed are run again for their counts and sample values.
    """
    import pandas as pd

    gx, _, pandas_batches = _gx()
    outcomes: list[Outcome] = []
    for frame in frames:
        for i, (exp, severity) in enumerate(frame.expectations):
            exp.meta = {**(exp.meta or {}), "seqrep_severity": severity, "seqrep_id": i}
        batches = pandas_batches if isinstance(frame.df, pd.DataFrame) else _spark_batches()
        batch = batches.get_batch(batch_parameters={"dataframe": frame.df})
        suite = gx.ExpectationSuite(name=f"seqrep-{frame.name}", expectations=[e for e, _ in frame.expectations])
        results = batch.validate(suite, result_format="BOOLEAN_ONLY").results
        passed = {r.expectation_config.meta["seqrep_id"] for r in results if r.success}
        failed = [e for i, (e, _) in enumerate(frame.expectations) if i not in passed]
        if failed:
            detail = batch.validate(gx.ExpectationSuite(name=f"seqrep-{frame.name}-failed", expectations=failed),
                                    result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5}).results
            results = [r for r in results if r.success] + list(detail)
        for res in results:  # not in the suite's order: each result carries its configuration
            conf, r = res.expectation_config, res.result or {}
            sample = r.get("partial_unexpected_list") or []
            details = r.get("details") or {}
            if not sample and details.get("unexpected_rows"):
                sample = [list(row.values()) if isinstance(row, dict) else row for row in details["unexpected_rows"]][:5]
            mismatch = details.get("mismatched")
            outcomes.append(Outcome(
                frame=frame.name, expectation="".join(w.title() for w in conf.type.split("_")),
                kwargs={k: v for k, v in conf.kwargs.items() if k not in ("result_format", "batch_id")},
                severity=(conf.meta or {}).get("seqrep_severity", CRITICAL), success=bool(res.success),
                unexpected=r.get("unexpected_count"), rows=r.get("element_count"),
                observed=mismatch if mismatch else r.get("observed_value"), sample=[_plain(x) for x in sample],
                error=_raised(res.exception_info),
            ))
    return outcomes


def _raised(info: dict | None) -> str | None:
    """The reason GX caught an error while evaluating an expectation, if it did. GX keeps it as one
    record, or as one record per metric it computed; a Spark error's reason (with the file it could
    not read) is the line with its error class, not py4j's first line."""
    records = [info] if info and "raised_exception" in info else list((info or {}).values())
    for record in records:
        if isinstance(record, dict) and record.get("raised_exception"):
            lines = [x.strip() for x in str(record.get("exception_message") or "").splitlines() if x.strip()]
            reason = next((x for x in lines if _SPARK_ERROR.search(x)), lines[0] if lines else "unknown error").lstrip(": ")
            return reason[:500]
    return None


_SPARK_ERROR = re.compile(r"\[[A-Z][A-Z_.]+\]")


def _plain(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x if isinstance(x, (int, float, str, bool, type(None))) else str(x)


@dataclass
class GateReport:
    gate: str
    days: list[date]
    outcomes: list[Outcome]
    seconds: float
    #: What the gate judged, recorded with its results (e.g. which run wrote the tables).
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == CRITICAL]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity != CRITICAL]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        span = str(self.days[0]) if len(self.days) == 1 else f"{self.days[0]}..{self.days[-1]}"
        head = (f"gate {self.gate} {span}: {'PASSED' if self.passed else 'FAILED'} — "
                f"{len(self.outcomes) - len(self.failures) - len(self.warnings)}/{len(self.outcomes)} expectations met, "
                f"{len(self.failures)} failed, {len(self.warnings)} warning(s) ({self.seconds:.1f}s)")
        lines = [head]
        lines += [f"  FAILED  {o.line()}" for o in self.failures]
        lines += [f"  WARNING {o.line()}" for o in self.warnings]
        return "\n".join(lines)

    def markdown(self) -> str:
        span = str(self.days[0]) if len(self.days) == 1 else f"{self.days[0]} .. {self.days[-1]}"
        out = [f"# Gate `{self.gate}` — {span}: {'passed' if self.passed else '**FAILED**'}", "",
               "| result | severity | table | expectation | detail |", "| --- | --- | --- | --- | --- |"]
        for o in self.outcomes:
            detail = o.line().split(": ", 2)[-1] if not o.success else ""
            args = ", ".join(f"{k}={v}" for k, v in o.kwargs.items())
            out.append(f"| {'ok' if o.success else 'FAIL'} | {o.severity} | {o.frame} | `{o.expectation}({args})` | "
                       f"{detail.replace('|', '/')} |")
        return "\n".join(out) + "\n"


def run_frames(gate: str, days: list[date], build: Callable[[], list[Frame]]) -> GateReport:
    """Build a gate's frames, validate them and time both."""
    t0 = time.perf_counter()
    report = GateReport(gate, days, validate(build()), 0.0)
    report.seconds = time.perf_counter() - t0
    return report


def record_gate(wh: Warehouse, report: GateReport, partition: str = "", *, raise_on_failure: bool = True) -> GateReport:
    """Write a gate's results as ``_gates/stage=S[/partition]/dt=D.json`` and ``.md``; raise on a failure."""
    wh.write_gate_result(report.gate, report.days, {
        "gate": report.gate, "days": [d.isoformat() for d in report.days], "passed": report.passed,
        "seconds": report.seconds, "outcomes": [o.__dict__ for o in report.outcomes], "context": report.context},
        report.markdown(), partition)
    if raise_on_failure and not report.passed:
        raise GateFailed(report.summary())
    return report
