"""``seqrep spark-server``: the failure paths that need no JVM (the server itself runs in
tests/test_dag.py, whose nightly ETL tasks are its clients)."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREP_CACHE", str(tmp_path))  # pid and log files of this test only
    return tmp_path


def test_status_and_stop_without_a_server_say_so(state, capsys):
    from pipelines.cli import main

    assert main(["spark-server", "status", "--port", "15999"]) == 2
    assert "no Spark Connect server started by seqrep on port 15999" in capsys.readouterr().err
    assert main(["spark-server", "stop", "--port", "15999"]) == 0
    assert "no Spark Connect server" in capsys.readouterr().out


def test_a_stale_pid_file_is_not_a_running_server(state):
    from pipelines.etl import spark_server

    spark_server.pid_file(15998).write_text("999999999")  # no such process
    assert spark_server.running_pid(15998) is None


def test_a_port_taken_by_another_process_is_a_clear_error(state, capsys):
    from pipelines.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["spark-server", "start", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} is taken by another process" in err and "--port" in err
