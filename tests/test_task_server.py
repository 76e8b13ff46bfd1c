"""The task server (``pipelines/nightly/task_server.py``): a command forked by it behaves as the
same command in its own process (streams, exit code, environment, folder), a killed client takes
its command's process group with it, and a client that cannot use the server runs the command
itself. The crafted server runs a test function instead of the CLI; the real one runs the DAG's
tasks in tests/test_dag.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.nightly import task_server

#: A crafted server's command: ``echo A B`` prints its arguments, the folder and SEQREP_X;
#: ``fail N`` exits N; ``raise`` raises; ``sleep PIDFILE`` writes its pid and its child's, then sleeps.
SERVER = r"""
import os, subprocess, sys, time
from pathlib import Path
from pipelines.nightly.task_server import serve

def run(argv):
    if argv[0] == "echo":
        print(" ".join(argv[1:]), os.getcwd(), os.environ.get("SEQREP_X"), sep="|")
        print("to stderr", file=sys.stderr)
        return 0
    if argv[0] == "fail":
        return int(argv[1])
    if argv[0] == "raise":
        raise RuntimeError("a bug")
    child = subprocess.Popen(["sleep", "300"])
    Path(argv[1]).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(300)

serve(Path(sys.argv[1]), run, preload=())
"""
CLIENT = ("import sys; from pipelines.nightly.task_server import run_remote; "
          "code = run_remote(sys.argv[2:], sys.argv[1]); sys.exit(99 if code is None else code)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"seqrep-ts-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    path = folder / "s.sock"
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(path)], start_new_session=True)
    deadline = time.monotonic() + 60
    while not task_server._accepts(path):
        assert proc.poll() is None and time.monotonic() < deadline, "the crafted server did not start"
        time.sleep(0.1)
    yield path
    proc.terminate()
    proc.wait(10)
    assert not path.exists()  # the server removes its socket when it stops


def client(path: Path, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLIENT, str(path), *argv], capture_output=True, text=True,
                          timeout=60, **kwargs)


def test_a_forked_command_has_the_clients_streams_environment_folder_and_exit_code(server, tmp_path):
    out = client(server, "echo", "a", "b c", cwd=tmp_path, env={**os.environ, "SEQREP_X": "from the client"})
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"a b c|{tmp_path}|from the client\n" and out.stderr == "to stderr\n"
    assert client(server, "fail", "3").returncode == 3
    out = client(server, "raise")
    assert out.returncode == 1 and "RuntimeError: a bug" in out.stderr and "Traceback" in out.stderr


def test_a_killed_client_stops_its_command_and_the_commands_children(server, tmp_path):
    pids = tmp_path / "pids"
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, str(server), "sleep", str(pids)])
    deadline = time.monotonic() + 30
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline, "the command did not start"
        time.sleep(0.1)
    command, child = map(int, pids.read_text().split())
    proc.send_signal(signal.SIGKILL)  # what an Airflow timeout does to the task's process group
    proc.wait()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in (command, child)):
        assert time.monotonic() < deadline, f"still running: {[p for p in (command, child) if _alive(p)]}"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")  # a zombie has stopped


def test_a_client_runs_its_command_itself_when_the_server_cannot(server, tmp_path, capsys):
    assert task_server.run_remote(["echo"], str(tmp_path / "none.sock")) is None
    err = capsys.readouterr().err
    assert "not reachable" in err and "running here" in err
    touched = Path(task_server.__file__)  # a package file changed since the server started: its time
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        assert task_server.run_remote(["echo"], str(server)) is None
    finally:
        os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "runs other code than this checkout" in capsys.readouterr().err
    assert task_server.run_remote(["fail", "0"], str(server)) == 0  # the same code again: served


def test_seqrep_task_server_start_status_stop(tmp_path, monkeypatch):
    """The real server: started by the command, a ``seqrep`` process its client (the same output
    and exit code as without it), stopped by pid."""
    monkeypatch.setenv("SEQREP_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"seqrep-tsc-{os.getpid()}"))
    seqrep = [sys.executable, "-m", "pipelines.cli"]
    run = lambda *a, **env: subprocess.run([*seqrep, *a], capture_output=True, text=True, timeout=300,
                                           env={**os.environ, **env})
    started = run("task-server", "start")
    assert started.returncode == 0, started.stderr
    sock = started.stdout.split("SEQREP_TASK_SERVER=")[1].strip()
    try:
        assert run("task-server", "status").returncode == 0
        command = ("config", "show", "--warehouse", str(tmp_path / "wh"), "--set", "sequences.max_length=7")
        alone, served = run(*command), run(*command, SEQREP_TASK_SERVER=sock)
        assert served.returncode == alone.returncode == 0 and served.stdout == alone.stdout, served.stderr
        assert "running here" not in served.stderr
        bad = ("validate", "--stage", "nope", "--date", "2024-01-01", "--warehouse", str(tmp_path / "wh"))
        alone, served = run(*bad), run(*bad, SEQREP_TASK_SERVER=sock)
        assert served.returncode == alone.returncode == 2 and served.stderr == alone.stderr
    finally:
        assert run("task-server", "stop").returncode == 0
    assert run("task-server", "status").returncode == 2 and not Path(sock).exists()
