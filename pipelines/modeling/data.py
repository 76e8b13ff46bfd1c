"""The one data-access module of the modeling layer: the warehouse as of a day, as ``SequenceData``.

``load(warehouse, day, protocol)`` reads the ETL's tables with DuckDB (no JVM for training):
every user's sequence as of the day (``sql/sequences_asof.sql``), the evaluation splits of a
protocol (``sql/splits_asof.sql``) and the item vocabulary's size, into the flat arrays of
``models.data.SequenceData``. What a method needs besides the sequences (LightGCN's user-item
graph, MMoE's behaviors, the item texts and vectors of the fused SASRec) it asks for in ``prepare``
through ``data.side``, a :class:`WarehouseSide` bound to the same warehouse and day: the models
never see a path, a table or a line of SQL.

A user's events are ordered by (time, event id): equal timestamps (MovieLens rates many movies
in the same second) keep the ETL's deterministic order, the same for every method compared.
Training never sees an evaluation target: a user trains on the events before their validation
target (``train_len``); users without splits train on their whole history.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from models.data import SequenceData, Split
from models.errors import DataError
from pipelines.core import runs
from pipelines.core import warehouse as layout
from pipelines.core.config import PAIR_VIEWS
from pipelines.core.sqlfiles import duckdb_sql, sql_literal
from pipelines.core.warehouse import Warehouse

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.core.config import CrossDomainPair

#: SQL of each item-metadata field in an item's document (``models.text`` joins them).
_FIELD_SQL = {"title": "i.title", "category": "i.category", "tags": "array_to_string(i.tags, ' ')", "text": "i.text"}


def latest_day(warehouse: str | Path) -> date:
    """The last day with sequences (a command-line default, said aloud by the caller)."""
    days = Warehouse(warehouse).partition_dates(layout.SEQUENCES)
    if not days:
        raise DataError(f"no sequences in {warehouse}: run `seqrep etl` first")
    return days[-1]


@contextmanager
def connect(wh: Warehouse, views: dict[str, str]) -> Iterator[Any]:
    """An in-memory DuckDB connection with a view per warehouse table (view name -> table), every
    ``dt=`` partition, ``dt`` typed as a DATE; held under the warehouse's read lock, so no commit
    changes the tables while it reads them."""
    import duckdb

    with runs.reading(wh.root):
        con = duckdb.connect()
        try:
            for view, table in views.items():
                con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({sql_literal(wh.parquet_globs(table))}, "
                            "hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true)")
            yield con
        finally:
            con.close()


def load(warehouse: str | Path, day: date, protocol: str = "loo") -> SequenceData:
    """Sequences, splits and vocabulary size as of ``day`` (see the module docstring)."""
    import pyarrow.compute as pc

    wh = Warehouse(warehouse)
    for table in (layout.SEQUENCES, layout.SPLITS, layout.VOCAB_ITEMS):
        wh.require_upto(table, day, who="training data", error=DataError)
    with connect(wh, {"sequences": layout.SEQUENCES, "splits": layout.SPLITS, "vocab_items": layout.VOCAB_ITEMS}) as con:
        seq = con.sql(f"SELECT user_idx, item_idx FROM ({duckdb_sql('sequences_asof')}) ORDER BY user_idx",
                      params={"asof": day}).to_arrow_table()
        spl = con.sql(f"SELECT * FROM ({duckdb_sql('splits_asof')}) ORDER BY split, user_idx",
                      params={"asof": day, "protocol": protocol}).to_arrow_table()
        n_items = con.execute("SELECT coalesce(max(item_idx), 0) FROM vocab_items WHERE dt <= ?", [day]).fetchone()[0]
    users = seq.column("user_idx").to_numpy()
    lists = seq.column("item_idx").combine_chunks()
    offsets = lists.offsets.to_numpy().astype(np.int64)
    items = lists.values.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    splits: dict[str, Split] = {}
    train_len = np.diff(offsets)
    for name in ("test", "valid"):  # valid last: it bounds training when both exist
        part = spl.filter(pc.equal(spl.column("split"), name))
        if part.num_rows == 0:
            continue
        rows = np.searchsorted(users, part.column("user_idx").to_numpy())  # users are sorted
        hist = part.column("history_len").to_numpy().astype(np.int64)
        splits[name] = Split(rows, hist, _pad_lists(part.column("target_idx").combine_chunks()))
        train_len[rows] = np.minimum(train_len[rows], hist)
    return SequenceData(day, protocol, int(n_items), users, offsets, items, train_len, splits,
                        side=WarehouseSide(wh.root, day))




def load_pair(warehouse: str | Path, day: date, pair: "CrossDomainPair", view: str = "target") -> SequenceData:
    """A cross-domain pair's data as of ``day`` (``pipelines/etl/cross_domain.py``), as ``SequenceData``.

    ``view="target"`` keeps each user's target-domain events (the target-only baselines: the
    existing methods on the target alone); ``"mixed"`` keeps both domains' events in time order;
    ``"source"`` the source's events (the source-domain model of a mapping method). Users are
    their target ``user_idx`` (their source one when they have none). Splits of the target and
    mixed views: ``valid`` and ``test`` of the warm users, ``cold_valid`` and ``cold_test`` of the
    cold-start-in-target users (whose target events are in no training table: in the target
    view their history is empty); ``candidates`` are the target's items, so rankings cover target
    items only. The source view validates on each user's last source event, among source items.
    """
    import pyarrow.compute as pc

    if view not in PAIR_VIEWS:
        raise ValueError(f"view must be one of {PAIR_VIEWS}, got {view!r}")
    wh = Warehouse(warehouse)
    seq_t, splits_t = (layout.pair_table(t, pair.name) for t in (layout.CROSS_DOMAIN_SEQUENCES,
                                                                  layout.CROSS_DOMAIN_SPLITS))
    for table in (seq_t, splits_t, layout.VOCAB_ITEMS):
        wh.require_upto(table, day, who=f"cross-domain pair {pair.name}", error=DataError)
    asof = duckdb_sql("cross_domain_asof")
    ranked = pair.source if view == "source" else pair.target
    with connect(wh, {"pair_rows": seq_t}) as con:
        seq = con.sql(f"SELECT user_id, coalesce(target_user_idx, source_user_idx) AS u, item_idx, domain "
                      f"FROM ({asof}) ORDER BY u", params={"asof": day}).to_arrow_table()
    with connect(wh, {"pair_rows": splits_t, "vocab_items": layout.VOCAB_ITEMS}) as con:
        spl = con.sql(f'SELECT user_id, "group", split, history_len, target_idx FROM ({asof})',
                      params={"asof": day}).to_arrow_table()
        n_items, = con.execute("SELECT coalesce(max(item_idx), 0) FROM vocab_items WHERE dt <= ?", [day]).fetchone()
        candidates = con.execute("SELECT DISTINCT item_idx FROM vocab_items WHERE dt <= ? AND domain = ? ORDER BY 1",
                                 [day, ranked]).fetchnumpy()["item_idx"].astype(np.int64)
    users = seq.column("u").to_numpy().astype(np.int64)
    lists = seq.column("item_idx").combine_chunks()
    mixed_offsets = lists.offsets.to_numpy().astype(np.int64) - lists.offsets.to_numpy()[0]
    items = lists.values.to_numpy().astype(np.int64)
    domains = seq.column("domain").combine_chunks().flatten()
    keep = (np.ones(len(items), dtype=bool) if view == "mixed" else
            pc.equal(domains, ranked).to_numpy(zero_copy_only=False))
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # kept events before each flat position
    offsets = kept_before[mixed_offsets]
    items = items[keep]
    if not len(items):
        raise DataError(f"cross-domain pair {pair.name} has no events of domain {', '.join(view_domains(pair, view))} "
                        f"as of {day} (its {view} view): the events' domain column names the pair's domains "
                        f"({pair.source}, {pair.target})? See `seqrep summary` and the pair's stage manifest")
    if view == "source":
        train_len, splits = _last_event_valid(offsets, items)
    else:
        row_of = {u: i for i, u in enumerate(seq.column("user_id").to_pylist())}
        train_len, splits = _pair_splits(spl, row_of, mixed_offsets, kept_before, offsets)
    return SequenceData(day, "loo", int(n_items), users, offsets, items, train_len, splits, candidates=candidates)


def view_domains(pair: "CrossDomainPair", view: str) -> list[str]:
    """The domains whose events a view of the pair holds."""
    return {"target": [pair.target], "source": [pair.source], "mixed": [pair.source, pair.target]}[view]


def pair_users(warehouse: str | Path, day: date, pair: "CrossDomainPair", view: str, n_items: int) -> dict[str, np.ndarray]:
    """The users of a pair's view as of ``day``, in ``load_pair``'s order: ``user_idx`` (as
    ``load_pair``'s users), ``user_id``, ``n_events`` (their events in the view), ``n_known`` (of
    those, on items ``<= n_items``: what a model of that many items can read) and ``dt`` (their
    last active day): the rows of a pair run's user table."""
    wh = Warehouse(warehouse)
    table = layout.pair_table(layout.CROSS_DOMAIN_SEQUENCES, pair.name)
    with connect(wh, {"pair_rows": table}) as con:
        return con.sql(
            "SELECT coalesce(target_user_idx, source_user_idx) AS user_idx, user_id, "
            "len(list_filter(domain, lambda d: list_contains($domains, d))) AS n_events, "
            "len(list_filter(item_idx, lambda x, i: list_contains($domains, domain[i]) AND x <= $n)) AS n_known, "
            f"dt FROM ({duckdb_sql('cross_domain_asof')}) ORDER BY user_idx",
            params={"asof": day, "domains": view_domains(pair, view), "n": n_items}).fetchnumpy()


def _pair_splits(spl, row_of: dict, mixed_offsets: np.ndarray, kept_before: np.ndarray,
                 offsets: np.ndarray) -> tuple[np.ndarray, dict[str, Split]]:
    """A pair's warm and cold splits in a view (``load_pair``), and the training lengths they leave."""
    import pyarrow.compute as pc

    train_len = np.diff(offsets)
    splits: dict[str, Split] = {}
    for name, group, split in (("test", "warm", "test"), ("valid", "warm", "valid"),
                               ("cold_test", "cold", "test"), ("cold_valid", "cold", "valid")):
        part = spl.filter(pc.and_(pc.equal(spl.column("group"), group), pc.equal(spl.column("split"), split)))
        if part.num_rows == 0:
            continue
        rows = np.array([row_of[u] for u in part.column("user_id").to_pylist()], dtype=np.int64)
        # history_len counts events of the mixed sequence: in the view, the kept ones among them.
        hist = kept_before[mixed_offsets[rows] + part.column("history_len").to_numpy()] - offsets[rows]
        # In the users' order, whatever order the scan returned: per-user metrics of two runs pair up.
        order = np.argsort(rows, kind="stable")
        rows, hist = rows[order], hist[order]
        splits[name] = Split(rows, hist, _pad_lists(part.column("target_idx").combine_chunks())[order])
        if name == "valid":  # valid bounds training (a warm user's last two target events are held out)
            train_len[rows] = np.minimum(train_len[rows], hist)
    return train_len, splits


def _last_event_valid(offsets: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, dict[str, Split]]:
    """Leave-one-out validation on each user's last event (users with at least 2), which
    training then leaves out."""
    train_len = np.diff(offsets)
    rows = np.flatnonzero(train_len >= 2)
    hist = train_len[rows] - 1
    split = Split(rows, hist, items[offsets[rows] + hist][:, None])
    train_len[rows] = hist
    return train_len, {"valid": split}


def _pad_lists(lists) -> np.ndarray:
    """A list array as a 0-padded [rows, longest] matrix."""
    offsets = lists.offsets.to_numpy()
    offsets = offsets - offsets[0]
    lens = np.diff(offsets)
    out = np.zeros((len(lens), max(int(lens.max(initial=0)), 1)), dtype=np.int64)
    rows = np.repeat(np.arange(len(lens)), lens)
    cols = np.arange(int(lens.sum())) - np.repeat(offsets[:-1], lens)
    out[rows, cols] = lists.values.to_numpy()
    return out


@dataclass(frozen=True)
class WarehouseSide:
    """``models.data.SideData`` read from a warehouse as of ``day``: what methods ask for besides
    the sequences, each read when first asked."""

    root: Path
    day: date

    def user_item_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``graphs/user_item`` as of the day (``sql/user_item_asof.sql``): user_idx, item_idx, count."""
        wh = Warehouse(self.root)
        wh.require_upto(layout.USER_ITEM, self.day, who="the user-item graph", error=DataError)
        with connect(wh, {"user_item": layout.USER_ITEM}) as con:
            edges = con.sql(f"SELECT user_idx, item_idx, count FROM ({duckdb_sql('user_item_asof')})",
                            params={"asof": self.day}).fetchnumpy()
        return (edges["user_idx"].astype(np.int64), edges["item_idx"].astype(np.int64),
                edges["count"].astype(np.int64))

    def social_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """``graphs/social`` as of the day (``sql/social_asof.sql``): user_idx, friend_idx."""
        wh = Warehouse(self.root)
        wh.require_upto(layout.SOCIAL, self.day, who="the social graph", error=DataError,
                        hint="the source has no social edges: Last.fm's user_friends.dat, or ingest.social "
                             "for the parquet adapter, then `seqrep etl`")
        with connect(wh, {"social": layout.SOCIAL}) as con:
            edges = con.sql(duckdb_sql("social_asof"), params={"asof": self.day}).fetchnumpy()
        return edges["user_idx"].astype(np.int64), edges["friend_idx"].astype(np.int64)

    def event_types(self) -> tuple[np.ndarray, np.ndarray, "pa.Array"]:
        """Each user's event types as of the day, in the sequences' order: user_idx [U], the number
        of events of each [U], and every event's type, user after user (a string array)."""
        import pyarrow.compute as pc

        with connect(Warehouse(self.root), {"sequences": layout.SEQUENCES}) as con:
            tbl = con.sql(f"SELECT user_idx, event_type FROM ({duckdb_sql('sequences_asof')}) ORDER BY user_idx",
                          params={"asof": self.day}).to_arrow_table()
        lists = tbl.column("event_type").combine_chunks()
        return (tbl.column("user_idx").to_numpy(), pc.list_value_length(lists).to_numpy(zero_copy_only=False),
                lists.flatten())

    def item_documents(self, n_items: int, fields: Sequence[str]) -> list[str]:
        """Documents of items ``0..n_items``, see :func:`item_documents`."""
        return item_documents(self.root, self.day, n_items, fields)

    def item_vectors(self, n_items: int, column: str) -> tuple[np.ndarray, np.ndarray]:
        """A vector column of items ``0..n_items`` and its mask, see :func:`item_vectors`."""
        return item_vectors(self.root, self.day, n_items, column)


@contextmanager
def _item_tables(warehouse: str | Path, day: date, who: str) -> Iterator[Any]:
    """A DuckDB connection with ``vocab_items`` (every day) and ``items`` (the metadata of every
    source, ``items/source=*``, by column name: a source without a column reads null there)."""
    wh = Warehouse(warehouse)
    wh.require_upto(layout.VOCAB_ITEMS, day, who=who, error=DataError)
    if not any(any(p.glob("*.parquet")) for p in wh.table(layout.ITEMS).glob("source=*")):
        raise DataError(f"no item metadata in {wh.table(layout.ITEMS)} (items/source=S): the source's adapter "
                        f"wrote none, so there are no {who}")
    with connect(wh, {"vocab_items": layout.VOCAB_ITEMS}) as con:
        glob = sql_literal(str(wh.table(layout.ITEMS) / "source=*" / "*.parquet"))
        con.execute(f"CREATE VIEW items AS SELECT * FROM read_parquet({glob}, hive_partitioning = true, "
                    "union_by_name = true)")
        yield con


#: The vocabulary as of a day (``?``: the day), joined to every source's item rows.
_VOCAB_ITEMS_JOIN = """
    FROM (SELECT DISTINCT item_idx, domain, item_id FROM vocab_items WHERE dt <= ?) v
    JOIN items i ON i.domain = v.domain AND i.item_id = v.item_id
    WHERE v.item_idx BETWEEN 1 AND ?"""


def item_documents(warehouse: str | Path, day: date, n_items: int,
                   fields: Sequence[str] = tuple(_FIELD_SQL)) -> list[str]:
    """Documents of items ``0..n_items`` (``[0]`` and items without metadata are ``""``): an item's
    metadata ``fields`` joined by spaces, in that order (missing fields skipped).

    The vocabulary ``vocab/items`` as of ``day`` is joined on (domain, item_id) to the metadata
    of every source, ``items/source=*``; an item described by several sources gets their
    documents joined in source order.
    """
    unknown = [f for f in fields if f not in _FIELD_SQL]
    if unknown or not fields:
        raise ValueError(f"text fields must be a non-empty subset of {tuple(_FIELD_SQL)}, got {list(fields)}")
    doc = f"concat_ws(' ', {', '.join(_FIELD_SQL[f] for f in fields)})"
    with _item_tables(warehouse, day, "item texts") as con:
        rows = con.execute(f"SELECT v.item_idx, string_agg({doc}, ' ' ORDER BY i.source) AS doc {_VOCAB_ITEMS_JOIN} "
                           "GROUP BY v.item_idx", [day, n_items]).fetchnumpy()
    docs = np.full(n_items + 1, "", dtype=object)
    docs[rows["item_idx"].astype(np.int64)] = rows["doc"]
    return [d if isinstance(d, str) else "" for d in docs.tolist()]


def item_vectors(warehouse: str | Path, day: date, n_items: int, column: str) -> tuple[np.ndarray, np.ndarray]:
    """The vector column ``column`` (``ingest.item_vectors``) of items ``0..n_items``: float32
    ``[n_items + 1, k]`` and the mask of items with a vector. The vocabulary as of ``day`` joined
    to ``items/source=*`` as for the documents; an item with vectors from several sources takes
    the first source's (in name order); row 0 and items without one are zeros, masked out.

    Ingest checked each source's vectors (one length, finite); sources of other lengths are a
    ``DataError`` here."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", column):  # it becomes SQL: a plain name only
        raise ValueError(f"item vector column {column!r}: lower-case letters, digits and _")
    with _item_tables(warehouse, day, f"item vectors {column!r}") as con:
        if column not in {r[0] for r in con.execute("DESCRIBE items").fetchall()}:
            raise DataError(f"items/source=* has no vector column {column!r}: list it in ingest.item_vectors of the "
                            "source that has it and ingest again (each ingest manifest's item_vectors names its own)")
        got = con.sql(f"""
            SELECT v.item_idx, first(i.{column} ORDER BY i.source) FILTER (WHERE i.{column} IS NOT NULL) AS vec
            {_VOCAB_ITEMS_JOIN} GROUP BY v.item_idx HAVING vec IS NOT NULL ORDER BY v.item_idx""",
                      params=[day, n_items]).to_arrow_table()
    import pyarrow.compute as pc

    vec = got.column("vec").combine_chunks()
    lengths = np.unique(pc.list_value_length(vec).to_numpy(zero_copy_only=False))
    if len(lengths) > 1:
        raise DataError(f"item vector {column!r} has vectors of lengths {lengths.tolist()} across sources "
                        "(items/source=*): one column must have one length")
    k = int(lengths[0]) if len(lengths) else 0
    out = np.zeros((n_items + 1, k), dtype=np.float32)
    has = np.zeros(n_items + 1, dtype=bool)
    idx = got.column("item_idx").to_numpy().astype(np.int64)
    out[idx] = pc.list_flatten(vec).to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(idx), k)
    has[idx] = True
    return out, has
