"""The logs of ``seqrep generate`` (``pipelines/etl/synthetic_logs.py``), read by the parquet adapter."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.core.config import IngestConfig
from pipelines.etl.adapters import parquet
from pipelines.etl.adapters.common import Parsed

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def read(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """Logs of the synthetic generator (``seqrep generate``), read by the parquet adapter.

    ``path`` is the generator's output folder or one day's folder in it; its item metadata is
    read from the output folder's ``_items``.
    """
    from pipelines.etl.synthetic_logs import SYNTHETIC_COLUMNS, SYNTHETIC_EVENT_TYPES

    root = path if (path / "_items").is_dir() else path.parent
    items = cfg.items or (str(root / "_items") if (root / "_items").is_dir() else None)
    mapped = cfg.model_copy(update={"columns": SYNTHETIC_COLUMNS, "ts_unit": "ms",
                                    "event_type_map": SYNTHETIC_EVENT_TYPES, "items": items})
    parsed = parquet.read(spark, path, mapped)
    parsed.notes["generator"] = "pipelines.etl.synthetic_logs"
    return parsed
