"""``seqrep doctor``: check a warehouse, say what is wrong and what to run; ``--repair`` fixes what
can be fixed without judgement.

Checks:

- interrupted runs (``_txn/``): a committed one is finished, an uncommitted one rolled back
  (``pipelines/core/runs.py``), with ``--repair``; a run whose writer is alive is left alone;
- orphans under ``_staging`` (what a dead process left): removed with ``--repair``;
- stage manifests against their partitions: every output the manifest names exists with the
  rows it says (Parquet footers), every partition of a stage's tables has its manifest;
- publish records against their tables and index: the version's user and item tables hold the
  rows the record says, its index exists and has the record's items and dimension.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipelines.core import locks, runs
from pipelines.core import warehouse as layout
from pipelines.core.warehouse import Warehouse

#: The ETL stages whose manifests name their output partitions.
STAGE_TABLES = {
    "clean": (layout.CLEAN_EVENTS, layout.QUARANTINE_EVENTS),
    "sessionize": (layout.SESSIONS,),
    "sequences": (layout.SEQUENCES, layout.SPLITS, layout.VOCAB_ITEMS, layout.VOCAB_USERS),
    "graphs": (layout.ITEM_TRANSITIONS, layout.USER_ITEM, layout.ITEM_NODES, layout.USER_NODES),
}


@dataclass
class Finding:
    problem: bool  # False: information (a run in progress, one repaired)
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"{'PROBLEM' if self.problem else 'ok     '} {self.what}" + (f"\n          -> {self.fix}" if self.fix else "")


def examine(root: Path, repair: bool = False) -> list[Finding]:
    """Every check of the module docstring, in order; with ``repair``, runs and orphans fixed first."""
    wh = Warehouse(root)
    found = [*check_runs(wh, repair), *check_staging(wh, repair)]
    for stage in STAGE_TABLES:
        found += check_manifests(wh, stage)
    return found + check_published(wh)


def check_runs(wh: Warehouse, repair: bool) -> list[Finding]:
    out = []
    if repair:
        out += [Finding(False, f"run {r['id']} ({r.get('command', '?')}, started {r.get('started', '?')}): {r['outcome']}")
                for r in runs.recover(wh.root)]
    for folder, run in runs.pending(wh.root):
        held = locks.try_writer(wh.root, run.get("lock") or "unknown")
        if held is None:
            out.append(Finding(False, f"run {run['id']} is in progress ({run.get('command', '?')}, pid {run.get('pid')})"))
            continue
        held.close()
        committed = (folder / "COMMIT.json").is_file()
        out.append(Finding(True, f"run {run['id']} ({run.get('command', '?')}, started {run.get('started', '?')}) was "
                                 f"interrupted {'while committing' if committed else 'before its commit'}",
                           f"`seqrep doctor --repair` {'finishes it' if committed else 'rolls it back'}"))
    return out


def check_staging(wh: Warehouse, repair: bool) -> list[Finding]:
    if repair:
        gone = wh.clean_staging()
        if gone:
            return [Finding(False, f"removed {len(gone)} leftover(s) of dead processes under _staging")]
    orphans, other = wh.staging_leftovers()
    out = []
    if orphans:
        out.append(Finding(True, f"{len(orphans)} leftover(s) of dead processes under _staging, e.g. {orphans[0].name}",
                           "`seqrep doctor --repair` removes them"))
    if other:
        out.append(Finding(True, f"{len(other)} entry(ies) under _staging of another host or an older seqrep, "
                                 f"e.g. {other[0].name}", "remove them by hand once no writer runs"))
    return out


def check_manifests(wh: Warehouse, stage: str) -> list[Finding]:
    import pyarrow.parquet as pq

    from pipelines.nightly.retention import dropped_partitions

    out = []
    folder = wh.root / layout.MANIFESTS / f"stage={stage}"
    days = set()
    dropped = dropped_partitions(wh)
    for path in sorted(folder.glob("dt=*.json")):
        m = json.loads(path.read_text())
        d = date.fromisoformat(m["dt"])
        days.add(d)
        for table, stats in (m.get("outputs") or {}).items():
            part = wh.partition(table, d)
            if not part.is_dir() and f"{table}/dt={d}" in dropped:
                continue  # past its retention window
            if not part.is_dir():
                out.append(Finding(True, f"{stage} manifest of {d} names {table}/dt={d}, which does not exist",
                                   f"rerun the stage: `seqrep etl --date {d} --stages {stage}`"))
                continue
            rows = sum(pq.read_metadata(f).num_rows for f in wh.partition_files(table, d))
            if rows != int(stats.get("rows", -1)):
                out.append(Finding(True, f"{table}/dt={d} holds {rows:,} rows, its {stage} manifest says {stats.get('rows')}",
                                   f"rerun the stage: `seqrep etl --date {d} --stages {stage}`"))
    for table in STAGE_TABLES[stage]:
        orphans = [d for d in wh.partition_dates(table) if d not in days]
        if orphans:
            out.append(Finding(True, f"{table} has {len(orphans)} partition(s) without a {stage} manifest, e.g. {orphans[0]}",
                               f"rerun the stage for them: `seqrep etl --date {orphans[0]} --stages {stage}`"))
    return out


def check_published(wh: Warehouse) -> list[Finding]:
    import pyarrow.parquet as pq

    from pipelines.nightly.retention import dropped_partitions

    out = []
    dropped = dropped_partitions(wh)
    for method in wh.published_methods():
        for d in wh.published_days(method):
            if f"{layout.USER_EMBEDDINGS}/model={method}/dt={d}" in dropped:
                continue  # past its retention window
            rec = wh.publish_record(method, d) or {}
            version = rec.get("model_version", "?")
            fix = f"republish: `seqrep publish --method {method} --date {d} --version {version}`"
            for kind in ("users", "items"):
                table = wh.embeddings(kind, method, d, version)
                rows = sum(pq.read_metadata(f).num_rows for f in table.glob("*.parquet")) if table.is_dir() else None
                if rows != rec.get(kind):
                    out.append(Finding(True, f"{method} {d}: the published {kind} table of {version} holds "
                                             f"{rows if rows is not None else 'no'} rows, the record says {rec.get(kind)}", fix))
            meta_path = wh.index_folder(method, d, version) / "index.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            if (meta.get("items"), meta.get("dim")) != (rec.get("items"), rec.get("dim")):
                out.append(Finding(True, f"{method} {d}: the index of {version} has {meta.get('items')} items of dim "
                                         f"{meta.get('dim')}, the record {rec.get('items')} of dim {rec.get('dim')}", fix))
    return out
