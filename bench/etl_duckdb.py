"""The whole ETL as an embedded DuckDB reference, and an order-free digest to compare it with Spark's.

Given a warehouse that holds ``raw/events/source=*/dt=*`` (written by ``seqrep ingest``) and a
``Config``, :func:`run_reference` computes, over every raw day at once, on one DuckDB connection,
the tables the Spark ETL writes (``pipelines/etl/``), and writes them as Parquet under an output
folder with the warehouse's layout (``<out>/<table>/dt=D/*.parquet``):

=========================== ===================================================================
step (Spark module)          tables
=========================== ===================================================================
clean (``clean.py``)         ``clean/events``, ``quarantine/events`` (one ``reason`` per row)
sessionize (``sessionize.py``) ``sessions`` (the SQL text of ``sql/sessionize.sql`` itself)
sequences (``sequences.py``) ``vocab/items``, ``vocab/users``, ``sequences``, ``splits``
graphs (``graphs.py``)       ``graphs/item_transitions`` (``sql/item_transitions.sql``),
                             ``graphs/user_item``, ``graphs/item_nodes``, ``graphs/user_nodes``
=========================== ===================================================================

The SQL is in this module, one named query per table or intermediate table (``LABELED``,
``SESSION_ROWS``, ``VOCAB``, ``SEQUENCES``, ...); each query's comment names the Spark function it
mirrors. Intermediate tables are DuckDB temp tables (spilled to ``<out>/.duckdb_tmp`` when memory
runs short).

One pass over every day is what ``seqrep etl --all`` (or ``--from/--to``) does in Spark: each
stage reads the whole range, sessionize carries rows only from the day before the range (none
for a fresh warehouse: ``is_carry`` is 0 everywhere), sequences continue from no earlier state
and the duplicate window has no committed days before the range. A range equals day-by-day runs
(``tests/test_reliability.py``), so the reference also equals a warehouse built night by night.

:func:`digest` is an order-free digest of a table's Parquet files, from the Spark warehouse or
from this output alike: per day, the row count and the sum of a 64-bit hash of the row, every
column cast to a canonical type first (integers as BIGINT, timestamps as epoch microseconds,
doubles as their text, so NaN is one value; arrays keep their order, their elements cast the
same way). :func:`compare` lists the differences between the two, per table, with the
quarantined rows by (day, reason) and Spark's clean manifests' counts. Run::

    python bench/etl_duckdb.py --warehouse wh-ml --config configs/movielens.yaml --out /tmp/duckref \\
        --threads 2 --compare

It prints seconds per step and, with ``--compare``, whether each table agrees (exit 1 if one
differs). Tested against Spark by ``tests/test_duckdb_reference.py``.
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from pipelines.core.config import Config, load_config
from pipelines.core.sqlfiles import duckdb_sql, sql_literal

#: ``pipelines/etl/clean.py``'s BLANK (Java: ``^[\\s\\p{Z}\\x{FEFF}]*$``) in RE2. Java's ``\\s`` is
#: ``[ \\t\\n\\x0B\\f\\r]`` but RE2's lacks ``\\x0B``; and Java's ``$`` also matches before a final line
#: terminator, of which only NEL (U+0085) is not already in the class: hence ``\\x{85}?``. Checked
#: equal to Java 17's on every single code point and on the terminator cases.
BLANK_RE2 = r"^[\t\n\x0B\f\r \p{Z}\x{FEFF}]*\x{85}?$"

#: Every table written, and its columns in Spark's order (``pipelines/core/schema.py``) with the
#: canonical kind the digest casts them to: s string, i integer, d double, t timestamp, date,
#: and arrays of those (``i[]``...).
_EVENT = {"event_id": "s", "user_id": "s", "item_id": "s", "event_type": "s", "ts": "t", "domain": "s",
          "value": "d", "session_hint": "s"}
TABLES: dict[str, dict[str, str]] = {
    "clean/events": {**_EVENT, "dt": "date"},
    "quarantine/events": {**_EVENT, "source": "s", "parse_error": "s", "reason": "s", "dt": "date"},
    "sessions": {**_EVENT, "session_id": "s", "session_seq": "i", "session_start": "t", "prev_item_id": "s",
                 "prev_domain": "s", "gap_s": "d", "dt": "date"},
    "vocab/items": {"item_idx": "i", "domain": "s", "item_id": "s", "first_seen": "t", "dt": "date"},
    "vocab/users": {"user_idx": "i", "user_id": "s", "first_seen": "t", "dt": "date"},
    "sequences": {"user_idx": "i", "user_id": "s", "item_idx": "i[]", "event_type": "s[]", "ts": "t[]",
                  "length": "i", "n_events": "i", "n_new": "i", "dt": "date"},
    "splits": {"user_idx": "i", "protocol": "s", "split": "s", "history_len": "i", "target_idx": "i[]",
               "dt": "date"},
    "graphs/item_transitions": {"src_idx": "i", "dst_idx": "i", "count": "i", "weight": "d", "dt": "date"},
    "graphs/user_item": {"user_idx": "i", "item_idx": "i", "count": "i", "weight": "d", "first_ts": "t",
                         "last_ts": "t", "dt": "date"},
    "graphs/item_nodes": {"item_idx": "i", "domain": "s", "item_id": "s", "events": "i", "users": "i",
                          "out_degree": "i", "in_degree": "i", "dt": "date"},
    "graphs/user_nodes": {"user_idx": "i", "user_id": "s", "events": "i", "items": "i", "sessions": "i",
                          "dt": "date"},
}
_CANON = {
    "s": "{c}", "i": "CAST({c} AS BIGINT)", "d": "CAST({c} AS VARCHAR)", "t": "epoch_us({c})",
    "date": "CAST({c} AS DATE)", "s[]": "CAST({c} AS VARCHAR[])", "i[]": "CAST({c} AS BIGINT[])",
    "t[]": "list_transform({c}, lambda x: epoch_us(x))",
}

# -- clean: pipelines/etl/clean.py ----------------------------------------------------------------

MACROS = f"""
CREATE OR REPLACE TEMP MACRO blank(s) AS s IS NULL OR regexp_matches(s, '{BLANK_RE2}');
-- Spark's array_distinct: the first occurrence of each element, in order.
CREATE OR REPLACE TEMP MACRO distinct_in_order(l) AS list_filter(l, lambda x, i: list_position(l, x) = i);
"""

#: Raw events of every source and day, with their ``source`` and ``dt`` (clean.read_raw).
RAW = """
CREATE OR REPLACE TEMP VIEW raw AS
SELECT * FROM read_parquet({files}, hive_partitioning = true, union_by_name = true,
                           hive_types = {{'source': VARCHAR, 'dt': DATE}})
"""

#: clean.label and clean._duplicates: the row rules in order (first match wins), then duplicates
#: (a passed row that is not the first passed one of its (event_id, dt), or whose event_id passed
#: on one of the window's days before), then bot_user on the valid events per (user_id, dt).
LABELED = """
CREATE OR REPLACE TEMP TABLE labeled AS
WITH ruled AS (
  SELECT *,
         CASE
           WHEN parse_error IS NOT NULL THEN 'parse_error'
           WHEN blank(user_id) OR blank(item_id) OR blank(domain) THEN 'null_id'
           WHEN event_type IS NULL OR NOT list_contains($event_types, event_type) THEN 'unknown_event_type'
           WHEN ts IS NULL THEN 'parse_error'
           WHEN ts < $ts_min::TIMESTAMPTZ OR ts >= $ts_max::TIMESTAMPTZ THEN 'ts_out_of_window'
           WHEN ts >= CAST(dt + 1 AS TIMESTAMPTZ) THEN 'ts_future'
           WHEN ts < CAST(dt AS TIMESTAMPTZ) THEN 'late_arrival'
           WHEN isnan(value) OR isinf(value) THEN 'invalid_value'
           WHEN value < 0 THEN 'negative_value'
         END AS reason
  FROM raw
),
numbered AS (
  -- passed rows first, so the first of them is row 1 whatever failed before it (Spark: ASC = NULLS FIRST)
  SELECT *,
         CASE WHEN reason IS NULL THEN row_number() OVER (
           PARTITION BY event_id, dt
           ORDER BY reason IS NULL DESC, ts NULLS FIRST, source NULLS FIRST, user_id NULLS FIRST,
                    item_id NULLS FIRST, event_type NULLS FIRST, value NULLS FIRST) END AS n
  FROM ruled
),
passed AS (SELECT DISTINCT event_id, dt FROM ruled WHERE reason IS NULL),
earlier AS (
  SELECT DISTINCT p.event_id, p.dt
  FROM passed p JOIN passed s
    ON s.event_id = p.event_id AND s.dt < p.dt AND s.dt >= p.dt - CAST($window_days AS INTEGER)
),
deduped AS (
  SELECT numbered.* EXCLUDE (reason, n),
         CASE WHEN reason IS NULL AND (n > 1 OR earlier.event_id IS NOT NULL) THEN 'duplicate'
              ELSE reason END AS reason
  FROM numbered LEFT JOIN earlier USING (event_id, dt)
)
SELECT * EXCLUDE (reason),
       CASE WHEN reason IS NULL
             AND count(*) FILTER (WHERE reason IS NULL) OVER (PARTITION BY user_id, dt) > $bot_max
            THEN 'bot_user' ELSE reason END AS reason
FROM deduped
"""

CLEAN = """
CREATE OR REPLACE TEMP TABLE clean AS
SELECT event_id, user_id, item_id, event_type, ts, domain, value, session_hint, dt
FROM labeled WHERE reason IS NULL
"""

QUARANTINE = """
SELECT event_id, user_id, item_id, event_type, ts, domain, value, session_hint, source, parse_error, reason, dt
FROM labeled WHERE reason IS NOT NULL
"""

# -- sessionize: pipelines/etl/sessionize.py ------------------------------------------------------

#: build_sessions' input view: clean events, none carried (one pass over every day).
SESSION_INPUT = """
CREATE OR REPLACE TEMP VIEW events AS
SELECT event_id, user_id, item_id, event_type, ts, domain, value, session_hint, dt,
       epoch_us(ts) AS ts_us, 0 AS is_carry, CAST(NULL AS VARCHAR) AS carry_session_id,
       CAST(NULL AS INTEGER) AS carry_seq, CAST(NULL AS BIGINT) AS carry_start_us
FROM clean
"""

#: build_sessions: ``sql/sessionize.sql``'s rows with session_start as a timestamp, in Spark's column order.
SESSION_ROWS = """
CREATE OR REPLACE TEMP TABLE session_rows AS
SELECT event_id, user_id, item_id, event_type, ts, domain, value, session_hint, session_id, session_seq,
       CAST(make_timestamp(session_start_us) AS TIMESTAMPTZ) AS session_start,
       prev_item_id, prev_domain, gap_s, dt
FROM ({sessionize}) AS s
"""

# -- sequences: pipelines/etl/sequences.py --------------------------------------------------------

#: extend_vocab: indexes from 1 in order of first appearance (min (ts, event_id), then the keys).
VOCAB = """
CREATE OR REPLACE TEMP TABLE {table} AS
WITH firsts AS (
  SELECT {keys}, ts AS first_seen, event_id AS first_event
  FROM session_rows
  QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY ts, event_id) = 1
)
SELECT CAST(row_number() OVER (ORDER BY first_seen, first_event, {keys}) AS INTEGER) AS {idx},
       {keys}, first_seen, CAST(first_seen AS DATE) AS dt
FROM firsts
"""

#: The session rows with their vocabulary indexes (sequences._write's ``indexed``, graphs' ``ev``).
INDEXED = """
CREATE OR REPLACE TEMP TABLE indexed AS
SELECT u.user_idx, s.user_id, i.item_idx, s.domain, s.item_id, s.event_type, s.ts, s.event_id, s.session_id, s.dt
FROM session_rows s
JOIN vocab_items i USING (domain, item_id)
JOIN vocab_users u USING (user_id)
"""

#: build_snapshots: per (user, active day) the history up to the end of the day, its last
#: $max_length events by (ts, event_id, item_idx, event_type) (Spark's array_sort of structs).
#: Clean keeps every ts inside its dt, so the events up to the end of day D are those of days <= D.
SEQUENCES = """
CREATE OR REPLACE TEMP TABLE sequences AS
WITH histories AS (
  SELECT user_idx, user_id,
         list({'ts': ts, 'item_idx': item_idx, 'event_type': event_type}
              ORDER BY ts, event_id, item_idx, event_type) AS hist
  FROM indexed GROUP BY user_idx, user_id
),
active AS (
  SELECT user_idx, dt, CAST(sum(count(*)) OVER (PARTITION BY user_idx ORDER BY dt) AS BIGINT) AS n_events
  FROM indexed GROUP BY user_idx, dt
),
kept AS (
  SELECT user_idx, user_id, dt, n_events,
         list_slice(hist, greatest(1, n_events - $max_length + 1), n_events) AS kept
  FROM active JOIN histories USING (user_idx)
)
SELECT user_idx, user_id,
       list_transform(kept, lambda e: e.item_idx) AS item_idx,
       list_transform(kept, lambda e: e.event_type) AS event_type,
       list_transform(kept, lambda e: e.ts) AS ts,
       CAST(len(kept) AS INTEGER) AS length, n_events,
       CAST(len(list_filter(kept, lambda e: e.ts >= CAST(dt AS TIMESTAMPTZ))) AS INTEGER) AS n_new, dt
FROM kept
"""

#: build_splits: leave-one-out and temporal targets (1-based positions, as Spark's element_at).
SPLITS = """
SELECT user_idx, 'loo' AS protocol, 'valid' AS split, CAST(length - 2 AS INTEGER) AS history_len,
       [item_idx[length - 1]] AS target_idx, dt
FROM sequences WHERE length >= 3
UNION ALL
SELECT user_idx, 'loo', 'test', CAST(length - 1 AS INTEGER), [item_idx[length]], dt
FROM sequences WHERE length >= 3
UNION ALL
SELECT user_idx, 'temporal', 'valid', CAST(length - n_new - 1 AS INTEGER), [item_idx[length - n_new]], dt
FROM sequences WHERE length - n_new >= 2
UNION ALL
SELECT user_idx, 'temporal', 'test', CAST(length - n_new AS INTEGER),
       distinct_in_order(list_slice(item_idx, length - n_new + 1, length)), dt
FROM sequences WHERE n_new > 0 AND length - n_new >= 1
"""

# -- graphs: pipelines/etl/graphs.py ---------------------------------------------------------------

#: graphs.event_weights as a table (build_graphs' map lookup).
WEIGHTS = """
CREATE OR REPLACE TEMP TABLE event_weights AS
SELECT unnest($types) AS event_type, CAST(unnest($weights) AS DOUBLE) AS weight
"""

#: ``sql/item_transitions.sql``'s input view: session rows with the destination event's weight.
STEPS = """
CREATE OR REPLACE TEMP VIEW steps AS
SELECT s.*, w.weight FROM session_rows s LEFT JOIN event_weights w USING (event_type)
"""

#: build_graphs' ``transitions``: ``sql/item_transitions.sql`` with both ends' indexes.
TRANSITIONS = """
CREATE OR REPLACE TEMP TABLE transitions AS
SELECT src.item_idx AS src_idx, dst.item_idx AS dst_idx, CAST(t.count AS BIGINT) AS count, t.weight, t.dt
FROM ({item_transitions}) AS t
JOIN vocab_items src ON src.domain = t.src_domain AND src.item_id = t.src_item_id
JOIN vocab_items dst ON dst.domain = t.dst_domain AND dst.item_id = t.dst_item_id
"""

#: build_graphs' ``user_item``.
USER_ITEM = """
SELECT user_idx, item_idx, count(*) AS count, sum(w.weight) AS weight, min(ts) AS first_ts, max(ts) AS last_ts, dt
FROM indexed LEFT JOIN event_weights w USING (event_type)
GROUP BY dt, user_idx, item_idx
"""

#: build_graphs' ``item_nodes``: out- and in-degree count distinct edges of the day.
ITEM_NODES = """
WITH nodes AS (
  SELECT dt, item_idx, domain, item_id, count(*) AS events, count(DISTINCT user_idx) AS users
  FROM indexed GROUP BY dt, item_idx, domain, item_id
),
out_deg AS (SELECT dt, src_idx AS item_idx, count(*) AS out_degree FROM transitions GROUP BY dt, src_idx),
in_deg AS (SELECT dt, dst_idx AS item_idx, count(*) AS in_degree FROM transitions GROUP BY dt, dst_idx)
SELECT item_idx, domain, item_id, events, users, coalesce(out_degree, 0) AS out_degree,
       coalesce(in_degree, 0) AS in_degree, dt
FROM nodes LEFT JOIN out_deg USING (dt, item_idx) LEFT JOIN in_deg USING (dt, item_idx)
"""

#: build_graphs' ``user_nodes``.
USER_NODES = """
SELECT user_idx, user_id, count(*) AS events, count(DISTINCT item_idx) AS items,
       count(DISTINCT session_id) AS sessions, dt
FROM indexed GROUP BY dt, user_idx, user_id
"""


# -- running the reference -------------------------------------------------------------------------

def connect(threads: int, temp_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """One in-memory connection: ``threads`` threads, UTC (day bounds and ``to_date`` as Spark's)."""
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    if temp_dir is not None:
        con.execute(f"SET temp_directory = {sql_literal(str(temp_dir))}")
    con.execute(MACROS)
    return con


def parquet_files(pattern: str) -> list[str]:
    """The Parquet files of a glob, without hidden ones (Spark skips ``_`` and ``.`` names)."""
    return sorted(f for f in glob.glob(pattern) if not Path(f).name.startswith(("_", ".")))


def _files_literal(files: list[str]) -> str:
    return "[" + ", ".join(sql_literal(f) for f in files) + "]"


def write_table(con: duckdb.DuckDBPyConnection, query: str, out: Path, table: str) -> None:
    """``query``'s rows as ``<out>/<table>/dt=D/*.parquet`` (the warehouse's layout, no ``dt`` column
    inside the files). A table without rows gets its folder and no file."""
    target = out / table
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    con.execute(f"COPY ({query}) TO {sql_literal(str(target))} "
                "(FORMAT parquet, PARTITION_BY (dt), OVERWRITE_OR_IGNORE true)")


def clean_step(con: duckdb.DuckDBPyConnection, cfg: Config, warehouse: Path, out: Path) -> None:
    """clean.py over every raw day: ``labeled``, then clean and quarantined events."""
    files = parquet_files(str(Path(warehouse) / "raw" / "events" / "source=*" / "dt=*" / "*.parquet"))
    if not files:
        raise FileNotFoundError(f"{warehouse}: no raw events under raw/events/source=*/dt=* (run `seqrep ingest` first)")
    con.execute(RAW.format(files=_files_literal(files)))
    c = cfg.clean
    con.execute(LABELED, {"event_types": list(c.event_types), "ts_min": c.ts_min, "ts_max": c.ts_max,
                          "window_days": c.duplicate_window_days, "bot_max": c.bot_max_events_per_day})
    con.execute(CLEAN)
    write_table(con, "SELECT * FROM clean", out, "clean/events")
    write_table(con, QUARANTINE, out, "quarantine/events")


def sessionize_step(con: duckdb.DuckDBPyConnection, cfg: Config, warehouse: Path, out: Path) -> None:
    """sessionize.py over every clean day, with ``sql/sessionize.sql``'s own text."""
    s = cfg.sessionize
    con.execute(SESSION_INPUT)
    con.execute(SESSION_ROWS.format(sessionize=duckdb_sql("sessionize")),
                {"gap_us": int(round(s.gap_minutes * 60_000_000)), "max_events": s.max_events})
    write_table(con, "SELECT * FROM session_rows", out, "sessions")


def sequences_step(con: duckdb.DuckDBPyConnection, cfg: Config, warehouse: Path, out: Path) -> None:
    """sequences.py: both vocabularies, the snapshots and the splits."""
    con.execute(VOCAB.format(table="vocab_items", keys="domain, item_id", idx="item_idx"))
    con.execute(VOCAB.format(table="vocab_users", keys="user_id", idx="user_idx"))
    con.execute(INDEXED)
    con.execute(SEQUENCES, {"max_length": cfg.sequences.max_length})
    write_table(con, "SELECT * FROM vocab_items", out, "vocab/items")
    write_table(con, "SELECT * FROM vocab_users", out, "vocab/users")
    write_table(con, "SELECT * FROM sequences", out, "sequences")
    write_table(con, SPLITS, out, "splits")


def graphs_step(con: duckdb.DuckDBPyConnection, cfg: Config, warehouse: Path, out: Path) -> None:
    """graphs.py: the four tables, with ``sql/item_transitions.sql``'s own text."""
    g = cfg.graphs
    con.execute(WEIGHTS, {"types": list(g.event_weights), "weights": list(g.event_weights.values())})
    con.execute(STEPS)
    con.execute(TRANSITIONS.format(item_transitions=duckdb_sql("item_transitions")),
                {"drop_self_loops": g.drop_self_loops})
    write_table(con, "SELECT * FROM transitions", out, "graphs/item_transitions")
    write_table(con, USER_ITEM, out, "graphs/user_item")
    write_table(con, ITEM_NODES, out, "graphs/item_nodes")
    write_table(con, USER_NODES, out, "graphs/user_nodes")


STEPS_IN_ORDER = (("clean", clean_step), ("sessionize", sessionize_step), ("sequences", sequences_step),
                  ("graphs", graphs_step))


def run_reference(warehouse: str | Path, cfg: Config, out: str | Path, threads: int = 1) -> dict[str, float]:
    """Every step over every raw day of ``warehouse`` into ``out``; seconds per step (writes included)."""
    warehouse, out = Path(warehouse).resolve(), Path(out).resolve()
    if out == warehouse or warehouse in out.parents or out in warehouse.parents:
        raise ValueError(f"--out {out} must be outside the warehouse {warehouse} (it is only read)")
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    con = connect(threads, out / ".duckdb_tmp")
    try:
        for name, step in STEPS_IN_ORDER:
            t0 = time.perf_counter()
            step(con, cfg, warehouse, out)
            times[name] = time.perf_counter() - t0
    finally:
        con.close()
        shutil.rmtree(out / ".duckdb_tmp", ignore_errors=True)
    return times


# -- digest and comparison -------------------------------------------------------------------------

def _pattern(folder_or_glob: str | Path, table: str) -> str:
    text = str(folder_or_glob)
    return text if any(ch in text for ch in "*?[") else str(Path(text) / table / "dt=*" / "*.parquet")


def digest(folder_or_glob: str | Path, table: str, columns: list[str] | None = None,
           con: duckdb.DuckDBPyConnection | None = None) -> dict[str, Any]:
    """Order-free digest of ``table``'s Parquet files under a warehouse-like folder (or a glob, read
    with hive partitioning): rows and hash sum in all and per day, the column types, and for
    ``quarantine/events`` the rows per (day, reason). ``columns``: a subset to hash (default all)."""
    kinds = TABLES[table]
    cols = [c for c in (columns or list(kinds)) if c != "dt"]
    empty: dict[str, Any] = {"table": table, "rows": 0, "hash": 0, "days": {}, "reasons": {}, "types": {}}
    files = parquet_files(_pattern(folder_or_glob, table))
    if not files:
        return empty
    own = con is None
    con = con or connect(1)
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW t AS SELECT * FROM read_parquet({_files_literal(files)}, "
                    "hive_partitioning = true, union_by_name = true)")
        canon = ", ".join(_CANON[kinds[c]].format(c=f'"{c}"') for c in cols)
        days = {str(d): (int(n), int(h)) for d, n, h in con.execute(
            f"SELECT CAST(dt AS DATE), count(*), sum(hash({canon})) FROM t GROUP BY 1").fetchall()}
        types = {name: typ for name, typ, *_ in con.execute("DESCRIBE SELECT * FROM t").fetchall()}
        reasons = {}
        if "reason" in kinds:
            reasons = {f"{d}/{r}": int(n) for d, r, n in con.execute(
                "SELECT CAST(dt AS DATE), reason, count(*) FROM t GROUP BY 1, 2").fetchall()}
    finally:
        if own:
            con.close()
    return {**empty, "rows": sum(n for n, _ in days.values()), "hash": sum(h for _, h in days.values()),
            "days": days, "reasons": reasons, "types": types}


def _differences(a: dict[str, Any], b: dict[str, Any], check_types: bool = True) -> list[str]:
    """What differs between two digests (a: Spark's, b: the reference's), day by day."""
    out = []
    if (a["rows"], a["hash"]) != (b["rows"], b["hash"]):
        out.append(f"rows {a['rows']:,} (Spark) vs {b['rows']:,} (DuckDB), hash sums "
                   f"{'equal' if a['hash'] == b['hash'] else 'differ'}")
        days = sorted(d for d in set(a["days"]) | set(b["days"]) if a["days"].get(d) != b["days"].get(d))
        shown = ", ".join(f"{d} ({a['days'].get(d, (0, 0))[0]} vs {b['days'].get(d, (0, 0))[0]} rows)"
                          for d in days[:8])
        out.append(f"{len(days)} day(s) differ: {shown}{' ...' if len(days) > 8 else ''}")
    keys = sorted(k for k in set(a["reasons"]) | set(b["reasons"]) if a["reasons"].get(k) != b["reasons"].get(k))
    if keys:
        out.append("quarantined rows by day/reason differ: " + ", ".join(
            f"{k} {a['reasons'].get(k, 0)} vs {b['reasons'].get(k, 0)}" for k in keys[:8]))
    if check_types and a["types"] and b["types"] and a["types"] != b["types"]:
        diff = {c: (a["types"].get(c), b["types"].get(c)) for c in set(a["types"]) | set(b["types"])
                if a["types"].get(c) != b["types"].get(c)}
        out.append(f"column types differ (Spark, DuckDB): {diff}")
    return out


def manifest_differences(warehouse: Path, clean: dict[str, Any], quarantine: dict[str, Any]) -> list[str]:
    """Spark's clean manifests (``_manifests/stage=clean/dt=D.json``: rows out and quarantined by
    reason, counted when Spark wrote the day) against the reference's rows, day by day."""
    out = []
    for path in sorted((Path(warehouse) / "_manifests" / "stage=clean").glob("dt=*.json")):
        m, day = json.loads(path.read_text()), path.stem[3:]
        ref_reasons = {k.split("/")[1]: n for k, n in quarantine["reasons"].items() if k.startswith(day + "/")}
        ref = (clean["days"].get(day, (0, 0))[0], ref_reasons)
        if (m["rows_out"], m["quarantine_by_reason"]) != ref:
            out.append(f"{day}: manifest says {m['rows_out']} clean, quarantined {m['quarantine_by_reason']}; "
                       f"DuckDB {ref[0]} clean, quarantined {ref[1]}")
    return out


def check_tables(warehouse: str | Path, out: str | Path, threads: int = 1) -> list[dict[str, Any]]:
    """Per table: Spark's rows, the reference's rows and the differences (none: they agree). Two
    checks more: the reference's clean events against the event columns of Spark's sessions
    (every clean event is a session row, unchanged), and against Spark's clean manifests."""
    con = connect(threads)
    try:
        results, digests = [], {}
        for table in TABLES:
            a, b = digest(warehouse, table, con=con), digest(out, table, con=con)
            digests[table] = b
            results.append({"table": table, "spark_rows": a["rows"], "duckdb_rows": b["rows"],
                            "differences": _differences(a, b)})
        event_cols = list(TABLES["clean/events"])
        a = digest(warehouse, "sessions", columns=event_cols, con=con)
        b = digest(out, "clean/events", columns=event_cols, con=con)
        results.append({"table": "clean/events = event columns of Spark's sessions", "spark_rows": a["rows"],
                        "duckdb_rows": b["rows"], "differences": _differences(a, b, check_types=False)})
    finally:
        con.close()
    results.append({"table": "clean manifests (rows out, quarantined by reason, per day)",
                    "spark_rows": None, "duckdb_rows": None,
                    "differences": manifest_differences(Path(warehouse), digests["clean/events"],
                                                        digests["quarantine/events"])})
    return results


def compare(warehouse: str | Path, out: str | Path, threads: int = 1) -> list[str]:
    """Every difference between Spark's tables in ``warehouse`` and the reference's in ``out``."""
    return [f"{r['table']}: {d}" for r in check_tables(warehouse, out, threads) for d in r["differences"]]


# -- command line ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", required=True, help="a warehouse with raw events (only read)")
    ap.add_argument("--config", help="the seqrep config the Spark ETL ran with")
    ap.add_argument("--out", required=True, help="folder for the reference's tables (replaced table by table)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare", action="store_true", help="compare with the warehouse's Spark tables; exit 1 on a difference")
    ap.add_argument("--json", dest="json_out", help="write the seconds per step (and the comparison) here")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, warehouse=args.warehouse)
    try:
        times = run_reference(args.warehouse, cfg, args.out, args.threads)
    except (FileNotFoundError, ValueError) as exc:
        print(f"etl_duckdb: {exc}", file=sys.stderr)
        return 2
    for name, sec in times.items():
        print(f"{name:<12} {sec:8.2f} s")
    print(f"{'total':<12} {sum(times.values()):8.2f} s   (DuckDB {duckdb.__version__}, {args.threads} thread(s))")
    report: dict[str, Any] = {"seconds": times, "threads": args.threads, "duckdb": duckdb.__version__}
    code = 0
    if args.compare:
        report["tables"] = check_tables(args.warehouse, args.out, args.threads)
        for r in report["tables"]:
            rows = "" if r["spark_rows"] is None else f"  {r['spark_rows']:,} rows"
            print(f"{'agree ' if not r['differences'] else 'DIFFER'}  {r['table']}{rows}")
            for d in r["differences"]:
                print(f"          {d}")
        code = 1 if any(r["differences"] for r in report["tables"]) else 0
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
