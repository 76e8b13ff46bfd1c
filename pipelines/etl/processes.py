"""Long-lived helper processes of the Spark side (a Spark Connect server, a standalone cluster):
started in sessions of their own, found again by the pid files they leave, stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from pipelines.core.errors import UsageError


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def require_free(port: int, what: str) -> None:
    """A clear error when something else listens on ``port`` (``what`` would have started there)."""
    if listening(port):
        raise UsageError(f"port {port} is taken by another process (not a {what} started by seqrep); "
                         f"choose another with --port")


def free_port() -> int:
    """A port nothing listens on now (the OS's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive_pid(path: Path) -> int | None:
    """The pid written in ``path``, if that process is alive."""
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stop_group(pid: int, timeout: float = 30.0, *, group: bool = True) -> None:
    """SIGTERM to the process group ``pid`` leads (it was started with ``start_new_session``),
    then SIGKILL after ``timeout`` seconds; reaps it when this process is its parent.
    ``group=False`` signals the process ``pid`` alone (its group's other processes go on)."""
    kill = os.killpg if group else os.kill
    try:
        kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    try:
        kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
