"""The ``seqrep`` command line: a table of contents of its commands, and the one place where
errors become exit codes.

======  ==============================================================================
exit    meaning
======  ==============================================================================
0       done
1       a quality gate stopped the run (``GateFailed``; the message says which expectation)
2       bad input or usage, an invalid configuration, or warehouse data missing for the step
        (``UsageError``, ``ConfigError``, ``WarehouseError``, the model library's ``ModelError``)
3       Spark failed (the message is Spark's own, without the JVM stack)
4       an internal error: a bug in seqrep (an invariant broke), never a data problem
======  ==============================================================================

Anything else is unexpected: its traceback is printed (and its reason recorded for the DAG).
"""

from __future__ import annotations

import argparse
import os
import sys

from pipelines.commands import data, methods, nightly, privacy, query, settings, streaming
from pipelines.commands.common import common_options

#: The command groups, in the order ``seqrep --help`` lists them.
GROUPS = (data, methods, nightly, streaming, query, privacy, settings)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqrep", description="Behavior logs -> sequences and graphs -> published "
                                "user and item embeddings.", parents=[common_options()])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options(command=True)
    for group in GROUPS:
        group.register(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    from pipelines.nightly.failures import clear_reason, write_reason
    from pipelines.nightly.task_server import SERVER_ENV, run_remote

    server = os.environ.get(SERVER_ENV)
    if argv is None and server and sys.argv[1:2] != ["task-server"]:  # a process: the server runs it if it can
        code = run_remote(sys.argv[1:], server)
        if code is not None:
            return code
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given (train --nproc runs it again)
    clear_reason()
    try:
        args.func(args)
    except Exception as exc:
        code, message = exit_code(exc)
        if code is None:  # unexpected: keep the traceback, and say why for the DAG's failure record
            write_reason(f"seqrep {args.command}: {type(exc).__name__}: {exc}")
            raise
        print(f"seqrep {args.command}: {message}", file=sys.stderr)
        write_reason(f"seqrep {args.command}: {message}")
        return code
    return 0


def exit_code(exc: Exception) -> tuple[int | None, str]:
    """(exit code, one-line message) of an error (the module docstring's table); None: unexpected."""
    from models.errors import ModelError
    from pipelines.core.errors import GateFailed, InternalError, SeqrepError

    if isinstance(exc, GateFailed):
        return exc.exit_code, f"stopped by a quality gate\n{exc}"
    if isinstance(exc, InternalError):
        return exc.exit_code, f"internal error (a bug in seqrep): {exc}"
    if isinstance(exc, SeqrepError):
        return exc.exit_code, f"error: {exc}"
    if isinstance(exc, (ModelError, FileNotFoundError)):
        return 2, f"error: {exc}"
    if "pyspark" in sys.modules:  # Spark's errors: show the message, not the JVM stack
        from py4j.protocol import Py4JJavaError
        from pyspark.errors import PySparkException

        if isinstance(exc, PySparkException):
            return 3, f"Spark error: {str(exc).strip().splitlines()[0]}"
        if isinstance(exc, Py4JJavaError):
            return 3, f"Spark error: {_root_cause(exc)}"
    return None, ""


def _root_cause(exc: Exception) -> str:
    """The innermost Java exception of a Py4J error, in one line (e.g. a checksum error naming the file)."""
    cause = exc.java_exception
    while cause.getCause() is not None and cause.getCause() != cause:
        cause = cause.getCause()
    return str(cause.toString()).splitlines()[0]


if __name__ == "__main__":
    sys.exit(main())
