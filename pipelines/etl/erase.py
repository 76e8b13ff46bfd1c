"""Erasure of users from the ETL's tables (``seqrep forget``; ``pipelines/nightly/forget.py``
runs it with the embedding tables and the audit record, in one run).

Every partition holding one of the users is rewritten without them, through the stages' own
writer (``write_daily``: staged, then swapped in by the run's commit):

- rows keyed by the user's id: ``raw/events`` (every source), ``clean/events``,
  ``quarantine/events``, ``sessions``, ``sequences``, and a cross-domain pair's ``users``,
  ``sequences`` and ``splits`` (by ``user_id``, ``source_user_id`` or ``target_user_id``);
- rows keyed by the user's index: ``splits``;
- the user's social edges, as user or as friend: ``raw/social`` (every source) and
  ``quarantine/social`` by id, ``graphs/social`` by index (other users' edges stay as they were);
- ``vocab/users``: the user's row becomes a tombstone (``user_id = "~erased:<index>"``), so every
  other index stays what it was and the vocabulary stays append-only;
- the graphs of every day the user had sessions on are computed again by the graphs stage from
  the rewritten sessions: the item-transition and item-node counts lose the user's part;
- ``quarantine/ingest`` (rows no day could be given, as raw text): a row whose text holds the id
  as a whole field is removed (a pseudonymous warehouse keeps no raw text there).

Each rewritten day's stage manifests get the counts of what is left (so rows in = rows out +
quarantined still holds) and an ``erased`` entry with the rows removed per table and the request.
A user's events are per-user in every rule of clean, sessionize and sequences, so removing their
rows leaves every other row as a rerun without them would give it; the exceptions, said in the
README: an event id the user shared with another user's event (that one stays a ``duplicate``),
and a cross-domain pair's overlap figures in manifests of earlier days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.warehouse import Warehouse, pair_table

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

TOMBSTONE = "~erased:"


@dataclass
class Erased:
    """What an erasure rewrote: rows removed per table and day, partitions, bytes written."""

    rows: dict[str, dict[date, int]] = field(default_factory=dict)  # table -> day -> rows removed
    by_reason: dict[date, dict[str, int]] = field(default_factory=dict)  # quarantined rows removed, per reason
    sessions: dict[date, int] = field(default_factory=dict)  # the users' sessions removed, per day
    tombstones: int = 0
    partitions: list[str] = field(default_factory=list)

    def add(self, table: str, counts: dict[date, int]) -> None:
        if counts:
            self.rows.setdefault(table, {}).update(counts)

    @property
    def total(self) -> dict[str, int]:
        return {t: sum(c.values()) for t, c in sorted(self.rows.items())}


def _days_with(df: "DataFrame", hit: "Column") -> dict[date, int]:
    """Rows matching ``hit`` per day (``dt``)."""
    return {r["dt"]: int(r["count"]) for r in df.where(hit).groupBy("dt").count().collect()}


def _rewrite(spark: "SparkSession", wh: Warehouse, table: str, hit: "Column", out: Erased,
             among: set[date] | None = None) -> dict[date, dict[str, Any]]:
    """Rewrite the days of ``table`` (those in ``among``, when given) holding rows where ``hit`` is
    true, without them (a null, e.g. a quarantined row without a user id, is no hit); returns the
    new write's stats per day."""
    from pyspark.sql import functions as F

    from pipelines.etl.spark import read_partitions, write_daily

    days = [d for d in wh.partition_dates(table) if among is None or d in among]
    if not days:
        return {}
    counts = _days_with(read_partitions(spark, wh, table, days), hit)
    if not counts:
        return {}
    todo = sorted(counts)
    keep = read_partitions(spark, wh, table, todo).where(~F.coalesce(hit, F.lit(False)))
    # Read fully before the swap replaces what it reads (the run stages, but a re-read must not
    # see its own output): one checkpoint per table, a few partitions each.
    stats = write_daily(keep.localCheckpoint(), wh, table, todo)
    out.add(table, counts)
    out.partitions += [f"{table}/dt={d}" for d in todo]
    return stats


def erase(spark: "SparkSession", cfg: Config, stored_ids: list[str], wh: Warehouse, request: str) -> Erased:
    """Remove the users ``stored_ids`` (as the warehouse stores them) from the ETL's tables in the
    run of ``wh``; returns what was rewritten (module docstring)."""
    from pyspark.sql import functions as F

    from pipelines.etl import graphs

    out = Erased()
    ids = sorted(set(stored_ids))
    by_id = F.col("user_id").isin(ids)

    # Indexes first (the tombstones replace the ids the other tables are matched by).
    idx = _user_indexes(spark, wh, ids)
    stats: dict[str, dict[date, dict[str, Any]]] = {}
    for source in wh.raw_sources():
        table = f"{layout.RAW_EVENTS}/source={source}"
        stats[table] = _rewrite(spark, wh, table, by_id, out)
    # Every later table but a pair's holds a user's rows only on days with their raw events (clean
    # and quarantine judge a day's raw rows; sessions, sequences and splits hold the users active
    # that day): those days only are read. A pair's rows are under its target id, which a mapped
    # user's source-side days lack: all of them are read. The erasure gate's scan checks it all.
    raw_days = {d for t, c in out.rows.items() if t.startswith(layout.RAW_EVENTS) for d in c}
    out.by_reason = _grouped(spark, wh, layout.QUARANTINE_EVENTS, ids, "reason", raw_days)
    out.sessions = {d: len(c) for d, c in _grouped(spark, wh, layout.SESSIONS, ids, "session_id", raw_days).items()}
    for table in (layout.CLEAN_EVENTS, layout.QUARANTINE_EVENTS, layout.SESSIONS, layout.SEQUENCES):
        stats[table] = _rewrite(spark, wh, table, by_id, out, raw_days)
    if idx:
        stats[layout.SPLITS] = _rewrite(spark, wh, layout.SPLITS, F.col("user_idx").isin(list(idx)), out, raw_days)
        stats[layout.VOCAB_USERS] = _tombstone(spark, wh, idx, out)
    _erase_social(spark, wh, ids, list(idx), out)
    for pair in cfg.cross_domain.pairs:
        for base in (layout.CROSS_DOMAIN_USERS, layout.CROSS_DOMAIN_SEQUENCES, layout.CROSS_DOMAIN_SPLITS):
            table = pair_table(base, pair.name)
            cols = ("user_id", "source_user_id", "target_user_id") if base == layout.CROSS_DOMAIN_USERS else ("user_id",)
            stats[table] = _rewrite(spark, wh, table, _any_in(cols, ids), out)
    graph_days = sorted(out.rows.get(layout.SESSIONS, {}))
    if graph_days:
        graphs.run(spark, cfg, graph_days, wh=wh)  # its own manifests, from the rewritten sessions
        out.partitions += [f"{t}/dt={d}" for t in (layout.ITEM_TRANSITIONS, layout.USER_ITEM, layout.ITEM_NODES,
                                                   layout.USER_NODES) for d in graph_days]
    _ingest_quarantine(spark, wh, ids, out)
    _update_manifests(wh, out, stats, request)
    return out


def _erase_social(spark: "SparkSession", wh: Warehouse, ids: list[str], idx: list[int], out: Erased) -> None:
    """The users' social edges, on either end (by id in the raw and quarantined rows, by index in the graph)."""
    from pyspark.sql import functions as F

    either = ("user_id", "friend_id")
    for source in wh.raw_sources(layout.RAW_SOCIAL):
        _rewrite(spark, wh, f"{layout.RAW_SOCIAL}/source={source}", _any_in(either, ids), out)
    _rewrite(spark, wh, layout.QUARANTINE_SOCIAL, _any_in(either, ids), out)
    if idx:
        _rewrite(spark, wh, layout.SOCIAL, F.col("user_idx").isin(idx) | F.col("friend_idx").isin(idx), out)


def _any_in(cols: tuple[str, ...], ids: list[str]) -> "Column":
    from pyspark.sql import functions as F

    hit = F.lit(False)
    for c in cols:
        hit = hit | F.coalesce(F.col(c).isin(ids), F.lit(False))
    return hit


def _user_indexes(spark: "SparkSession", wh: Warehouse, ids: list[str]) -> dict[int, date]:
    """The vocabulary index of each user (and the day of its vocabulary row)."""
    from pyspark.sql import functions as F

    from pipelines.etl.spark import read_partitions

    days = wh.partition_dates(layout.VOCAB_USERS)
    if not days:
        return {}
    rows = read_partitions(spark, wh, layout.VOCAB_USERS, days).where(F.col("user_id").isin(ids)).collect()
    return {int(r["user_idx"]): r["dt"] for r in rows}


def _tombstone(spark: "SparkSession", wh: Warehouse, idx: dict[int, date], out: Erased) -> dict[date, dict[str, Any]]:
    from pyspark.sql import functions as F

    from pipelines.etl.spark import read_partitions, write_daily

    days = sorted(set(idx.values()))
    vocab = read_partitions(spark, wh, layout.VOCAB_USERS, days)
    gone = F.col("user_idx").isin(list(idx))
    vocab = vocab.withColumn("user_id", F.when(gone, F.concat(F.lit(TOMBSTONE), F.col("user_idx").cast("string")))
                             .otherwise(F.col("user_id")))
    stats = write_daily(vocab.localCheckpoint(), wh, layout.VOCAB_USERS, days)
    out.tombstones += len(idx)
    out.partitions += [f"{layout.VOCAB_USERS}/dt={d}" for d in days]
    return stats


def _grouped(spark: "SparkSession", wh: Warehouse, table: str, ids: list[str], by: str,
             among: set[date]) -> dict[date, dict[str, int]]:
    """The users' rows of ``table`` on the days ``among`` per day and value of ``by`` (before they
    are removed): the quarantined rows per reason, the sessions."""
    from pyspark.sql import functions as F

    from pipelines.etl.spark import read_partitions

    days = [d for d in wh.partition_dates(table) if d in among]
    if not days:
        return {}
    out: dict[date, dict[str, int]] = {}
    rows = read_partitions(spark, wh, table, days).where(F.col("user_id").isin(ids))
    for r in rows.groupBy("dt", by).count().collect():
        out.setdefault(r["dt"], {})[r[by]] = int(r["count"])
    return out


def _ingest_quarantine(spark: "SparkSession", wh: Warehouse, ids: list[str], out: Erased) -> None:
    """Rows of ``quarantine/ingest`` whose raw text holds an id as a whole field."""
    from pyspark.sql import functions as F

    from pipelines.etl.spark import write_table

    base = wh.table(layout.QUARANTINE_INGEST)
    for folder in sorted(base.glob("source=*")) if base.is_dir() else []:
        table = f"{layout.QUARANTINE_INGEST}/{folder.name}"
        df = spark.read.parquet(str(wh.current(wh.table(table))))
        pattern = "(^|[^\\w@.-])(" + "|".join(re.escape(i) for i in ids) + ")($|[^\\w@-])"
        hit = F.coalesce(F.col("raw").rlike(pattern), F.lit(False))
        n = df.where(hit).count()
        if n:
            write_table(df.where(~hit).localCheckpoint(), wh, table)
            out.rows.setdefault(table, {})[date.min] = n
            out.partitions.append(table)


def _update_manifests(wh: Warehouse, out: Erased, stats: dict[str, dict[date, dict[str, Any]]], request: str) -> None:
    """Each rewritten day's stage manifests: the counts of what is left, and an ``erased`` entry."""
    rows = out.rows
    gone = lambda table, d: rows.get(table, {}).get(d, 0)  # noqa: E731
    days = sorted({d for t, c in rows.items() for d in c if d != date.min})
    for d in days:
        key = f"dt={d.isoformat()}"
        raw = sum(gone(t, d) for t in rows if t.startswith(layout.RAW_EVENTS))
        for stage, removed, adjust in (
            ("clean", {"raw": raw, layout.CLEAN_EVENTS: gone(layout.CLEAN_EVENTS, d),
                       layout.QUARANTINE_EVENTS: gone(layout.QUARANTINE_EVENTS, d)},
             {"rows_in": raw, "rows_out": gone(layout.CLEAN_EVENTS, d),
              "rows_quarantined": gone(layout.QUARANTINE_EVENTS, d)}),
            ("sessionize", {layout.SESSIONS: gone(layout.SESSIONS, d)},
             {"rows_in": gone(layout.CLEAN_EVENTS, d), "rows_out": gone(layout.SESSIONS, d)}),
            ("sequences", {layout.SEQUENCES: gone(layout.SEQUENCES, d), layout.SPLITS: gone(layout.SPLITS, d)},
             {"rows_in": gone(layout.SESSIONS, d), "rows_out": gone(layout.SEQUENCES, d)}),
        ):
            m = wh.read_manifest(stage, key)
            if m is None or not any(removed.values()):
                continue
            for k, n in adjust.items():
                m[k] = int(m.get(k, 0)) - n
            if stage == "sessionize" and "sessions" in m:
                m["sessions"] -= out.sessions.get(d, 0)
            if stage == "clean":
                for reason, n in out.by_reason.get(d, {}).items():
                    m["quarantine_by_reason"][reason] = m["quarantine_by_reason"].get(reason, 0) - n
                m["quarantine_by_reason"] = {r: n for r, n in m["quarantine_by_reason"].items() if n}
            for table, s in stats.items():
                if d in s and table in m.get("outputs", {}):
                    m["outputs"][table] = s[d]
            m.setdefault("erased", []).append({"request": request, "rows": {t: n for t, n in removed.items() if n}})
            wh.write_manifest(stage, key, m)
        for source in wh.raw_sources():
            table = f"{layout.RAW_EVENTS}/source={source}"
            n = gone(table, d)
            m = wh.read_manifest("ingest", f"source={source}/{key}")
            if n and m is not None:  # a nightly ingest's manifest (a bulk import's is below)
                m["rows_in"], m["rows_out"] = m["rows_in"] - n, m["rows_out"] - n
                m["days"][d.isoformat()] = stats[table][d]
                m.setdefault("erased", []).append({"request": request, "rows": {table: n}})
                wh.write_manifest("ingest", f"source={source}/{key}", m)
    for source in wh.raw_sources():  # a bulk import: one manifest over its days
        table = f"{layout.RAW_EVENTS}/source={source}"
        m = wh.read_manifest("ingest", f"source={source}")
        per_day = {d: n for d, n in rows.get(table, {}).items() if m is not None and d.isoformat() in m["days"]}
        q = rows.get(f"{layout.QUARANTINE_INGEST}/source={source}", {}).get(date.min, 0)
        if m is None or not (per_day or q):
            continue
        n = sum(per_day.values())
        m["rows_in"], m["rows_out"], m["rows_quarantined"] = m["rows_in"] - n - q, m["rows_out"] - n, m["rows_quarantined"] - q
        for d in per_day:
            m["days"][d.isoformat()] = stats[table][d]
        m.setdefault("erased", []).append({"request": request, "rows": {table: n, layout.QUARANTINE_INGEST: q}})
        wh.write_manifest("ingest", f"source={source}", m)
