"""Amazon cross-domain pairs of DisenCDR (https://github.com/cjx96/DisenCDR): two domains, shared users."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.core.config import IngestConfig
from pipelines.core.errors import InputError
from pipelines.etl.adapters.common import Parsed, to_events, file_order_ts, file_uri, need_file, number, read_text_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def read(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """An Amazon cross-domain pair (DisenCDR): folder ``A_B`` (domain A) and its sibling ``B_A``.

    Rows are ``user_idx item_idx 1`` without timestamps. Both domains are ingested; users are
    shared (``u<idx>``), items are per domain. Order = file order (``train.txt`` then
    ``test_original.txt``, the held-out item last), and ``ts`` = the configured base date plus the
    row's position in milliseconds: the time is synthetic and says only the order.
    """
    from pyspark.sql import functions as F

    if not path.is_dir() or "_" not in path.name:
        raise InputError(f"amazon-cdr: input {path} must be a pair folder named A_B (e.g. cloth_sport)")
    a, b = path.name.split("_", 1)
    sides = [(a, path)]
    if (path.parent / f"{b}_{a}").is_dir():
        sides.append((b, path.parent / f"{b}_{a}"))
    frames, files = [], []
    for dom, folder in sides:
        parts = [need_file(folder / "train.txt", "amazon-cdr")]
        if (folder / "test_original.txt").is_file():
            parts.append(folder / "test_original.txt")
        files += parts
        df = read_text_table(spark, parts, ["user", "item", "label"], "\t")
        df = file_order_ts(df, cfg.synthetic_base_date, {file_uri(p): i for i, p in enumerate(parts)})
        label, l_err = number(F.col("label"), "label")
        frames.append(to_events(df, user=F.concat(F.lit("u"), F.col("user")), item=F.col("item"),
                              event_type=F.lit("rate"), ts=F.col("ts"), domain=F.lit(dom), errors=[l_err]))
    events = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    notes = {"ts_synthetic": True, "order": "file order (train.txt, then test_original.txt)",
             "base_date": cfg.synthetic_base_date.isoformat(), "domains": [d for d, _ in sides]}
    return Parsed(events, None, files, notes)
