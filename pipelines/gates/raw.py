"""Gate ``raw``: the canonical columns and types (extra, missing or renamed columns fail), event
ids present, rows = what ingest wrote (its manifests), and the day-over-day row change."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.errors import WarehouseError
from pipelines.core.warehouse import Warehouse
from pipelines.gates.check import Frame
from pipelines.gates.expect import accounting, columns, drift, not_null, row_counts

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def frames(spark: "SparkSession", cfg: Config, days: list[date], wh: Warehouse) -> list[Frame]:
    from pyspark.sql.types import StringType, StructField

    from pipelines.core.schema import EVENT
    from pipelines.etl.clean import read_raw

    paths = wh.raw_paths(days)
    if not paths:
        raise WarehouseError(f"gate raw: no raw events for {days[0]}..{days[-1]}; run ingest first")
    schema = EVENT.__class__([*EVENT.fields[:-1], StructField("parse_error", StringType()), EVENT.fields[-1]])
    out = [Frame(layout.RAW_EVENTS, read_raw(spark, wh, days),
                 [*columns(schema, extra=("source",)), *not_null("event_id", "dt")])]
    # Rows = what ingest wrote, by source and day (bulk manifests list their days).
    # Every (source, day) partition, empty ones included.
    sources = sorted({p.split("source=")[1].split("/")[0] for p in paths})
    counted = {(source, d): n for source in sources
               for d, n in row_counts(wh, f"{layout.RAW_EVENTS}/source={source}", days).items()
               if wh.has_partition(f"{layout.RAW_EVENTS}/source={source}", d)}
    rows = []
    bulk = {source: wh.read_manifest("ingest", f"source={source}") for source in sources}  # read once, not per day
    totals: dict[date, dict[str, float]] = {d: {"rows": 0.0} for d in days}
    for (source, d), n in sorted(counted.items()):
        m = wh.read_manifest("ingest", f"source={source}/dt={d.isoformat()}") or bulk[source]
        written = (m or {}).get("days", {}).get(d.isoformat(), {}).get("rows", -1)
        rows.append({"source": source, "dt": d.isoformat(), "rows": n, "ingested": int(written)})
        totals[d]["rows"] += n
    out.append(accounting("raw accounting", rows, [("rows", "ingested")]))

    def previous(d: date) -> dict[str, float]:
        return {"rows": float(sum(row_counts(wh, layout.RAW_EVENTS, [d]).values()))} if wh.raw_paths([d]) else {}

    change = drift(cfg, "raw", days, totals,
                   {"row_change": (1 / cfg.gates.max_row_change, cfg.gates.max_row_change)}, previous)
    return out + ([change] if change else [])
