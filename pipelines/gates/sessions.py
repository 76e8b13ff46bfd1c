"""Gate ``sessions``: session ids present, 1 <= position <= max events, start <= time, gaps
within the gap rule, a predecessor exactly when not first, rows = clean rows (event ids were
checked unique by the clean gate; sessionize keeps one row per clean event)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.warehouse import Warehouse
from pipelines.gates.check import CRITICAL, Frame
from pipelines.gates.expect import accounting, columns, not_null, read_table, row_counts

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def frames(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse) -> list[Frame]:
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    from pipelines.core.schema import SESSION_EVENT

    s = read_table(spark, wh, layout.SESSIONS, days)
    gap_s = cfg.sessionize.gap_minutes * 60
    checked = s.withColumn("first_xor_prev", (F.col("session_seq") == 1) == F.col("prev_item_id").isNull())
    rows = [{"dt": d.isoformat(), "session_rows": n, "clean_rows": c}
            for (d, n), c in zip(row_counts(wh, layout.SESSIONS, days).items(),
                                 row_counts(wh, layout.CLEAN_EVENTS, days).values())]
    return [
        Frame(layout.SESSIONS, checked, [
            *columns(SESSION_EVENT, extra=("first_xor_prev",)),
            *not_null("session_id", "session_seq", "session_start", "event_id"),
            (gxe.ExpectColumnValuesToBeBetween(column="session_seq", min_value=1, max_value=cfg.sessionize.max_events), CRITICAL),
            (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="ts", column_B="session_start", or_equal=True), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="gap_s", min_value=0, max_value=gap_s), CRITICAL),
            (gxe.ExpectColumnValuesToBeInSet(column="first_xor_prev", value_set=[True]), CRITICAL),
        ]),
        accounting("sessions accounting", rows, [("session_rows", "clean_rows")]),
    ]
