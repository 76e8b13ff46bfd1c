"""Entry point of a task server (``seqrep task-server start`` runs ``python -m pipelines.task_server
SOCKET``): the ``seqrep`` command line, served to client processes (``pipelines/nightly/task_server.py``)."""

import sys
from pathlib import Path

from pipelines.cli import main
from pipelines.nightly.task_server import serve

if __name__ == "__main__":
    serve(Path(sys.argv[1]), run=main)
