"""A throwaway PostgreSQL cluster for tests: ``initdb`` and ``pg_ctl`` as the ``postgres`` user
(the server refuses to run as root), listening on 127.0.0.1 only, on a free port, trust
authentication (nothing leaves loopback and the cluster is deleted after the run), stopped by its
pid file."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipelines.etl.processes import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def available() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if not (BIN / "initdb").is_file():
        return f"PostgreSQL 15 is not installed ({BIN})"
    if os.geteuid() != 0 and os.environ.get("USER") != "postgres":
        return "starting PostgreSQL needs root (to run it as the postgres user) or the postgres user"
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def cluster(database: str = "airflow") -> Iterator[str]:
    """Start a cluster in a fresh folder under the system's temp folder (pytest's are private to
    root, and the server runs as postgres) with ``database``; yields its SQLAlchemy URL (psycopg2).
    The folder is deleted after it stops."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="seqrep-postgres-"))
    data, sock = root / "data", root / "sock"
    for folder in (data, sock):
        folder.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        for folder in (data, sock):
            shutil.chown(folder, "postgres")
    port = free_port()
    run = lambda cmd: subprocess.run(_as_postgres(cmd), check=True, capture_output=True, text=True)  # noqa: E731
    run([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
    run([str(BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "start", "-o",
         f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"])
    try:
        run([str(BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database])
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(_as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
