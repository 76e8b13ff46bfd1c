"""The errors seqrep raises on purpose, one hierarchy, each kind with its exit code.

=============== ======= ==========================================================================
class           exit    meaning
=============== ======= ==========================================================================
UsageError      2       bad input or usage: a flag, an id, a SQL text, an input file (InputError)
ConfigError     2       an invalid configuration file or value (the message names the key)
WarehouseError  2       warehouse data missing or inconsistent: run an earlier step (the message
                        says which)
WarehouseBusy   5       another run holds the warehouse's writer lock (the message names it): try later
GateFailed      1       a quality gate stopped the run (the message says which expectation)
InternalError   4       a bug: an invariant of seqrep's own code broke (never a data problem)
=============== ======= ==========================================================================

The command line maps them to exit codes in one place (``pipelines/cli.py``); Spark engine
errors exit 3. The ``models`` package is a library below this one: its errors
(``models.errors.ModelError``) are bad usage of a method or its data and exit 2.
"""

from __future__ import annotations

from typing import ClassVar


class SeqrepError(Exception):
    """Base of every error seqrep raises on purpose; ``exit_code`` is what ``seqrep`` exits with."""

    exit_code: ClassVar[int] = 2


class UsageError(SeqrepError, ValueError):
    """Bad input or usage: a command-line value, an id, a query, an input file."""


class InputError(UsageError):
    """An input file or column cannot be read; the message names the file and the problem."""


class ConfigError(SeqrepError, ValueError):
    """A config file or value is invalid; the message names the file and the key."""


class WarehouseError(SeqrepError, RuntimeError):
    """Warehouse data is missing, unsafe or inconsistent; the message names it and what to run."""


class WarehouseBusy(WarehouseError):
    """Another run writes the warehouse (the message names its pid, host, command and start)."""

    exit_code: ClassVar[int] = 5


class GateFailed(SeqrepError, RuntimeError):
    """A critical expectation failed; the message says which, on how many rows, with samples."""

    exit_code: ClassVar[int] = 1


class InternalError(SeqrepError, RuntimeError):
    """An invariant of seqrep's own code broke: a bug, never a data problem."""

    exit_code: ClassVar[int] = 4


class AccountingError(InternalError):
    """Rows in != rows out + rows quarantined: a bug in a stage."""
