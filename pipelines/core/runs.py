"""Runs: what one command writes becomes visible together, or not at all.

A writing command (``seqrep etl`` over its stages, ``ingest``, a method's ``train``, ``infer``,
``publish``...) opens a run with :func:`transaction`. Under its writer lock
(``pipelines/core/locks.py``), everything the run writes goes to its own folder
``_txn/<run>/tree/``, which mirrors the warehouse: ``_txn/<run>/tree/clean/events/dt=D`` is the
run's ``clean/events/dt=D``. Readers inside the run (its later stages, its gates) see the run's
partitions over the live ones (``Warehouse(root, run)``); readers outside see only live ones.

When the run ends, ``commit``:

1. writes ``_txn/<run>/COMMIT.json`` (one rename), naming every staged partition and file: from
   that moment the run *is* committed;
2. under the exclusive read lock, moves each into place: one ``renameat2(RENAME_EXCHANGE)`` per
   partition folder, one ``rename`` per file; the old versions are deleted;
3. removes ``_txn/<run>``.

A run that fails (an exception, or a kill) before step 1 leaves only its ``_txn`` folder: the
next run of the same lock, or ``seqrep doctor --repair``, deletes it (rolled back). A run killed
during step 2 is finished by the next writer of its lock, by ``seqrep doctor --repair``, or by
the next reader (``settle``): the commit record says exactly what is left to move. Either way
the outcome is recorded in ``_txn/history.jsonl``. A failed quality gate is not a failure of the
run: what the run wrote up to that gate is committed (its output, with the gate's record, is
what the user inspects), and the gate's error is raised after.

``SEQREP_FAULT`` (tests only) kills the process by pid at a named point: ``commit:N`` after the
N-th move of a commit (``commit:0``: right after the commit record), ``stage:TABLE`` when the run
stages a partition of TABLE. ``SEQREP_PAUSE=POINT=FILE`` (tests only) makes the process touch
``FILE.reached`` at that point and wait until ``FILE`` exists: a second run can then be started
while the first one is known to hold its lock.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from pipelines.core import locks
from pipelines.core.errors import GateFailed, InternalError
from pipelines.core.warehouse import Warehouse

TXN = "_txn"
FAULT_ENV = "SEQREP_FAULT"
PAUSE_ENV = "SEQREP_PAUSE"


def fault(point: str) -> None:
    """Kill this process by pid (SIGKILL) when ``SEQREP_FAULT`` names ``point``, or wait there
    for a file when ``SEQREP_PAUSE`` does (tests; module docstring)."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
    at, _, release = os.environ.get(PAUSE_ENV, "").partition("=")
    if at == point and release:
        Path(release + ".reached").touch()
        while not Path(release).exists():
            time.sleep(0.05)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Run:
    """One run's staging folder and what it staged (module docstring)."""

    root: Path  # the warehouse root
    lock: str
    id: str = field(default_factory=lambda: f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")
    staged: dict[str, str] = field(default_factory=dict)  # live path (relative) -> "dir" | "file"

    @property
    def folder(self) -> Path:
        return self.root / TXN / self.id

    def mirror(self, live: Path) -> Path:
        """Where this run keeps its version of the live path ``live``."""
        return self.folder / "tree" / live.relative_to(self.root)

    def live(self, staged: Path) -> Path:
        return self.root / staged.relative_to(self.folder / "tree")

    def stage(self, live: Path, kind: str) -> Path:
        """Record that this run writes ``live`` (a partition folder or a file); returns where."""
        self.staged[str(live.relative_to(self.root))] = kind
        fault(f"stage:{live.parent.relative_to(self.root)}")
        path = self.mirror(live)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def begin(self, command: str) -> None:
        self.folder.mkdir(parents=True)
        (self.folder / "run.json").write_text(json.dumps({
            "id": self.id, "lock": self.lock, "pid": os.getpid(), "host": socket.gethostname(),
            "command": command, "started": _now()}))

    def commit(self) -> int:
        """Steps 1-3 of the module docstring; returns the number of moves."""
        entries = sorted(self.staged.items())
        record = self.folder / "COMMIT.json"
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"id": self.id, "committed": _now(), "entries": entries}))
        os.replace(tmp, record)
        fault("commit:0")
        apply_commit(self.root, self.folder)
        return len(entries)

    def rollback(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def apply_commit(root: Path, folder: Path) -> None:
    """Move every entry of a committed run that is still staged into place, then remove the run's
    folder. Each move is two renames (the live version aside into the run's ``old/``, the staged
    one into place), so a move cut short is finished by doing it again: the whole is idempotent."""
    record = json.loads((folder / "COMMIT.json").read_text())
    tree, old = folder / "tree", folder / "old"
    with locks.reading(root, exclusive=True):
        for n, (rel, kind) in enumerate(record["entries"], 1):
            staged, live = tree / rel, root / rel
            if staged.exists():
                if live.exists() and kind == "dir":
                    (old / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.rename(live, old / rel)
                live.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, live)  # a file replaces in one rename; a folder's place is free
            fault(f"commit:{n}")
        shutil.rmtree(folder, ignore_errors=True)


def _history(root: Path, run: dict, outcome: str) -> None:
    with open(root / TXN / "history.jsonl", "a") as f:
        f.write(json.dumps({**run, "outcome": outcome, "at": _now()}) + "\n")


def pending(root: Path) -> list[tuple[Path, dict]]:
    """Run folders under ``_txn`` with their ``run.json`` (oldest first)."""
    base = root / TXN
    out = []
    for folder in sorted(base.iterdir()) if base.is_dir() else []:
        if folder.is_dir():
            try:
                out.append((folder, json.loads((folder / "run.json").read_text())))
            except (FileNotFoundError, json.JSONDecodeError):
                out.append((folder, {"id": folder.name, "lock": None}))
    return out


def recover(root: Path, lock: str | None = None) -> list[dict]:
    """Finish or roll back runs whose writer is gone: a committed one is finished, an uncommitted
    one rolled back. With ``lock`` (which the caller holds), the runs of that lock; without, every
    run whose lock is free (``seqrep doctor --repair``). Returns what was done (also appended to
    ``_txn/history.jsonl``)."""
    done = []
    for folder, run in pending(root):
        run_lock = run.get("lock") or "unknown"
        if lock is not None and run_lock != lock:
            continue
        held = locks.try_writer(root, run_lock) if lock is None else None
        if lock is None and held is None:
            continue  # its writer is alive
        try:
            committed = (folder / "COMMIT.json").is_file()
            if committed:
                apply_commit(root, folder)
            else:
                shutil.rmtree(folder, ignore_errors=True)
            outcome = "finished" if committed else "rolled back"
            _history(root, run, outcome)
            done.append({**run, "outcome": outcome})
        finally:
            if held is not None:
                held.close()
    return done


def settle(root: Path) -> None:
    """For readers: finish committed runs whose writer died mid-commit, so nothing half applied
    is ever read. Uncommitted leftovers are invisible to readers and left to the next writer."""
    for folder, run in pending(root):
        if (folder / "COMMIT.json").is_file():
            held = locks.try_writer(root, run.get("lock") or "unknown")
            if held is not None:
                try:
                    if (folder / "COMMIT.json").is_file():
                        apply_commit(root, folder)
                        _history(root, run, "finished by a reader")
                finally:
                    held.close()


@contextmanager
def reading(root: Path) -> Iterator[None]:
    """Read the warehouse consistently: after any commit a dead writer left half applied is
    finished (``settle``), under the shared read lock (a commit waits until the read is done)."""
    settle(root)
    with locks.reading(root):
        yield


@contextmanager
def transaction(wh: Warehouse, lock: str, command: str = "") -> Iterator[Warehouse]:
    """A run under writer lock ``lock`` (module docstring); yields the warehouse as the run sees it.

    Inside a run already (``wh.run`` set), yields ``wh``: the enclosing run commits."""
    if wh.run is not None:
        if wh.run.lock != lock:
            raise InternalError(f"a {lock} run inside a {wh.run.lock} run of {wh.root}")
        yield wh
        return
    command = command or " ".join(["seqrep", *sys.argv[1:]])
    with locks.writer(wh.root, lock, command):
        recover(wh.root, lock)
        wh.clean_staging()
        run = Run(wh.root, lock)
        run.begin(command)
        inside = Warehouse(wh.root, run)
        try:
            yield inside
        except GateFailed:
            run.commit()  # what passed its gates, and the failed stage's output, become visible
            raise
        except BaseException:
            run.rollback()
            raise
        run.commit()
