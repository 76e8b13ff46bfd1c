"""Gate ``erasure``: a user's id, and its pseudonym, occur nowhere in the warehouse.

It reads every file of the warehouse but the privacy records (``_privacy/``, whose audit
records hold a hash of the id, by design):

- Parquet: every column of strings (or lists of strings), by exact value, except the columns of
  item ids (``item_id``, ``prev_item_id``) and the item metadata table (``items/``): an item's id is
  not personal, and in a log like ml-100k user ``196`` and item ``196`` are two different things;
- JSON (manifests, gate results, model configs, publish records, index metadata): every string
  value and every key, by exact value;
- other text (``.md``, ``.html``, ``.jsonl``, ``.txt``, ``.reason``, ``.log``): the term as a
  whole token, for terms of at least ``TEXT_MIN_CHARS`` characters that are not only digits
  (a short number would match every count in a report; pseudonyms are 32 hex characters);
- binary files (model weights, FAISS indexes, images) are not read: weights are replaced by the
  full retrain that follows an erasure (README "Privacy").

The gate's one expectation: no hit. Its record names each hit's file, column and which term
(``id`` or ``pseudonym``), never the term itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from pipelines.core.warehouse import Warehouse
from pipelines.gates.check import CRITICAL, Frame

#: Parquet columns of item ids, never searched (module docstring).
ITEM_COLUMNS = frozenset({"item_id", "prev_item_id"})
#: Tables never searched: item metadata.
ITEM_TABLES = ("items",)
#: Folders never searched: the privacy records themselves.
SKIPPED = ("_privacy",)
TEXT_SUFFIXES = (".md", ".html", ".jsonl", ".txt", ".reason", ".log")
TEXT_MIN_CHARS = 6


def _files(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if p.is_file() and rel[0] not in SKIPPED:
            yield p


def _parquet_hits(path: Path, terms: dict[str, str], root: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if path.relative_to(root).parts[0] in ITEM_TABLES:
        return []
    schema = pq.read_schema(path)
    names = [f.name for f in schema if f.name not in ITEM_COLUMNS and (
        pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        or (pa.types.is_list(f.type) and pa.types.is_string(f.type.value_type)))]
    if not names:
        return []
    table = pq.read_table(path, columns=names)
    values = pa.array(list(terms.values()), pa.string())
    hits = []
    for name in names:
        col = table.column(name)
        if pa.types.is_list(col.type):
            col = pc.list_flatten(col)
        found = set(pc.unique(col.filter(pc.is_in(col, value_set=values))).to_pylist()) if len(col) else set()
        hits += [{"file": str(path.relative_to(root)), "column": name, "term": kind}
                 for kind, term in terms.items() if term in found]
    return hits


def _json_strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _json_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _json_strings(v)
    elif isinstance(obj, str):
        yield obj


def _text_hits(path: Path, terms: dict[str, str], root: Path) -> list[dict[str, Any]]:
    text = path.read_text(errors="replace")
    hits = []
    if path.suffix == ".json":
        try:
            strings = set(_json_strings(json.loads(text)))
        except json.JSONDecodeError:
            strings = set()
        hits += [{"file": str(path.relative_to(root)), "column": "(json value)", "term": kind}
                 for kind, term in terms.items() if term in strings]
    for kind, term in terms.items():
        if searchable(term) and token(term).search(text):
            if not any(h["term"] == kind for h in hits):
                hits.append({"file": str(path.relative_to(root)), "column": "(text)", "term": kind})
    return hits


def searchable(term: str) -> bool:
    """Whether free text is searched for ``term`` (module docstring)."""
    return len(term) >= TEXT_MIN_CHARS and not term.isdigit()


def token(term: str) -> "re.Pattern[str]":
    """``term`` as a whole token of free text (not inside a longer id, word or address)."""
    return re.compile(rf"(?<![\w.@-]){re.escape(term)}(?![\w@-])")


def scan(root: Path, terms: dict[str, str], *, parquet: bool = True) -> list[dict[str, Any]]:
    """Every hit of ``terms`` (kind -> value, e.g. ``{"id": "196", "pseudonym": "1f3a..."}``)
    in the warehouse at ``root``: ``{"file", "column", "term": kind}`` (module docstring);
    ``parquet=False``: JSON and text files only."""
    root = Path(root)
    hits: list[dict[str, Any]] = []
    for path in _files(root):
        if path.suffix == ".parquet":
            if not parquet:
                continue
            hits += _parquet_hits(path, terms, root)
        elif path.suffix in (".json", *TEXT_SUFFIXES):
            hits += _text_hits(path, terms, root)
    return hits


def frames(wh: Warehouse, terms: dict[str, str]) -> list[Frame]:
    """The gate's frame: the hits (none expected)."""
    import pandas as pd
    from great_expectations import expectations as gxe

    hits = pd.DataFrame(scan(wh.root, terms), columns=["file", "column", "term"])
    return [Frame("erased_user_hits", hits, [(gxe.ExpectTableRowCountToEqual(value=0), CRITICAL)])]
