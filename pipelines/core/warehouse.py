"""The warehouse: one folder of Hive-partitioned Parquet tables and the files around them.

This module owns the layout: every table and file is named here, and every writer goes
through :meth:`Warehouse.write_folder` / :meth:`Warehouse.write_file` (or ``swap_in`` for a
folder staged by Spark), so readers see an old version or a new one, never a mix.

::

    raw/events/source=S/dt=D        canonical events as ingested
    raw/social/source=S/dt=D        user-user edges (friends, follows) as ingested, by the day they were seen
    items/source=S                  item metadata (title, category, tags, text), keyed by (domain, item_id)
    quarantine/ingest/source=S      rows an adapter could not place on a day (no usable timestamp)
    clean/events/dt=D               events that passed every rule
    quarantine/events/dt=D          the others, with a ``reason`` column
    sessions/dt=D                   events with session ids
    vocab/items/dt=D, vocab/users/dt=D   ids first seen on D with their stable integer index
    sequences/dt=D                  per-user history as of D (bounded), one row per user
    splits/dt=D                     leave-one-out and temporal evaluation targets as of D
    graphs/<table>/dt=D             edge lists and node tables of the day
    graphs/social/dt=D              user-user edges first seen on D (vocabulary indexes)
    quarantine/social/dt=D          raw social rows of D no edge could be made of, with a ``reason``
    cross_domain/<table>/pair=P/dt=D   a cross-domain pair's users (roles), mixed sequences, splits
    models/<method>/<version>/      trained weights (safetensors), config.json, epochs.jsonl
    metrics/method=M/dt=D/<v>.parquet   full-ranking metrics of a model version
    embeddings/users|items/model=M/dt=D/version=V   embedding tables of a model version
    embeddings/index/model=M/dt=D/version=V         its item index (live: the version of the publish record)
    live/events|quarantine/model=M/batch=N          a stream's micro-batch N: clean and quarantined events
    embeddings/users_live/model=M/batch=N           fresh user vectors of that batch (``seqrep stream``)
    live/heartbeat/model=M.json     the running stream's last sign of life
    reports/dt=D/                   the run report
    _manifests/stage=X/<key>.json   row accounting, checksums, inputs, code version (publish records too)
    _gates/stage=G/[model=M/]dt=D.{json,md}   quality-gate results
    _runs/dt=D/<task>.{reason,json} why a nightly task failed
    _staging/                       writes in progress (never read)

Writes happen in runs (``pipelines/core/runs.py``): a ``Warehouse`` bound to a run
(``Warehouse(root, run)``) stages every partition and file it writes in the run's folder and
reads the run's versions over the live ones; the run's commit moves them into place together.
Outside a run, a write is staged under ``_staging`` (same filesystem) and renamed into place:
one rename per file, one exchange per partition folder (``renameat2(RENAME_EXCHANGE)``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import json
import os
import shutil
import socket
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from pipelines.core.errors import WarehouseError
from pipelines.core.resources import PACKAGE_DIR, SQL_DIR

if TYPE_CHECKING:
    from pipelines.core.runs import Run

# -- table names (relative to the warehouse root) -----------------------------------------------
RAW_EVENTS = "raw/events"
RAW_SOCIAL = "raw/social"
ITEMS = "items"
QUARANTINE_INGEST = "quarantine/ingest"
CLEAN_EVENTS = "clean/events"
QUARANTINE_EVENTS = "quarantine/events"
SESSIONS = "sessions"
VOCAB_ITEMS = "vocab/items"
VOCAB_USERS = "vocab/users"
SEQUENCES = "sequences"
SPLITS = "splits"
ITEM_TRANSITIONS = "graphs/item_transitions"
USER_ITEM = "graphs/user_item"
ITEM_NODES = "graphs/item_nodes"
USER_NODES = "graphs/user_nodes"
SOCIAL = "graphs/social"
QUARANTINE_SOCIAL = "quarantine/social"
CROSS_DOMAIN_USERS = "cross_domain/users"
CROSS_DOMAIN_SEQUENCES = "cross_domain/sequences"
CROSS_DOMAIN_SPLITS = "cross_domain/splits"
MODELS = "models"
METRICS = "metrics"
METRIC_SEGMENTS = "metric_segments"
USER_EMBEDDINGS = "embeddings/users"
ITEM_EMBEDDINGS = "embeddings/items"
ITEM_INDEX = "embeddings/index"
LIVE_USER_EMBEDDINGS = "embeddings/users_live"
LIVE_EVENTS = "live/events"
LIVE_QUARANTINE = "live/quarantine"
LIVE_HEARTBEAT = "live/heartbeat"
REPORTS = "reports"
TUNING = "tuning"
COMPARISONS = "comparisons"
MANIFESTS = "_manifests"
GATES = "_gates"
RUNS = "_runs"
STAGING = "_staging"


def _method_dir(name: str) -> str:
    """The folder under ``models/`` of a method or a pair run's published name (``METHOD.PAIR``)."""
    return name.split(".", 1)[0]


def pair_table(table: str, pair: str) -> str:
    """A cross-domain table of one pair: ``cross_domain/<table>/pair=P`` (its days below it)."""
    return f"{table}/pair={pair}"


def daterange(start: date, end: date) -> list[date]:
    """Inclusive list of days from ``start`` to ``end``."""
    if end < start:
        raise ValueError(f"date range is empty: {start} > {end}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def day_bounds(d: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day."""
    start = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def day_key(days: date | list[date]) -> str:
    """``dt=D`` for a day, ``dt=D1..D2`` for a range (gate results of a range run)."""
    if isinstance(days, date):
        return f"dt={days.isoformat()}"
    return f"dt={days[0].isoformat()}" if len(days) == 1 else f"dt={days[0].isoformat()}..{days[-1].isoformat()}"


class Warehouse:
    """Paths, common reads and atomic writes under one warehouse root, as seen by ``run`` (the
    live warehouse when None; module docstring)."""

    def __init__(self, root: str | Path, run: "Run | None" = None):
        self.root = Path(root).resolve()
        self.run = run

    def current(self, live: Path) -> Path:
        """The run's version of a live path if it wrote one, else the live path."""
        if self.run is not None:
            staged = self.run.mirror(live)
            if staged.exists():
                return staged
        return live

    def _dated_dirs(self, base: Path) -> set[date]:
        if not base.is_dir():
            return set()
        return {date.fromisoformat(p.name[3:]) for p in base.rglob("dt=*")
                if p.is_dir() and not any(x.startswith((".", "_")) for x in p.relative_to(base).parts)}

    # -- tables and partitions ------------------------------------------------------------------
    def table(self, name: str) -> Path:
        """Path of a table (or any file) under the root; refuses names that would escape it."""
        p = (self.root / name).resolve()
        if p != self.root and self.root not in p.parents:
            raise WarehouseError(f"table {name!r} resolves outside the warehouse {self.root}")
        return p

    def partition(self, table: str, d: date) -> Path:
        """The folder of ``table``'s partition of day ``d`` (the run's, when it wrote one)."""
        return self.current(self.table(table) / f"dt={d.isoformat()}")

    def has_partition(self, table: str, d: date) -> bool:
        return self.partition(table, d).is_dir()

    def partition_dates(self, table: str) -> list[date]:
        """Days present in a table (``dt=`` folders, any depth of other keys above)."""
        base = self.table(table)
        days = self._dated_dirs(base)
        if self.run is not None:
            days |= self._dated_dirs(self.run.mirror(base))
        return sorted(days)

    def spark_base(self, path: str | Path) -> Path:
        """The ``basePath`` Spark reads a partition folder under: its table's root (the run's,
        for a partition of the run), so the ``k=v`` folders below it become columns."""
        base = Path(path)
        while "=" in base.name:
            base = base.parent
        return base

    def days_upto(self, table: str, day: date) -> list[date]:
        """Days of ``table`` up to and including ``day`` (the table as of ``day``)."""
        return [d for d in self.partition_dates(table) if d <= day]

    def days_before(self, table: str, day: date) -> list[date]:
        return [d for d in self.partition_dates(table) if d < day]

    def existing_partitions(self, table: str, days: Iterable[date]) -> list[str]:
        return [str(self.partition(table, d)) for d in days if self.has_partition(table, d)]

    def require_partitions(self, table: str, days: list[date], *, who: str, hint: str) -> list[str]:
        """Paths of ``table``'s partitions for every day of ``days``, or one clear error naming the
        missing days and what to run (``hint``)."""
        missing = [str(d) for d in days if not self.has_partition(table, d)]
        if missing:
            raise WarehouseError(f"{who}: {table} has no partition for {missing[:5]}; {hint}")
        return [str(self.partition(table, d)) for d in days]

    def require_upto(self, table: str, day: date, *, who: str, hint: str = "run `seqrep etl` first",
                     error: type[Exception] = WarehouseError) -> list[date]:
        """Days of ``table`` up to ``day``; at least one, else one clear ``error`` naming the table
        and what to run (the modeling layer raises the models' ``DataError``)."""
        days = self.days_upto(table, day)
        if not days:
            raise error(f"{who}: no {table} partitions up to {day} in {self.root}; {hint}")
        return days

    def raw_paths(self, days: list[date]) -> list[str]:
        """Partitions of every source's raw events for ``days``."""
        tables = [f"{RAW_EVENTS}/source={s}" for s in self.raw_sources()]
        return sorted(str(self.partition(t, d)) for d in days for t in tables if self.has_partition(t, d))

    def raw_sources(self, table: str = RAW_EVENTS) -> list[str]:
        """The sources with a folder under ``table`` (``raw/events``, or ``raw/social``)."""
        bases = [self.table(table)] + ([self.run.mirror(self.table(table))] if self.run else [])
        return sorted({p.name[7:] for base in bases for p in base.glob("source=*") if p.is_dir()})

    def partition_files(self, table: str, d: date) -> list[Path]:
        """The Parquet files of a day of ``table``; of every source's, for raw events."""
        folders = self.raw_paths([d]) if table == RAW_EVENTS else [self.partition(table, d)]
        return [f for folder in folders for f in sorted(Path(folder).glob("*.parquet"))
                if not f.name.startswith(("_", "."))]

    def raw_days(self) -> list[date]:
        """Days with raw events of any source."""
        return sorted({d for s in self.raw_sources() for d in self.partition_dates(f"{RAW_EVENTS}/source={s}")})

    def parquet_globs(self, table: str) -> str:
        """The glob of every ``dt=`` partition's Parquet files of ``table`` (DuckDB views)."""
        return str(self.table(table) / "dt=*" / "*.parquet")

    # -- models, metrics, embeddings, index, reports ------------------------------------------
    def model_folder(self, method: str, version: str) -> Path:
        """``models/<method>/<version>`` (a version named by a user is a plain name, never a path).
        A cross-domain pair run's published name (``METHOD.PAIR``) keeps its versions in its
        method's folder: they are hashed with the pair and view."""
        if not version or "/" in version or "\\" in version or version.startswith("."):
            raise WarehouseError(f"model version {version!r} is not a version name (e.g. 2024-01-03-1a2b3c4d)")
        return self.table(f"{MODELS}/{_method_dir(method)}/{version}")

    def model_workdir(self, method: str, version: str) -> Path:
        """Where a model version is trained before it is swapped in (kept for ``--resume``)."""
        return self.table(f"{MODELS}/{_method_dir(method)}/{version}.partial")

    def model_versions(self, method: str) -> list[str]:
        base = self.table(f"{MODELS}/{_method_dir(method)}")
        return sorted(p.name for p in base.glob("*") if (p / "model.safetensors").is_file()) if base.is_dir() else []

    def metrics_file(self, method: str, day: date | str, version: str) -> Path:
        return self.table(f"{METRICS}/method={method}") / f"dt={day}" / f"{version}.parquet"

    def segment_metrics_file(self, method: str, day: date | str, version: str) -> Path:
        return self.table(f"{METRIC_SEGMENTS}/method={method}") / f"dt={day}" / f"{version}.parquet"

    def metrics_files(self, day: date) -> list[Path]:
        return sorted(self.table(METRICS).glob(f"method=*/dt={day.isoformat()}/*.parquet"))

    def embeddings(self, kind: str, method: str, day: date, version: str) -> Path:
        """``embeddings/{users,items}/model=M/dt=D/version=V``: a version's table of a day, beside
        the others; the live one is the version of the day's publish record."""
        if kind not in ("users", "items"):
            raise ValueError(f"embedding tables are users or items, not {kind!r}")
        return self.table(f"embeddings/{kind}/model={method}/dt={day.isoformat()}/version={version}")

    def embedding_partitions(self, kind: str, day: date) -> list[Path]:
        """Every version's table of ``kind`` for ``day`` (``.../model=M/dt=D/version=V``)."""
        return sorted(self.table(f"embeddings/{kind}").glob(f"model=*/dt={day.isoformat()}/version=*"))

    def index_folder(self, method: str, day: date, version: str) -> Path:
        return self.table(f"{ITEM_INDEX}/model={method}/dt={day.isoformat()}/version={version}")

    @staticmethod
    def infer_key(method: str, day: date, version: str) -> str:
        """The manifest key of a version's embedding tables of a day (``stage=infer``)."""
        return f"model={method}/version={version}/dt={day.isoformat()}"

    def tuning_folder(self, method: str, study: str) -> Path:
        """``tuning/method=M/study=S``: an Optuna study of ``seqrep tune`` and its outputs."""
        if not study or "/" in study or "\\" in study or study.startswith("."):
            raise WarehouseError(f"study name {study!r} is not a plain name")
        return self.table(f"{TUNING}/method={_method_dir(method)}/study={study}")

    def comparison_folder(self, name: str, day: date) -> Path:
        """``comparisons/name=N/dt=D``: a ``seqrep compare`` table and page."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise WarehouseError(f"comparison name {name!r} is not a plain name")
        return self.table(f"{COMPARISONS}/name={name}/dt={day.isoformat()}")

    def report_folder(self, day: date) -> Path:
        return self.table(REPORTS) / f"dt={day.isoformat()}"

    # -- manifests and publish records ------------------------------------------------------------
    def manifest_path(self, stage: str, key: str) -> Path:
        return self.root / MANIFESTS / f"stage={stage}" / f"{key}.json"

    def manifests(self, stage: str, day: date) -> list[Path]:
        """Every manifest of ``stage`` for ``day`` (any keys above ``dt=``, e.g. ``source=S``)."""
        return sorted((self.root / MANIFESTS / f"stage={stage}").glob(f"**/dt={day.isoformat()}.json"))

    def write_manifest(self, stage: str, key: str, manifest: dict[str, Any]) -> Path:
        path = self.manifest_path(stage, key)
        self.write_json(path, manifest)
        return path

    def write_stage_manifest(
        self, stage: str, d: date, *, rows_in: int, rows_out: int, outputs: dict[str, Any],
        inputs: Iterable[str | Path], config: Any = None, rows_quarantined: int = 0,
        by_reason: dict[str, int] | None = None, partition: str = "", **extra: Any,
    ) -> Path:
        """The manifest of one stage for one day (under ``partition``, e.g. ``pair=P``, when given):
        row accounting, output checksums, input identity."""
        files = [f for p in inputs for f in iter_files(Path(p), (".parquet",))]
        return self.write_manifest(stage, f"{partition}/dt={d.isoformat()}" if partition else f"dt={d.isoformat()}", {
            "stage": stage, "dt": d.isoformat(), "rows_in": rows_in, "rows_out": rows_out,
            "rows_quarantined": rows_quarantined, "quarantine_by_reason": by_reason or {},
            "outputs": outputs, "input_files": file_fingerprints(files),
            "config": config.model_dump(mode="json") if hasattr(config, "model_dump") else config,
            "code_version": code_version(), "run": self.run.id if self.run is not None else None, **extra,
        })

    def read_manifest(self, stage: str, key: str) -> dict[str, Any] | None:
        path = self.current(self.manifest_path(stage, key))
        return json.loads(path.read_text()) if path.is_file() else None

    def published_methods(self) -> list[str]:
        """Methods with at least one publish record."""
        base = self.root / MANIFESTS / "stage=publish"
        return sorted(p.name[6:] for p in base.glob("model=*") if any(p.glob("dt=*.json")))

    def published_days(self, method: str) -> list[date]:
        """Days on which ``method`` was published (``seqrep publish``), oldest first."""
        folder = self.root / MANIFESTS / "stage=publish" / f"model={method}"
        folders = [folder] + ([self.run.mirror(folder)] if self.run is not None else [])
        return sorted({date.fromisoformat(p.stem[3:]) for f in folders for p in f.glob("dt=*.json")})

    def publish_record(self, method: str, day: date) -> dict[str, Any] | None:
        return self.read_manifest("publish", f"model={method}/dt={day.isoformat()}")

    def write_publish_record(self, method: str, day: date, record: dict[str, Any]) -> Path:
        return self.write_manifest("publish", f"model={method}/dt={day.isoformat()}", record)

    def last_published(self, method: str, before: date) -> dict[str, Any] | None:
        """The publish record of ``method`` with the latest day before ``before`` (None: never)."""
        days = [d for d in self.published_days(method) if d < before]
        return self.publish_record(method, days[-1]) if days else None

    # -- gate results -----------------------------------------------------------------------------
    def gate_result_path(self, gate: str, days: date | list[date], partition: str = "") -> Path:
        """``_gates/stage=G[/partition]/dt=D.json`` (``.md`` beside it is the readable table)."""
        return self.root / GATES / f"stage={gate}" / partition / f"{day_key(days)}.json"

    def write_gate_result(self, gate: str, days: list[date], result: dict[str, Any], markdown: str,
                          partition: str = "") -> Path:
        path = self.gate_result_path(gate, days, partition)
        self.write_json(path, result)
        self.write_text(path.with_suffix(".md"), markdown)
        return path

    def read_gate_result(self, gate: str, day: date, partition: str = "") -> dict[str, Any] | None:
        """A gate's results as data (``passed``, ``outcomes``...), or None when it never ran."""
        path = self.current(self.gate_result_path(gate, day, partition))
        return json.loads(path.read_text()) if path.is_file() else None

    def gate_results(self, day: date) -> list[Path]:
        return sorted((self.root / GATES).glob(f"**/dt={day.isoformat()}.json"))

    # -- failed nightly tasks -------------------------------------------------------------------
    def reason_file(self, day: str, task_id: str) -> Path:
        """Where a ``seqrep`` process of a nightly task writes its one-line error."""
        return self.root / RUNS / f"dt={day}" / f"{task_id}.reason"

    def failure_records(self, day: date) -> list[dict[str, Any]]:
        folder = self.root / RUNS / f"dt={day.isoformat()}"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    # -- atomic writes ------------------------------------------------------------------------------
    def staging_dir(self) -> Path:
        """A fresh path under ``_staging`` (not created), on the warehouse's filesystem, named
        after this host and process so the leftovers of a dead one can be found."""
        p = self.root / STAGING / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def staging_leftovers(self) -> tuple[list[Path], list[Path]]:
        """Entries under ``_staging`` that dead processes of this host left, and those of another
        host or an older seqrep (which cannot be judged from here)."""
        base, host = self.root / STAGING, socket.gethostname()
        dead, unknown = [], []
        for p in sorted(base.iterdir()) if base.is_dir() else []:
            pid = p.name[len(host) + 1:].split("-")[0] if p.name.startswith(f"{host}-") else ""
            if not pid.isdigit():
                unknown.append(p)
            elif not alive(int(pid)):
                dead.append(p)
        return dead, unknown

    def clean_staging(self) -> list[Path]:
        """Remove what dead processes of this host left under ``_staging``; returns it."""
        dead, _ = self.staging_leftovers()
        for p in dead:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return dead

    def swap_in(self, staged: Path, target: Path) -> None:
        """Move the folder ``staged`` to ``target``, replacing what was there: in a run, into the
        run's version of ``target`` (the commit moves it); else at once, atomically."""
        if self.run is not None:
            into = self.run.stage(target, "dir")
            if into.exists():
                shutil.rmtree(into)
            os.rename(staged, into)
        else:
            exchange_into(staged, target)

    def write_folder(self, target: Path, fill: Callable[[Path], Any]) -> Any:
        """Replace the folder ``target`` with what ``fill(staged)`` writes into a fresh staging
        folder (created for it); returns what ``fill`` returns. Nothing is visible on a failure."""
        staged = self.staging_dir()
        staged.mkdir(parents=True)
        try:
            out = fill(staged)
            self.swap_in(staged, target)
            return out
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def write_file(self, path: Path, write: Callable[[Path], Any]) -> Path:
        """Replace the file ``path`` with what ``write(tmp)`` writes to a staging path (one rename);
        in a run, the run's version of it (the commit moves it)."""
        if self.run is not None:
            replace_file(self.run.stage(path, "file"), write)
            return path
        return replace_file(path, write, self.staging_dir())

    def write_text(self, path: Path, text: str) -> Path:
        return self.write_file(path, lambda tmp: tmp.write_text(text))

    def write_json(self, path: Path, obj: Any) -> Path:
        return self.write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def replace_file(path: Path, write: Callable[[Path], Any], tmp: Path | None = None) -> Path:
    """Replace the file ``path`` with what ``write(tmp)`` writes to ``tmp`` (default: a hidden name
    beside it; the same filesystem either way), in one rename: readers see the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp or path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def exchange_into(staged: Path, target: Path) -> None:
    """Move the folder ``staged`` to ``target`` atomically, replacing what was there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        _exchange(staged, target)  # staged now holds the old version
        shutil.rmtree(staged, ignore_errors=True)
    else:
        os.rename(staged, target)


def alive(pid: int) -> bool:
    """Whether a process of this host with ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
            if not suffixes or p.name.lower().endswith(suffixes):
                yield p


@functools.cache
def code_version() -> str:
    """Hash of the pipeline's code and SQL: a manifest says which code wrote a partition. Once per
    process (the code a process runs does not change under it): a range writes a manifest per day
    and stage, and hashing ~100 files each time cost 3.5 ms per manifest."""
    h = hashlib.sha256()
    for p in sorted([*PACKAGE_DIR.rglob("*.py"), *SQL_DIR.glob("*.sql")]):
        h.update(str(p.relative_to(p.parents[1])).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
