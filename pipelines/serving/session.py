"""On-request user vectors: a user's history plus the events of a request, encoded in memory.

A user who has just added three items to a cart is still, in the published tables, the user of
yesterday. ``Query.recommend(user, recent=[...])`` (``seqrep query recommend USER --recent
ITEM,ITEM``) encodes the user's published history followed by the request's events with the
published model, in this process: no Spark, no write. ``SessionEncoder.load`` reads, once per
(method, day, published version), what that needs:

- the model of the published version (``models/<method>/<version>``, safetensors);
- every user's history as of the day (the ``sequences`` row of ``sql/sequences_asof.sql``: the
  newest ``sequences.max_length`` events, in (ts, event_id) order), without items the model does
  not know (a version trained before the day);
- the published catalogue: item id, domain and index of every item of the version's table.

A request then costs a dictionary lookup, one forward pass (``models.infer.encode_histories``,
what ``seqrep infer`` runs for a folded-in user, so the vector is the one ``infer`` would publish
for that history) and one index search. Outcomes at the edges:

- a user the warehouse has never seen is encoded from the request's events alone (an anonymous
  session); with no known events at all the request is an error;
- an item of the request the model has never seen cannot enter the history (the model has no
  vector for it): it is left out and listed in each row's ``recent_unknown``; an id that exists
  in several domains needs ``domain``;
- the items excluded from the answer are the user's history (or, for a history longer than the
  stored window, every item of ``user_items``) and the request's items;
- a user with live events (``seqrep stream``) has them between the stored history and the
  request's events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from pipelines.core.errors import UsageError
from pipelines.core.sqlfiles import duckdb_sql
from pipelines.core.warehouse import Warehouse


class SessionError(UsageError):
    """A request that cannot be encoded (no known events, a model that reads more than items)."""


@dataclass
class Encoded:
    vector: np.ndarray  # [dim] as the user table publishes it
    seen: set[int]  # item indexes excluded from the answer
    history: int  # events of the stored history used
    recent: int  # events of the request used
    unknown: list[str]  # request items the model has no vector for
    truncated: bool  # the stored history is a window of a longer one (``seen`` is then not complete)
    user_idx: int | None


@dataclass
class SessionEncoder:
    """The published model of (method, day) and what encoding a request needs (module docstring)."""

    method: str
    day: date
    version: str
    model: Any  # models.base.SequenceModel, eval mode
    rows: dict[str, int]  # stored user_id -> row
    user_idx: np.ndarray  # [rows]
    offsets: np.ndarray  # [rows + 1] into ``items``
    items: np.ndarray  # histories, row by row, in time order (items the model knows)
    truncated: np.ndarray  # [rows] bool
    item_ids: np.ndarray  # [n_items + 1] item id by item_idx (None where absent)
    domains: np.ndarray  # [n_items + 1] domain by item_idx
    by_id: dict[str, int]  # item id -> item_idx, ids of one domain only
    ambiguous: dict[str, list[str]]  # item id -> its domains, ids of several

    @classmethod
    def load(cls, con, wh: Warehouse, method: str, day: date, version: str) -> "SessionEncoder":
        """Read the model, the histories as of ``day`` and the catalogue with ``con`` (a
        connection holding the views of ``sql/views.sql``)."""
        from models.checkpoint import CheckpointError
        from models.registry import load_version_folder

        folder = wh.model_folder(method, version)
        if "." in method:
            raise SessionError(f"{method} is a cross-domain pair run: requests are encoded for single methods only")
        try:
            _, model = load_version_folder(folder)
        except CheckpointError as exc:
            raise SessionError(f"the published model of {method} cannot be loaded: {exc}") from None
        model.eval()
        seqs = con.sql(f"SELECT user_id, user_idx, item_idx, length < n_events AS truncated "
                       f"FROM ({duckdb_sql('sequences_asof')}) ORDER BY user_idx",
                       params={"asof": day}).to_arrow_table()
        lists = seqs.column("item_idx").combine_chunks()
        flat = lists.values.to_numpy(zero_copy_only=False).astype(np.int32)
        known = flat <= model.n_items  # items first seen after the version's training day
        kept_before = np.concatenate([[0], np.cumsum(known)])
        offsets = kept_before[lists.offsets.to_numpy()]
        cat = con.sql("SELECT item_idx, domain, item_id FROM item_embeddings WHERE model = $m AND dt = $d",
                      params={"m": method, "d": day}).fetchnumpy()
        size = int(cat["item_idx"].max()) + 1 if len(cat["item_idx"]) else 1
        item_ids = np.full(size, None, dtype=object)
        domains = np.full(size, None, dtype=object)
        item_ids[cat["item_idx"]] = cat["item_id"]
        domains[cat["item_idx"]] = cat["domain"]
        by_id: dict[str, int] = {}
        ambiguous: dict[str, list[str]] = {}
        for idx, dom, item in zip(cat["item_idx"].tolist(), cat["domain"].tolist(), cat["item_id"].tolist()):
            if item in ambiguous:
                ambiguous[item].append(dom)
            elif item in by_id:
                ambiguous[item] = [str(domains[by_id.pop(item)]), dom]
            else:
                by_id[item] = idx
        return cls(method, day, version, model,
                   {u: r for r, u in enumerate(seqs.column("user_id").to_pylist())},
                   seqs.column("user_idx").to_numpy(), offsets, flat[known],
                   seqs.column("truncated").to_numpy(zero_copy_only=False), item_ids, domains, by_id, ambiguous)

    def item_index(self, item_id: str, domain: str | None) -> int | None:
        """The index of a request's item, None when the model has no vector for it."""
        item_id = str(item_id)
        if item_id in self.ambiguous:
            if domain is None:
                raise SessionError(f"item id {item_id!r} exists in domains {sorted(self.ambiguous[item_id])}: pass a domain")
            hits = [i for i in np.flatnonzero(self.item_ids == item_id) if self.domains[i] == domain]
            return int(hits[0]) if hits else None
        idx = self.by_id.get(item_id)
        return None if idx is None or (domain is not None and self.domains[idx] != domain) else idx

    def history(self, user_id: str) -> tuple[np.ndarray, int | None]:
        """The user's stored history (items the model knows) and row; empty and None when unknown."""
        row = self.rows.get(str(user_id))
        if row is None:
            return np.zeros(0, np.int32), None
        return self.items[self.offsets[row]:self.offsets[row + 1]], row

    def vectors(self, user_ids: list[str], fresh: list[np.ndarray]) -> np.ndarray:
        """Vectors, as the user table publishes them, of each user's stored history followed by
        their ``fresh`` item indexes (``models.infer.encode_histories``, folded in); every
        combined history must have an event."""
        from models.errors import DataError
        from models.infer import encode_histories, published_users

        rows = [self.history(u) for u in user_ids]
        # The encoder reads the last max_len events of a history (``SequenceModel.histories``): only
        # those are copied, so a heavy user's long stored or live history costs no more than anyone's.
        n = self.model.params.max_len
        events = [np.concatenate([h[-n:], np.asarray(f, np.int32)[-n:]])[-n:] for (h, _), f in zip(rows, fresh)]
        users = np.array([int(self.user_idx[r]) if r is not None else 0 for _, r in rows], np.int64)
        try:
            return published_users(self.model, encode_histories(self.model, events, users))
        except DataError as exc:
            raise SessionError(f"{self.method}: {exc}") from None

    def encode(self, user_id: str, recent: list[str], domain: str | None = None, before: list[int] = ()) -> Encoded:
        """The user's vector from the stored history, then ``before`` (item indexes: the user's
        live events, ``seqrep stream``'s), then ``recent`` (module docstring)."""
        stored, row = self.history(user_id)
        history = np.concatenate([stored, np.asarray(before, np.int32)])
        found = [(item, self.item_index(item, domain)) for item in recent]
        fresh = np.array([i for _, i in found if i is not None], dtype=np.int32)
        unknown = [item for item, i in found if i is None]
        if len(history) + len(fresh) == 0:
            raise SessionError(f"user {user_id!r} has no events the {self.method} model of {self.day} knows"
                               + (f" (unknown items: {', '.join(unknown)})" if unknown else ""))
        vec = self.vectors([user_id], [np.concatenate([history[len(stored):], fresh])])[0]
        return Encoded(vec, set(history.tolist()) | set(fresh.tolist()), len(history), len(fresh), unknown,
                       bool(self.truncated[row]) if row is not None else False,
                       int(self.user_idx[row]) if row is not None else None)

    def names(self, idx: list[int]) -> dict[int, tuple[str, str]]:
        return {i: (self.domains[i], self.item_ids[i]) for i in idx}
