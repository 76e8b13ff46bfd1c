"""Gate ``clean``: columns and types, ids present (not null, not blank), event types allowed,
times inside the partition's day, event_id unique, values finite and >= 0, quarantine reasons
known, rows in = clean + quarantined (the manifest against a fresh count of the raw rows), and
drift of the row count and the quarantined share."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.warehouse import Warehouse
from pipelines.gates.check import CRITICAL, Frame
from pipelines.gates.expect import accounting, columns, drift, manifest_numbers, not_null, read_table, row_counts, unique

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def frames(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse) -> list[Frame]:
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    from pipelines.core.schema import EVENT
    from pipelines.etl.clean import BLANK, REASONS

    clean = read_table(spark, wh, layout.CLEAN_EVENTS, days)
    start, end = F.to_timestamp(F.col("dt")), F.to_timestamp(F.date_add(F.col("dt"), 1))
    checked = clean.withColumn("in_day", (F.col("ts") >= start) & (F.col("ts") < end)).withColumn(
        "ids_present", ~(F.col("user_id").rlike(BLANK) | F.col("item_id").rlike(BLANK) | F.col("domain").rlike(BLANK))
    ).withColumn("value_finite", F.col("value").isNull() | ~(F.isnan("value") | (F.abs("value") == float("inf"))))
    out = [
        Frame(layout.CLEAN_EVENTS, checked, [
            *columns(EVENT, extra=("in_day", "ids_present", "value_finite")),
            *not_null("event_id", "user_id", "item_id", "event_type", "ts", "domain", "dt"),
            (gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(cfg.clean.event_types)), CRITICAL),
            *[(gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[True]), CRITICAL)
              for c in ("in_day", "ids_present", "value_finite")],
            (gxe.ExpectColumnValuesToBeBetween(column="value", min_value=0), CRITICAL),
            (gxe.ExpectColumnValueLengthsToBeBetween(column="user_id", min_value=1), CRITICAL),
            (gxe.ExpectColumnValueLengthsToBeBetween(column="item_id", min_value=1), CRITICAL),
        ]),
        unique(layout.CLEAN_EVENTS, clean, "event_id"),
        Frame(layout.QUARANTINE_EVENTS, read_table(spark, wh, layout.QUARANTINE_EVENTS, days), [
            (gxe.ExpectColumnValuesToNotBeNull(column="reason"), CRITICAL),
            (gxe.ExpectColumnValuesToBeInSet(column="reason", value_set=list(REASONS)), CRITICAL),
        ]),
    ]
    raw_n, clean_n, q_n = (row_counts(wh, t, days)
                           for t in (layout.RAW_EVENTS, layout.CLEAN_EVENTS, layout.QUARANTINE_EVENTS))
    rows, numbers = [], {}
    for d in days:
        m = wh.read_manifest("clean", f"dt={d.isoformat()}") or {}
        rows.append({"dt": d.isoformat(), "raw_rows": raw_n[d], "rows_in": m.get("rows_in", -1),
                     "clean_rows": clean_n[d], "rows_out": m.get("rows_out", -1), "quarantined_rows": q_n[d],
                     "rows_quarantined": m.get("rows_quarantined", -1), "out_plus_quarantined": clean_n[d] + q_n[d]})
        numbers[d] = {"rows": float(clean_n[d]), "quarantine_share": q_n[d] / raw_n[d] if raw_n[d] else 0.0}
    out.append(accounting("clean accounting", rows, [
        ("raw_rows", "rows_in"), ("clean_rows", "rows_out"), ("quarantined_rows", "rows_quarantined"),
        ("raw_rows", "out_plus_quarantined")]))
    change = drift(cfg, "clean", days, numbers, {
        "row_change": (1 / cfg.gates.max_row_change, cfg.gates.max_row_change),
        "quarantine_share": (None, cfg.gates.max_quarantine_share)}, lambda d: manifest_numbers(wh, "clean", d))
    return out + ([change] if change else [])
