"""A fork server for ``seqrep`` commands: the imports once, a fork per command.

Every task of the nightly DAG is its own ``seqrep`` process, and most of a short task's time is
imports: torch 2.8 s, Great Expectations 4-7 s (each gate task), on 2 cores. A task server
(``seqrep task-server start``) imports them once and waits on a Unix socket; a ``seqrep``
process that finds ``SEQREP_TASK_SERVER`` (the socket's path) in its environment sends its
command line, environment, working folder and standard streams (the file descriptors
themselves, ``SCM_RIGHTS``) to it and waits for the exit code. The server forks a handler per
command, which forks the command itself in a process group of its own, so the command writes
to the task's own stdout and stderr, and a killed task (Airflow's timeout, Ctrl-C: the client's
connection closes) takes its command and that command's children with it.

Like a Spark Connect server, it is per machine: on a cluster each Airflow worker runs its own
(the compose stack's worker does). A server runs the code it imported when it started; a client
whose package files changed since then runs its command itself and says so (restart the server
after an upgrade). Without a server, or when it cannot be reached, a command runs in its own
process as before.

The socket's folder is private to the user (mode 0700): whoever can connect runs commands as
the server's user.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import importlib.util
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from pipelines.core.errors import UsageError
from pipelines.etl.localfs import cache_dir
from pipelines.etl.processes import alive_pid, stop_group

#: The environment variable that makes ``seqrep`` processes clients of a task server.
SERVER_ENV = "SEQREP_TASK_SERVER"
#: What the server imports before its first fork (the slow imports of the CLI's commands).
PRELOAD = ("numpy", "pandas", "pyarrow", "duckdb", "torch", "great_expectations", "pyspark.sql",
           "pyspark.sql.connect.session", "faiss", "matplotlib.pyplot", "models", "pipelines.modeling.train",
           "pipelines.modeling.infer", "pipelines.gates.registry", "pipelines.etl.stages", "pipelines.serving.query",
           "pipelines.nightly.report", "pipelines.nightly.steps")
#: A handler's reply when the client's package files differ from the server's: run it yourself.
STALE = 255
_HEADER = struct.Struct("!I")


def default_socket() -> Path:
    return cache_dir() / "task-server" / "seqrep.sock"


def pid_file(path: Path) -> Path:
    return path.with_suffix(".pid")


def log_file(path: Path) -> Path:
    return path.with_suffix(".log")


def code_stamp() -> str:
    """A digest of the package's source files (names, sizes, modification times): equal in a
    server and a client exactly when they run the same code."""
    digest = hashlib.sha256()
    for package in ("pipelines", "models"):
        root = Path(importlib.util.find_spec(package).submodule_search_locations[0])
        for f in sorted(root.rglob("*.py")):
            st = f.stat()
            digest.update(f"{f.relative_to(root.parent)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


# --- the client: a `seqrep` process with SEQREP_TASK_SERVER set ------------------------------------

def run_remote(argv: list[str], path: str) -> int | None:
    """Run ``seqrep argv`` in the server at ``path`` with this process's streams, environment and
    folder; its exit code, or None when the server cannot run it (the caller runs it itself)."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
    except OSError as exc:
        print(f"seqrep: task server {path} not reachable ({exc.strerror or exc}); running here", file=sys.stderr)
        return None
    with sock:
        payload = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(),
                              "python": sys.executable, "code": code_stamp()}).encode()
        socket.send_fds(sock, [_HEADER.pack(len(payload))], [0, 1, 2])
        sock.sendall(payload)
        reply = _recv_exact(sock, _HEADER.size)
    if reply is None:
        print(f"seqrep: task server {path} closed the connection; running here", file=sys.stderr)
        return None
    (code,) = _HEADER.unpack(reply)
    if code == STALE:
        print(f"seqrep: task server {path} runs other code than this checkout (restart it: "
              f"`seqrep task-server stop; seqrep task-server start`); running here", file=sys.stderr)
        return None
    return code


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# --- the server ----------------------------------------------------------------------------------

def serve(path: Path, run: Callable[[list[str]], int], preload: tuple[str, ...] = PRELOAD) -> None:
    """Import ``preload``, listen on ``path`` and fork a handler per connection that runs
    ``run(argv)`` in a fork of its own, until SIGTERM."""
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional engine (faiss) missing: its commands import it themselves
            pass
    # The preloaded objects never die: out of the collector's sight, a fork's collections neither
    # walk them nor write to their pages (which would copy them, page by page, into every fork).
    gc.collect()
    gc.freeze()
    stamp = code_stamp()
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"task server {path}: ready (pid {os.getpid()}, preloaded {len(sys.modules)} modules)", flush=True)
    try:
        while True:
            conn, _ = listener.accept()
            if os.fork() == 0:  # the handler: one per command
                listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os._exit(_handle(conn, run, stamp))
            conn.close()
    finally:
        path.unlink(missing_ok=True)


def _handle(conn: socket.socket, run: Callable[[list[str]], int], stamp: str) -> int:
    """Receive a command, fork it, report its exit code; kill it if the client goes away."""
    try:
        head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        request = json.loads(_recv_exact(conn, _HEADER.unpack(head)[0]) or b"{}")
    except (OSError, ValueError, struct.error):
        return 1
    if request.get("code") != stamp or request.get("python") != sys.executable or len(fds) != 3:
        conn.sendall(_HEADER.pack(STALE))
        return 0
    pid = os.fork()
    if pid == 0:
        conn.close()
        os._exit(_command(request, fds, run))
    try:  # also here, so that a kill right after the fork reaches the group (either side may be first)
        os.setpgid(pid, pid)
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    status = _wait(pid, conn)
    if status is not None:
        conn.sendall(_HEADER.pack(status))
    return 0


def _command(request: dict, fds: list[int], run: Callable[[list[str]], int]) -> int:
    """The forked command: the client's streams, environment, folder and a process group of its own."""
    os.setpgid(0, 0)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh Python process
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    os.chdir(request["cwd"])
    sys.argv = ["seqrep", *request["argv"]]
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    try:
        code = run(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what an uncaught exception does to a process: its traceback, exit 1
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _wait(pid: int, conn: socket.socket) -> int | None:
    """The command's exit status (128 + N when killed by signal N); None when the client went
    away first, after the command's process group was stopped."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        readable, _, _ = select.select([conn], [], [], 0.2)
        if readable and not conn.recv(1):  # the client's end closed: the task was killed
            stop_group(pid, timeout=10.0)
            return None


# --- start / stop ---------------------------------------------------------------------------------

def running_pid(path: Path) -> int | None:
    return alive_pid(pid_file(path))


def start(path: Path | None = None, timeout: float = 120.0) -> tuple[Path, int, bool]:
    """Start a server on ``path`` (default ``default_socket()``) unless one runs there:
    ``(path, pid, started)``. Returns once it accepts connections."""
    path = Path(path or default_socket()).resolve()
    if len(str(path)) > 100:  # the kernel's limit for a socket's path is 107 bytes
        raise UsageError(f"the task server's socket path is too long for a Unix socket ({len(str(path))} > 100): {path}")
    pid = running_pid(path)
    if pid:
        return path, pid, False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    env = {k: v for k, v in os.environ.items() if k != SERVER_ENV}
    with open(log_file(path), "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.task_server", str(path)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    pid_file(path).write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while not _accepts(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(path)
            raise UsageError(f"the task server {path} did not start; its log, {log_file(path)}, ends:\n"
                             + log_file(path).read_text()[-2000:])
        time.sleep(0.2)
    return path, proc.pid, True


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        return s.connect_ex(str(path)) == 0


def stop(path: Path | None = None) -> bool:
    """Stop the server on ``path`` (its handlers and running commands finish); False when none ran."""
    path = Path(path or default_socket()).resolve()
    pid = running_pid(path)
    pid_file(path).unlink(missing_ok=True)
    if pid is None:
        return False
    stop_group(pid, group=False)  # the server alone: its handlers share its group
    path.unlink(missing_ok=True)
    return True
