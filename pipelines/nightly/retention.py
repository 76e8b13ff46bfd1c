"""``seqrep retention``: drop the partitions older than each table family's window.

``retention.<family>_days = N`` keeps the run's day and the ``N - 1`` days before it; older
``dt=`` partitions of the family's tables are dropped, each in one rename out of the warehouse
(under the exclusive read lock, so no query sees a table lose a day mid-read) and then deleted.
Vocabularies are never dropped: their indexes are the rows of every model. The day's record
``_manifests/stage=retention/dt=D.json`` lists what went (partitions, days, bytes per family),
and the run report shows it.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

from pipelines.core import locks
from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.warehouse import Warehouse


def family_tables(wh: Warehouse) -> dict[str, list[str]]:
    """The tables of each family (``retention.<family>_days``), as they exist in ``wh``."""
    def under(base: str, key: str) -> list[str]:
        folder = wh.table(base)
        return sorted(f"{base}/{p.name}" for p in folder.glob(f"{key}=*") if p.is_dir()) if folder.is_dir() else []

    return {
        "raw": under(layout.RAW_EVENTS, "source"),
        "clean": [layout.CLEAN_EVENTS],
        "quarantine": [layout.QUARANTINE_EVENTS],
        "sessions": [layout.SESSIONS],
        "sequences": [layout.SEQUENCES, layout.SPLITS],
        "graphs": [layout.ITEM_TRANSITIONS, layout.USER_ITEM, layout.ITEM_NODES, layout.USER_NODES],
        "cross_domain": [t for base in (layout.CROSS_DOMAIN_USERS, layout.CROSS_DOMAIN_SEQUENCES,
                                        layout.CROSS_DOMAIN_SPLITS) for t in under(base, "pair")],
        "embeddings": [t for base in (layout.USER_EMBEDDINGS, layout.ITEM_EMBEDDINGS, layout.ITEM_INDEX)
                       for t in under(base, "model")],
        "reports": [layout.REPORTS],
    }


def expired(wh: Warehouse, cfg: Config, day: date, tables: dict[str, list[str]] | None = None) -> dict[str, list[Path]]:
    """The partition folders each family would drop as of ``day`` (of ``tables``, default all)."""
    windows = cfg.retention.model_dump()
    out: dict[str, list[Path]] = {}
    for family, names in (tables or family_tables(wh)).items():
        keep = windows[f"{family}_days"]
        if keep is None:
            continue
        cutoff = day - timedelta(days=keep - 1)
        out[family] = [wh.table(t) / f"dt={d.isoformat()}" for t in names for d in wh.partition_dates(t) if d < cutoff]
    return out


def apply(cfg: Config, day: date, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Drop what ``expired`` lists (module docstring); returns the day's retention record."""
    wh = Warehouse(cfg.warehouse)
    record: dict[str, Any] = {"stage": "retention", "dt": day.isoformat(),
                              "windows": {k: v for k, v in cfg.retention.model_dump().items() if v is not None},
                              "dropped": {}}
    with ExitStack() as stack:
        stack.enter_context(locks.writer(wh.root, "etl", f"seqrep retention {day}"))
        tables = family_tables(wh)
        methods = sorted({Path(t).name.removeprefix("model=").split(".", 1)[0] for t in tables["embeddings"]})
        for method in methods:
            stack.enter_context(locks.writer(wh.root, f"model={method}", f"seqrep retention {day}"))
        for family, folders in expired(wh, cfg, day, tables).items():
            if not folders:
                continue
            size = sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())
            trash = wh.staging_dir()
            trash.mkdir(parents=True)
            with locks.reading(wh.root, exclusive=True):
                for n, folder in enumerate(folders):
                    os.rename(folder, trash / str(n))
            shutil.rmtree(trash, ignore_errors=True)
            days = sorted({f.name.removeprefix("dt=") for f in folders})
            record["dropped"][family] = {"partitions": len(folders), "bytes": size, "first": days[0], "last": days[-1],
                                         "paths": [str(f.relative_to(wh.root)) for f in folders]}
            echo(f"retention {day}: {family}: dropped {len(folders)} partition(s) of {days[0]}..{days[-1]} ({size:,} bytes)")
        wh.write_manifest("retention", f"dt={day.isoformat()}", record)
    if not record["dropped"]:
        echo(f"retention {day}: nothing past its window")
    return record


def dropped_partitions(wh: Warehouse) -> set[str]:
    """Every partition retention dropped (``table/dt=D``), from its records: ``seqrep doctor``
    does not report their manifests' outputs as missing."""
    folder = wh.root / layout.MANIFESTS / "stage=retention"
    return {p for path in sorted(folder.glob("dt=*.json")) for d in json.loads(path.read_text())["dropped"].values()
            for p in d["paths"]}
