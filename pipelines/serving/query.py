"""Queries on the warehouse and its embedding tables: SQL (DuckDB) and nearest neighbours (FAISS).

The Python API mirrors ``seqrep query``::

    from pipelines.serving.query import Query

    q = Query("warehouse")
    q.sql("SELECT model, dt, count(*) AS users FROM user_embeddings GROUP BY ALL")
    q.user("196", method="sasrec")                  # the user's vector and its metadata
    q.similar_items("50", method="sasrec", k=10)    # nearest items by <v_i, v_j>
    q.similar_users("196", method="sasrec", k=10)
    q.recommend("196", method="sasrec", k=10)       # by <u, v_i>, the user's seen items excluded
    q.recommend("u7", method="emcdr.shop_to_app", domain="app")   # a cross-domain pair run's, the app's items
    q.recommend("196", method="sasrec", recent=["50", "172"])       # plus a session in progress

``day=None`` means the newest day with embeddings of that method (each result says which day).
Only published versions are read: the day's publish record names the live version, whose tables
and index ``seqrep publish`` built together; a query checks that they agree before it runs. Each
call reads under the warehouse's read lock (``pipelines/core/locks.py``): a commit happens
before it or after it, never in the middle.

Live vectors (``seqrep stream``, ``pipelines/serving/live.py``): on the newest published day,
``user``, ``recommend`` and ``similar_users`` use a user's live vector when it is of the published
version and its newest event is after the published day, and say so (``live: True`` and the
``event_time``); the user's live events are then seen items too.

``recent`` encodes the user's history followed by the request's events with the published model
kept in memory (``pipelines/serving/session.py``: loaded on the first such request of a method
and day, no Spark, no write); the rows then say how many events of each were used.

Bounds (``query`` of the config): ``k`` at most ``max_k``; SQL returns at most ``max_rows`` rows,
runs at most ``timeout_s`` seconds, within ``memory_limit``; each stops with a message saying so.

Safety: every query runs on a read-only DuckDB connection that holds only the views of
``sql/views.sql``; file access is limited to the warehouse and the configuration is locked.
User SQL must be one SELECT whose tables are those views (or its own CTEs) and whose table
functions are generators (``range``, ``generate_series``, ``unnest``): ``DROP``, ``COPY``,
``ATTACH``, ``SET`` and file-reading functions such as ``read_csv`` are refused before they run.
Ids, methods and dates are always bound parameters, never formatted into SQL.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import tempfile
import threading
from datetime import date
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from pipelines.core import runs
from pipelines.core.config import QueryConfig
from pipelines.core.errors import UsageError
from pipelines.core.privacy import Pseudonyms
from pipelines.core.sqlfiles import load_sql, sql_literal
from pipelines.core.warehouse import Warehouse

F = TypeVar("F", bound=Callable[..., Any])

VIEWS = ("events", "sessions", "sequences", "metrics", "metric_segments", "published", "user_embeddings",
         "item_embeddings", "user_items", "user_embeddings_live", "live_events")
#: Table functions user SQL may call: generators that read no files.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})


class QueryError(UsageError):
    """A query that cannot run: unknown id, method or date, or SQL that is not a read of the views."""


def connect(warehouse: str | Path, limits: QueryConfig = QueryConfig(), spill: Path | None = None):
    """A read-only DuckDB connection with the warehouse views (``sql/views.sql``), file access
    limited to the warehouse, memory bounded (spilling to ``spill``), configuration locked.
    Returns (connection, views created)."""
    import duckdb

    wh = Warehouse(warehouse)
    if not wh.root.is_dir():
        raise QueryError(f"no warehouse at {wh.root}")
    tmp = Path(tempfile.mkdtemp(prefix="seqrep-views-"))
    try:
        db = tmp / "views.duckdb"
        created = []
        with duckdb.connect(str(db)) as con:
            for statement in _statements(load_sql("views")):
                name = re.search(r"CREATE VIEW (\w+)", statement).group(1)
                try:
                    con.execute(statement.replace(":root", sql_literal(str(wh.root))))
                    created.append(name)
                except duckdb.IOException:  # the table has no files yet
                    continue
        con = duckdb.connect(str(db), read_only=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the open connection keeps its file
    con.execute("SET allowed_directories = $1", [[str(wh.root) + "/"]])
    con.execute("SET memory_limit = $1", [limits.memory_limit])
    if spill is not None:
        con.execute("SET temp_directory = $1", [str(spill)])
    con.execute("SET max_temp_directory_size = $1", [limits.max_temp_directory_size])
    con.execute("SET enable_progress_bar = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con, created


def consistent(fn: F) -> F:
    """Run a query method under the warehouse's read lock, after finishing any commit its writer
    left half applied (``pipelines/core/runs.py``)."""

    @functools.wraps(fn)
    def call(self: "Query", *args: Any, **kwargs: Any) -> Any:
        with runs.reading(self.wh.root):
            return fn(self, *args, **kwargs)

    return call  # type: ignore[return-value]


def _statements(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def check_select(con, query: str, views: tuple[str, ...] | list[str]) -> None:
    """Refuse anything but one SELECT over ``views`` (see the module docstring)."""
    import duckdb

    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"SQL does not parse: {exc}") from None
    if len(statements) != 1:
        raise QueryError(f"one statement per query, got {len(statements)}")
    kind = str(statements[0].type).rsplit(".", 1)[-1]
    if kind != "SELECT":
        raise QueryError(f"only SELECT queries run here (read-only); got {kind}")
    tree = json.loads(con.execute("SELECT json_serialize_sql($1)", [query]).fetchall()[0][0])
    if tree.get("error"):
        raise QueryError(f"only SELECT queries run here: {tree.get('error_message')}")
    ctes: set[str] = set()
    tables: list[str] = []
    functions: list[str] = []
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node.get("type") == "BASE_TABLE":
                tables.append(str(node.get("table_name", "")))
            elif node.get("type") == "TABLE_FUNCTION":
                functions.append(str((node.get("function") or {}).get("function_name", "")))
            cte_map = node.get("cte_map")
            if isinstance(cte_map, dict):
                ctes.update(str(entry.get("key")) for entry in cte_map.get("map", []))
            stack.extend(node.values())
    for name in functions:
        if name.lower() not in ALLOWED_TABLE_FUNCTIONS:
            raise QueryError(f"table function {name}() is not allowed: query the views ({', '.join(views)})")
    for name in tables:
        if name not in ctes and name.lower() not in views:
            raise QueryError(f"unknown table {name!r}: the views are {', '.join(views)}")


class Query:
    """Read-only queries on one warehouse (see the module docstring)."""

    def __init__(self, warehouse: str | Path, ef_search: int | None = None, limits: QueryConfig | None = None,
                 key: bytes | None = None):
        self.wh = Warehouse(warehouse)
        #: A pseudonymous warehouse's ids (``pipelines/core/privacy.py``): ``key``, else as its record says.
        self.pseudonyms = Pseudonyms(self.wh.root, key)
        self.limits = limits or QueryConfig()
        self._spill = Path(tempfile.mkdtemp(prefix="seqrep-query-spill-"))
        with runs.reading(self.wh.root):
            self.con, self.views = connect(self.wh.root, self.limits, self._spill)
        self.ef_search = ef_search
        self._indexes: dict[tuple[str, date, str], Any] = {}
        self._sessions: dict[tuple[str, date, str], Any] = {}

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self._spill, ignore_errors=True)

    def __enter__(self) -> "Query":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQL ---------------------------------------------------------------------------------------
    @consistent
    def sql(self, query: str, params: list | dict | None = None):
        """Rows of a SELECT over the views, as a pyarrow Table; ``params`` bind ``?``/``$name``
        markers. At most ``limits.max_rows`` rows, ``limits.timeout_s`` seconds (module docstring)."""
        import duckdb
        import pyarrow as pa

        check_select(self.con, query, self.views)
        cap, timeout = self.limits.max_rows, self.limits.timeout_s
        timer = threading.Timer(timeout, self.con.interrupt)  # DuckDB has no statement timeout of its own
        timer.start()
        reader = None
        try:
            reader = self.con.sql(query, params=params).to_arrow_reader(min(cap + 1, 65536))
            batches, rows = [], 0
            for batch in reader:  # streamed: a huge result stops at the cap, not after it is computed
                batches.append(batch)
                rows += batch.num_rows
                if rows > cap:
                    raise QueryError(f"the query returns more than {cap:,} rows (query.max_rows): "
                                     "add a LIMIT, or aggregate")
            return pa.Table.from_batches(batches, reader.schema)
        except duckdb.InterruptException:
            raise QueryError(f"the query ran longer than {timeout:g}s (query.timeout_s) and was stopped") from None
        except duckdb.OutOfMemoryException as exc:
            raise QueryError(f"the query needs more memory than {self.limits.memory_limit} (query.memory_limit): "
                             f"{str(exc).splitlines()[0]}") from None
        except duckdb.CatalogException as exc:
            raise QueryError(f"{str(exc).splitlines()[0]} (views here: {', '.join(self.views) or 'none yet'})") from None
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from None
        finally:
            timer.cancel()
            if reader is not None:
                reader.close()  # the connection takes no new query while a result is open

    # -- embeddings ----------------------------------------------------------------------------------
    def methods(self) -> list[str]:
        """Methods with published embeddings (``seqrep publish``: gated, indexed, recorded)."""
        return self.wh.published_methods()

    def days(self, method: str) -> list[date]:
        """Days with published embeddings of ``method``."""
        if method not in self.methods():
            have = ", ".join(self.methods()) or "none"
            raise QueryError(f"no published embeddings of method {method!r} in {self.wh.root} (published: {have}); "
                             f"run `seqrep infer --method {method}` then `seqrep publish --method {method}`")
        return self.wh.published_days(method)

    def resolve_day(self, method: str, day: date | str | None) -> date:
        days = self.days(method)
        if day is None:
            return days[-1]
        day = date.fromisoformat(day) if isinstance(day, str) else day
        if day not in days:
            raise QueryError(f"no {method} embeddings as of {day}; days: {', '.join(map(str, days))}")
        return day

    def live(self, method: str, d: date) -> dict[str, Any]:
        """The publish record of ``method`` for day ``d``: the live version, its size and index."""
        record = self.wh.publish_record(method, d)
        if record is None:
            raise QueryError(f"no {method} embeddings published as of {d}")
        return record

    def stored_id(self, user_id: str) -> str:
        """The id the warehouse keeps for a user: the id itself, or in a pseudonymous warehouse its
        pseudonym (for SQL: ``q.sql("... WHERE user_id = $u", {"u": q.stored_id("196")})``)."""
        return self.pseudonyms.stored(str(user_id))

    @consistent
    def user(self, user_id: str, method: str, day: date | str | None = None) -> dict[str, Any]:
        """A user's row of the user table: vector and metadata (``user_id`` as the warehouse
        stores it: a pseudonymous warehouse's pseudonym); the live vector when there is a newer
        one (module docstring), with ``live`` and ``event_time``."""
        d = self.resolve_day(method, day)
        stored = self.stored_id(user_id)
        fresh = self._live_user(method, d, stored)
        if fresh is not None:
            return fresh
        rows = self.con.execute(
            "SELECT user_id, user_idx, model AS method, dt, model_version, dim, n_events, fold_in, vector "
            "FROM user_embeddings WHERE model = $m AND dt = $d AND user_id = $id",
            {"m": method, "d": d, "id": stored}).fetchall()
        if not rows:
            raise QueryError(f"user {user_id!r} has no {method} embedding as of {d} (unknown id, or no events up to {d})")
        cols = ("user_id", "user_idx", "method", "dt", "model_version", "dim", "n_events", "fold_in", "vector")
        out = dict(zip(cols, rows[0]))
        out["vector"] = [float(x) for x in out["vector"]]
        return {**out, "live": False, "event_time": None}

    def _live_user(self, method: str, d: date, stored: str) -> dict[str, Any] | None:
        """The user's live vector if it is newer than day ``d``'s table (module docstring), else None."""
        from pipelines.serving.live import day_end

        if "user_embeddings_live" not in self.views or d != self.days(method)[-1]:
            return None
        version = self.live(method, d)["model_version"]
        rows = self.con.execute(
            "SELECT user_id, user_idx, model AS method, model_version, dim, n_live, event_time, vector "
            "FROM user_embeddings_live WHERE model = $m AND user_id = $id AND model_version = $v AND event_time >= $after",
            {"m": method, "id": stored, "v": version, "after": day_end(d)}).fetchall()
        if not rows:
            return None
        out = dict(zip(("user_id", "user_idx", "method", "model_version", "dim", "n_live", "event_time", "vector"), rows[0]))
        return {**out, "dt": d, "fold_in": True, "vector": [float(x) for x in out["vector"]], "live": True}

    def _live_items(self, method: str, d: date, stored: str) -> list[int]:
        """Item indexes of the user's live events after day ``d``, in (ts, event_id) order."""
        from pipelines.serving.live import day_end

        if "live_events" not in self.views or d != self.days(method)[-1]:
            return []
        return [int(r[0]) for r in self.con.execute(
            "SELECT item_idx FROM live_events WHERE model = $m AND user_id = $id AND ts >= $after "
            "AND item_idx IS NOT NULL ORDER BY ts, event_id", {"m": method, "id": stored, "after": day_end(d)}).fetchall()]

    def _item(self, item_id: str, method: str, d: date, domain: str | None) -> tuple[int, np.ndarray]:
        rows = self.con.execute(
            "SELECT item_idx, domain, vector FROM item_embeddings WHERE model = $m AND dt = $d AND item_id = $id "
            "AND ($dom IS NULL OR domain = $dom)", {"m": method, "d": d, "id": str(item_id), "dom": domain}).fetchall()
        if not rows:
            raise QueryError(f"item {item_id!r}{f' in domain {domain!r}' if domain else ''} has no {method} embedding "
                             f"as of {d} (unknown id, or first seen after the model's day)")
        if len(rows) > 1:
            raise QueryError(f"item id {item_id!r} exists in domains {sorted(r[1] for r in rows)}: pass a domain")
        return int(rows[0][0]), np.asarray(rows[0][2], dtype=np.float32)

    def _index(self, method: str, d: date):
        """The live version's index, checked against its publish record (dimension and items)."""
        from pipelines.serving.index import load_index

        record = self.live(method, d)
        key = (method, d, record["model_version"])
        if key not in self._indexes:
            index = load_index(self.wh, method, d, record["model_version"], self.ef_search)
            if (index.dim, index.items, index.index.ntotal) != (record["dim"], record["items"], record["items"]):
                raise QueryError(f"the item index of {method} {record['model_version']} as of {d} does not match its "
                                 f"tables (index: {index.index.ntotal:,} items of dim {index.dim}; tables: "
                                 f"{record['items']:,} of dim {record['dim']}); republish: `seqrep publish --method "
                                 f"{method} --date {d} --version {record['model_version']}`")
            self._indexes[key] = index
        return self._indexes[key]

    def _items_by_idx(self, method: str, d: date, idx: list[int]) -> dict[int, tuple[str, str]]:
        rows = self.con.execute(
            "SELECT item_idx, domain, item_id FROM item_embeddings WHERE model = $m AND dt = $d "
            "AND list_contains($idx, item_idx)", {"m": method, "d": d, "idx": idx}).fetchall()
        return {int(i): (dom, item) for i, dom, item in rows}

    def _session(self, method: str, d: date):
        """The published model of (method, day) with the histories and catalogue requests need."""
        from pipelines.serving.session import SessionEncoder

        version = self.live(method, d)["model_version"]
        key = (method, d, version)
        if key not in self._sessions:
            self._sessions[key] = SessionEncoder.load(self.con, self.wh, method, d, version)
        return self._sessions[key]

    def _ranked_items(self, method: str, d: date, query: np.ndarray, k: int, exclude: set[int],
                      domain: str | None = None, session: Any = None) -> list[dict[str, Any]]:
        """The top ``k`` items by inner product with ``query``, without ``exclude`` (and only of
        ``domain``, when given); names from ``session``'s catalogue when given (in memory)."""
        index = self._index(method, d)
        allowed = None
        if domain is not None and session is not None:
            allowed = set(np.flatnonzero(session.domains == domain).tolist())
        if domain is not None and not allowed:
            allowed = {int(r[0]) for r in self.con.execute(
                "SELECT item_idx FROM item_embeddings WHERE model = $m AND dt = $d AND domain = $dom",
                {"m": method, "d": d, "dom": domain}).fetchall()}
            if not allowed:
                domains = [r[0] for r in self.con.execute(
                    "SELECT DISTINCT domain FROM item_embeddings WHERE model = $m AND dt = $d ORDER BY 1",
                    {"m": method, "d": d}).fetchall()]
                raise QueryError(f"{method} has no items of domain {domain!r} as of {d}; its domains: {', '.join(domains)}")
        want = k + len(exclude)
        if allowed is not None:  # the domain's share of the catalogue: expect that share of each answer
            want = min(index.index.ntotal, want * -(-index.index.ntotal // len(allowed)))
        while True:
            scores, ids = index.search(query[None, :], want)
            hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0])
                    if i >= 0 and int(i) not in exclude and (allowed is None or int(i) in allowed)]
            if len(hits) >= k or (ids[0] < 0).any() or want >= index.index.ntotal:
                break
            want = min(2 * want, index.index.ntotal)  # an approximate index may return excluded items first
        hits = hits[:k]
        names = (session.names if session is not None else
                 lambda idx: self._items_by_idx(method, d, idx))([i for i, _ in hits])
        return [{"rank": r + 1, "domain": names[i][0], "item_id": names[i][1], "item_idx": i, "score": s,
                 "method": method, "dt": d} for r, (i, s) in enumerate(hits)]

    @consistent
    def similar_items(self, item_id: str, method: str, k: int = 10, day: date | str | None = None,
                      domain: str | None = None) -> list[dict[str, Any]]:
        """The ``k`` items with the largest ``<v_i, v_j>`` (the item itself excluded)."""
        d = self.resolve_day(method, day)
        idx, vec = self._item(item_id, method, d, domain)
        return self._ranked_items(method, d, vec, self._k(k), {idx})

    @consistent
    def recommend(self, user_id: str, method: str, k: int = 10, day: date | str | None = None,
                  domain: str | None = None, recent: list[str] | None = None) -> list[dict[str, Any]]:
        """The ``k`` items with the largest ``<u, v_i>`` among those the user has no event on up to
        the day (of ``domain`` only, when given: the target of a cross-domain pair run, say).
        ``recent``: item ids of events newer than the tables (a session in progress): ``u`` is then
        encoded on request from the user's history followed by them (module docstring), and
        each row says ``history`` and ``recent`` (events used) and ``recent_unknown``."""
        d = self.resolve_day(method, day)
        k = self._k(k)
        stored = self.stored_id(user_id)
        if recent is not None:
            session = self._session(method, d)
            enc = session.encode(stored, [str(i) for i in recent], domain, before=self._live_items(method, d, stored))
            seen = enc.seen | (self._seen(enc.user_idx, d) if enc.truncated else set())
            rows = self._ranked_items(method, d, enc.vector, k, seen, domain, session)
            return [{**r, "history": enc.history, "recent": enc.recent, "recent_unknown": enc.unknown} for r in rows]
        u = self.user(user_id, method, d)
        seen = self._seen(u["user_idx"], d) | (set(self._live_items(method, d, stored)) if u["live"] else set())
        rows = self._ranked_items(method, d, np.asarray(u["vector"], np.float32), k, seen, domain)
        return [{**r, "live": u["live"], "event_time": u["event_time"]} for r in rows]

    def _seen(self, user_idx: int | None, d: date) -> set[int]:
        """Items the user has an event on up to ``d`` (``user_items``)."""
        if user_idx is None or "user_items" not in self.views:
            return set()
        return {int(r[0]) for r in self.con.execute(
            "SELECT DISTINCT item_idx FROM user_items WHERE user_idx = $u AND dt <= $d", {"u": user_idx, "d": d}).fetchall()}

    @consistent
    def similar_users(self, user_id: str, method: str, k: int = 10, day: date | str | None = None) -> list[dict[str, Any]]:
        """The ``k`` users with the largest ``<u, u'>`` (exact search over the day's user table)."""
        import faiss

        d = self.resolve_day(method, day)
        me = self.user(user_id, method, d)
        tbl = self.con.sql("SELECT user_idx, user_id, vector FROM user_embeddings WHERE model = $m AND dt = $d",
                           params={"m": method, "d": d}).to_arrow_table()
        vectors = tbl.column("vector").combine_chunks()
        v = np.ascontiguousarray(vectors.values.to_numpy().reshape(len(tbl), -1), dtype=np.float32)
        index = faiss.IndexFlatIP(v.shape[1])
        index.add(v)
        k = self._k(k)
        scores, rows = index.search(np.asarray([me["vector"]], np.float32), min(k + 1, len(v)))
        user_idx, ids = tbl.column("user_idx").to_numpy(), tbl.column("user_id").to_pylist()
        hits = [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0 and ids[r] != me["user_id"]][:k]
        return [{"rank": n + 1, "user_id": ids[r], "user_idx": int(user_idx[r]), "score": s, "method": method, "dt": d,
                 "live": me["live"], "event_time": me["event_time"]} for n, (r, s) in enumerate(hits)]


    def _k(self, k: int) -> int:
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise QueryError(f"k must be a positive integer, got {k!r}")
        if k > self.limits.max_k:
            raise QueryError(f"k = {k:,} is more than query.max_k = {self.limits.max_k:,}")
        return int(k)
