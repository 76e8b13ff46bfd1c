"""The warehouse: a directory of Hive-partitioned Parquet tables, and how stages write to it.

Layout (``table/dt=YYYY-MM-DD/part-*.parquet``)::

    raw/events/source=S/dt=D        canonical events as ingested
    items/source=S                  item metadata (title, category, tags, text), keyed by (domain, item_id)
    clean/events/dt=D               events that passed every rule
    quarantine/events/dt=D          the others, with a ``reason`` column
    quarantine/ingest/source=S      rows an adapter could not parse (no usable timestamp)
    sessions/dt=D                   events with session ids
    vocab/items/dt=D, vocab/users/dt=D   ids first seen on D with their stable integer index
    sequences/dt=D                  per-user history as of D (bounded), one row per user
    splits/dt=D                     leave-one-out and temporal evaluation targets as of D
    graphs/item_transitions/dt=D    item -> next item within sessions on D (counts, weights)
    graphs/user_item/dt=D           user -> item interactions on D (counts, weights)
    graphs/item_nodes/dt=D, graphs/user_nodes/dt=D   node tables of the day's graph
    _manifests/stage=X/dt=D.json    rows in/out/quarantined, checksums, input fingerprints, code version
    _staging/                       writes in progress (never read)

Every write goes to ``_staging`` first and is then swapped into place with one rename per
partition, so readers see the old partition or the new one, never a mix.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_ROOT / "sql"


class WarehouseError(RuntimeError):
    """A warehouse path or partition is missing or unsafe; the message names it."""


class AccountingError(RuntimeError):
    """Rows in != rows out + rows quarantined: a bug in a stage, never a data problem."""


def daterange(start: date, end: date) -> list[date]:
    """Inclusive list of days from ``start`` to ``end``."""
    if end < start:
        raise ValueError(f"date range is empty: {start} > {end}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def day_bounds(d: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day."""
    start = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


class Warehouse:
    """Paths and atomic writes under one warehouse root."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    # -- paths -------------------------------------------------------------------------------
    def table(self, name: str) -> Path:
        """Path of a table; refuses names that would escape the warehouse."""
        p = (self.root / name).resolve()
        if p != self.root and self.root not in p.parents:
            raise WarehouseError(f"table {name!r} resolves outside the warehouse {self.root}")
        return p

    def partition(self, table: str, d: date) -> Path:
        return self.table(table) / f"dt={d.isoformat()}"

    def has_partition(self, table: str, d: date) -> bool:
        return self.partition(table, d).is_dir()

    def partition_dates(self, table: str) -> list[date]:
        """Days present in a table (``dt=`` directories, any depth of other keys above)."""
        base = self.table(table)
        if not base.is_dir():
            return []
        days = {date.fromisoformat(p.name[3:]) for p in base.rglob("dt=*") if p.is_dir()}
        return sorted(days)

    def existing_partitions(self, table: str, days: Iterable[date]) -> list[str]:
        return [str(self.partition(table, d)) for d in days if self.has_partition(table, d)]

    # -- staging and swap ----------------------------------------------------------------------
    def staging_dir(self) -> Path:
        p = self.root / "_staging" / uuid.uuid4().hex
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def swap_in(self, staged: Path, target: Path) -> None:
        """Move ``staged`` to ``target`` atomically, replacing what was there."""
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            _exchange(staged, target)  # staged now holds the old partition
            shutil.rmtree(staged, ignore_errors=True)
        else:
            os.rename(staged, target)

    # -- manifests -----------------------------------------------------------------------------
    def manifest_path(self, stage: str, key: str) -> Path:
        return self.root / "_manifests" / f"stage={stage}" / f"{key}.json"

    def write_manifest(self, stage: str, key: str, manifest: dict[str, Any]) -> Path:
        path = self.manifest_path(stage, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, path)
        return path

    def write_stage_manifest(
        self, stage: str, d: date, *, rows_in: int, rows_out: int, outputs: dict[str, Any],
        inputs: Iterable[str | Path], config: Any = None, rows_quarantined: int = 0,
        by_reason: dict[str, int] | None = None, **extra: Any,
    ) -> Path:
        """The manifest of one stage for one day: row accounting, output checksums, input identity."""
        files = [f for p in inputs for f in iter_files(Path(p), (".parquet",))]
        return self.write_manifest(stage, f"dt={d.isoformat()}", {
            "stage": stage, "dt": d.isoformat(), "rows_in": rows_in, "rows_out": rows_out,
            "rows_quarantined": rows_quarantined, "quarantine_by_reason": by_reason or {},
            "outputs": outputs, "input_files": file_fingerprints(files),
            "config": config.model_dump(mode="json") if hasattr(config, "model_dump") else config,
            "code_version": code_version(), **extra,
        })

    def read_manifest(self, stage: str, key: str) -> dict[str, Any] | None:
        path = self.manifest_path(stage, key)
        return json.loads(path.read_text()) if path.is_file() else None


def _exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``).

    Elsewhere falls back to two renames, which leaves a window of microseconds in which the
    target is absent but never half-written.
    """
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name else None
    if libc is not None and hasattr(libc, "renameat2"):
        AT_FDCWD, RENAME_EXCHANGE = -100, 2
        rc = libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (22, 38):  # EINVAL / ENOSYS: filesystem without exchange support
            raise OSError(err, os.strerror(err), f"{a} <-> {b}")
    aside = b.with_name(b.name + f".old-{uuid.uuid4().hex[:8]}")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def file_fingerprints(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Identity of external input files: path, size and modification time (no full read)."""
    out = []
    for p in sorted(Path(x) for x in paths):
        st = p.stat()
        out.append({"path": str(p), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def iter_files(path: Path, suffixes: tuple[str, ...] = ()) -> Iterator[Path]:
    """Data files under a path (a file, or a folder walked recursively), hidden files skipped."""
    if path.is_file():
        yield path
        return
    for p in sorted(path.rglob("*")):
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts):
            if not suffixes or p.name.endswith(suffixes):
                yield p


def code_version() -> str:
    """Hash of the pipeline's code and SQL: a manifest says which code wrote a partition."""
    h = hashlib.sha256()
    for p in sorted([*Path(__file__).parent.glob("*.py"), *SQL_DIR.glob("*.sql")]):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
