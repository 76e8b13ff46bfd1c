"""Expectation builders and per-day numbers shared by the gates."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Callable

from pipelines.core.config import Config
from pipelines.core.warehouse import Warehouse
from pipelines.gates.check import CRITICAL, WARNING, Frame

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.expectations import Expectation
    from pyspark.sql import DataFrame, SparkSession


def read_table(spark: "SparkSession", wh: Warehouse, table: str, days: list[date]) -> "DataFrame":
    """The partitions of ``table`` for every day of ``days`` (a missing one is a clear error)."""
    from pipelines.etl.spark import read_paths

    return read_paths(spark, wh, wh.require_partitions(table, days, who="gate", hint="run the stage that writes it first"))


def columns(schema, extra: tuple[str, ...] = ()) -> list[tuple["Expectation", str]]:
    """Exactly these columns (schema drift fails), each of its Spark type."""
    from great_expectations import expectations as gxe

    names = [f.name for f in schema.fields] + list(extra)
    out: list[tuple[Expectation, str]] = [(gxe.ExpectTableColumnsToMatchSet(column_set=names, exact_match=True), CRITICAL)]
    for f in schema.fields:
        out.append((gxe.ExpectColumnValuesToBeOfType(column=f.name, type_=type(f.dataType).__name__), CRITICAL))
    return out


def not_null(*cols: str) -> list[tuple["Expectation", str]]:
    from great_expectations import expectations as gxe

    return [(gxe.ExpectColumnValuesToNotBeNull(column=c), CRITICAL) for c in cols]


def unique(name: str, df: "DataFrame", column: str) -> Frame:
    """Uniqueness of one column, checked on that column alone (GX's check otherwise shuffles whole rows)."""
    from great_expectations import expectations as gxe

    return Frame(name, df.select(column), [(gxe.ExpectColumnValuesToBeUnique(column=column), CRITICAL)])


def numbers_frame(rows: list[dict[str, Any]]) -> "pd.DataFrame":
    """Per-day numbers (counts from the data, numbers from the manifests): a row per day, so a
    pandas frame (a Spark one would cost a job per expectation for a handful of rows)."""
    import pandas as pd

    return pd.DataFrame(rows)


def accounting(name: str, rows: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> Frame:
    """Columns that must be equal in every row (counts from the data against the manifests)."""
    from great_expectations import expectations as gxe

    return Frame(name, numbers_frame(rows),
                 [(gxe.ExpectColumnPairValuesToBeEqual(column_A=a, column_B=b), CRITICAL) for a, b in pairs])


def row_counts(wh: Warehouse, table: str, days: list[date]) -> dict[date, int]:
    """Rows per day of ``table`` (``source=*/`` levels included) from the Parquet footers of the
    files Spark would read: exact, and no Spark job for a number the files already state."""
    import pyarrow.parquet as pq

    return {d: sum(pq.read_metadata(f).num_rows for f in wh.partition_files(table, d)) for d in days}


def drift(cfg: Config, stage: str, days: list[date], today: dict[date, dict[str, float]],
           bounds: dict[str, tuple[float | None, float | None]],
           previous: Callable[[date], dict[str, float]]) -> Frame | None:
    """Day-over-day change of some numbers, against the previous day (in the range, or ``previous(day)``)."""
    from great_expectations import expectations as gxe

    severity = CRITICAL if cfg.gates.drift == "fail" else WARNING
    rows = []
    for d in days:
        prev = today.get(d - timedelta(days=1)) or previous(d - timedelta(days=1))
        if not prev:
            continue
        row = {"dt": d.isoformat(), **today[d]}
        if prev.get("rows") and "rows" in today[d]:
            row["row_change"] = today[d]["rows"] / prev["rows"]
        rows.append(row)
    if not rows:
        return None
    df = numbers_frame(rows)
    exps = []
    for col, (lo, hi) in bounds.items():
        if col in df.columns:
            exps.append((gxe.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi), severity))
    return Frame(f"{stage} drift", df, exps) if exps else None


def manifest_numbers(wh: Warehouse, stage: str, d: date) -> dict[str, float]:
    """Rows out and the quarantined share of a stage's day, from its manifest (empty: none)."""
    m = wh.read_manifest(stage, f"dt={d.isoformat()}")
    if not m:
        return {}
    return {"rows": m["rows_out"], "quarantine_share": m["rows_quarantined"] / m["rows_in"] if m["rows_in"] else 0.0}


def vocab_max(spark: "SparkSession", wh: Warehouse, table: str, idx: str, last: date) -> int:
    """The largest index of a vocabulary as of ``last`` (0 when empty)."""
    from pyspark.sql import functions as F

    days = wh.days_upto(table, last)
    if not days:
        return 0
    from pipelines.etl.spark import read_partitions

    return read_partitions(spark, wh, table, days).agg(F.max(idx)).collect()[0][0] or 0
