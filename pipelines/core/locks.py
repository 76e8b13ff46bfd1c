"""Locks of a warehouse: one writer at a time per lock name, and readers that never see a commit
half applied.

- ``writer(wh, name)``: an exclusive ``flock`` on ``_locks/<name>.lock`` held for a whole run
  (``etl`` for ingest and the ETL stages, ``model=M`` for a method's steps). A second writer is
  refused at once with ``WarehouseBusy``, naming the holder (pid, host, command, since): the lock
  file holds them. The kernel releases a ``flock`` when its process dies, however it dies, so a
  lock is never stale on this host; a dead holder's leftovers are recovered by the next writer
  (``pipelines/core/runs.py``).
- ``reading(wh)``: a shared ``flock`` on ``_locks/read.lock``, held by a reader while it reads
  (a query, a training data load); a commit applies its renames under the exclusive one, so a
  reader sees the warehouse before a commit or after it, never in between, and the files it
  listed stay until it is done.

``flock`` is local to one host: on a shared filesystem used from several hosts, use one writer
host (the scheduler's), as the README says.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterator

from pipelines.core.errors import WarehouseBusy

LOCKS = "_locks"
READ_LOCK = "read"


def lock_path(root: Path, name: str) -> Path:
    return root / LOCKS / f"{name.replace('/', '_')}.lock"


def _open(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a+")


def holder(root: Path, name: str) -> dict | None:
    """Who holds (or last held) lock ``name``: pid, host, command, since."""
    path = lock_path(root, name)
    try:
        return json.loads(path.read_text() or "null")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@contextmanager
def writer(root: Path, name: str, command: str = "") -> Iterator[None]:
    """Hold the writer lock ``name`` of the warehouse at ``root`` (module docstring)."""
    f = _open(lock_path(root, name))
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise WarehouseBusy(_busy(root, name, holder(root, name) or {})) from None
    try:
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command or " ".join(sys.argv),
                            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        f.flush()
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _busy(root: Path, name: str, who: dict) -> str:
    return (f"{root} is being written by another run ({name}): pid {who.get('pid', '?')} on {who.get('host', '?')}, "
            f"`{who.get('command', '?')}` since {who.get('since', '?')}; wait for it to finish")


def ensure_free(root: Path, name: str) -> None:
    """Refuse at once (``WarehouseBusy``) when another run holds ``name``: a command checks this
    before it starts an engine, then takes the lock for real in its run."""
    held = try_writer(root, name)
    if held is None:
        who = holder(root, name) or {}
        raise WarehouseBusy(_busy(root, name, who))
    held.close()


def try_writer(root: Path, name: str) -> IO[str] | None:
    """The writer lock ``name`` if no one holds it (its open file; close it to release), else None."""
    f = _open(lock_path(root, name))
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return f
    except BlockingIOError:
        f.close()
        return None


@contextmanager
def reading(root: Path, exclusive: bool = False) -> Iterator[None]:
    """The read lock: shared for a reader, exclusive for a commit applying its renames."""
    f = _open(lock_path(root, READ_LOCK))
    try:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()
