"""The ETL's totals over a range of days, from its stage manifests (``seqrep summary``)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.warehouse import Warehouse


def summary_rows(cfg: Config, days: list[date]) -> dict[str, Any]:
    """Totals over ``days`` read from the stage manifests."""
    wh = Warehouse(cfg.warehouse)
    tot: dict[str, Any] = {"days": len(days), "raw": 0, "clean": 0, "quarantined": 0, "reasons": {}, "sessions": 0,
                           "transitions": 0, "user_item": 0, "missing": []}
    for d in days:
        key = f"dt={d.isoformat()}"
        c, s, g = (wh.read_manifest(st, key) for st in ("clean", "sessionize", "graphs"))
        if c is None:
            tot["missing"].append(str(d))
            continue
        tot["raw"] += c["rows_in"]
        tot["clean"] += c["rows_out"]
        tot["quarantined"] += c["rows_quarantined"]
        for r, n in c["quarantine_by_reason"].items():
            tot["reasons"][r] = tot["reasons"].get(r, 0) + n
        tot["sessions"] += (s or {}).get("sessions", 0)
        tot["transitions"] += (g or {}).get("edges", {}).get("item_transitions", 0)
        tot["user_item"] += (g or {}).get("edges", {}).get("user_item", 0)
    for name, table in (("users", layout.VOCAB_USERS), ("items", layout.VOCAB_ITEMS)):
        parts = wh.days_upto(table, days[-1])
        tot[name] = sum((wh.read_manifest("sequences", f"dt={d.isoformat()}") or {}).get(f"new_{name}", 0) for d in parts)
    return tot


def print_summary(cfg: Config, days: list[date]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = summary_rows(cfg, days)
    table = Table(title=f"seqrep warehouse {Path(cfg.warehouse).resolve()}  {days[0]} .. {days[-1]}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("raw events", f"{t['raw']:,}")
    table.add_row("clean events", f"{t['clean']:,}")
    table.add_row("quarantined", f"{t['quarantined']:,}")
    for r, n in sorted(t["reasons"].items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {r}", f"{n:,}")
    table.add_row("sessions (per day, summed)", f"{t['sessions']:,}")
    table.add_row("users (vocabulary)", f"{t['users']:,}")
    table.add_row("items (vocabulary)", f"{t['items']:,}")
    table.add_row("item-transition edges (daily, summed)", f"{t['transitions']:,}")
    table.add_row("user-item edges (daily, summed)", f"{t['user_item']:,}")
    Console().print(table)
    if t["missing"]:
        print(f"no clean partition for {len(t['missing'])} day(s): {', '.join(t['missing'][:5])}")
