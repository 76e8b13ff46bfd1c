"""What every command shares: the common options, the configuration, days and printing."""

from __future__ import annotations

import argparse
import json
import os
from datetime import date
from typing import Any

from pipelines.core.config import Config, load_config
from pipelines.core.errors import UsageError
from pipelines.core.warehouse import Warehouse, daterange


def common_options(*, command: bool = False) -> argparse.ArgumentParser:
    """``--warehouse`` and ``--config``, accepted by every command (before or after its name).

    The copy a command's parser gets (``command=True``) has no default: argparse writes a
    subparser's defaults over what the main parser parsed, so a default there would erase
    ``seqrep --config X ingest``'s ``--config``."""
    common = argparse.ArgumentParser(add_help=False)
    default = {"default": argparse.SUPPRESS} if command else {}
    common.add_argument("--warehouse", help="warehouse folder (env SEQREP_WAREHOUSE; default ./warehouse)", **default)
    common.add_argument("--config", help="YAML config file (env SEQREP_CONFIG)", **default)
    return common


def parse_date(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s!r}") from None


def config_file(args: argparse.Namespace) -> str | None:
    return args.config or os.environ.get("SEQREP_CONFIG") or None


def config(args: argparse.Namespace) -> Config:
    """Defaults < ``--config`` (or ``SEQREP_CONFIG``) < environment < ``--warehouse``."""
    return load_config(config_file(args), warehouse=args.warehouse)


def days(args: argparse.Namespace, wh: Warehouse) -> list[date]:
    """The days of ``--date``, ``--from``/``--to`` or ``--all`` (every day with raw events)."""
    if getattr(args, "all", False):
        # Only the days that have raw events: a day without events changes nothing downstream.
        found = wh.raw_days()
        if not found:
            raise UsageError(f"no raw events in {wh.root}; run `seqrep ingest` first")
        return found
    if args.date:
        return [args.date]
    if args.end is None:
        raise UsageError("--from needs --to")
    return daterange(args.start, args.end)


def names(text: str) -> list[str]:
    """A comma-separated list (``pop,markov,sasrec``)."""
    return [m.strip() for m in text.split(",") if m.strip()]


def show(rows: list[dict[str, Any]], as_json: bool, title: str = "") -> None:
    """Rows as JSON, or as a table (long vectors shortened)."""
    if as_json:
        print(json.dumps(rows, default=str, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None)
    cols = list(rows[0]) if rows else []
    for c in cols:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[_cell(r[c]) for c in cols])
    Console(width=200).print(table) if rows else print(f"{title}: no rows")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (list, tuple)) and len(v) > 4:
        return "[" + ", ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in v[:3]) + f", ... ] ({len(v)})"
    return str(v)
