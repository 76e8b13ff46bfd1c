"""Sequences as arrays: one flat item array per dataset, windows and batches without per-row loops.

``SequenceData`` holds every user's history as of a day: item indexes (1..N, the vocabulary's,
stable across days; 0 is padding), user by user, in time order, with each user's training length
and the evaluation splits. Whoever builds it (``pipelines/modeling/data.py`` reads the warehouse;
tests build it in memory) may attach ``side``: a :class:`SideData` that answers what a method
needs besides the sequences (a user-item graph, behaviors, item texts and vectors), asked for in the
method's ``prepare``. This package never reads storage itself.

Training never sees an evaluation target: a user trains on the events before their validation
target (``train_len``); users without splits train on their whole history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from models.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DataError", "SequenceData", "SideData", "Split"]


class SideData(Protocol):
    """What a method may ask of its data besides the sequences, as of the data's day."""

    def user_item_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user-item graph: user_idx, item_idx and event count of every (user, item) pair."""

    def social_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """The social graph: user_idx and friend_idx of every edge (the user befriends or follows the friend)."""

    def event_types(self) -> tuple[np.ndarray, np.ndarray, "pa.Array"]:
        """Every user's event types in the sequences' order: user_idx [U], events per user [U], and
        the types of all events, user after user (strings)."""

    def item_documents(self, n_items: int, fields: Sequence[str]) -> list[str]:
        """The text of items 0..n_items (metadata ``fields`` joined by spaces; "" without any)."""

    def item_vectors(self, n_items: int, column: str) -> tuple[np.ndarray, np.ndarray]:
        """The vector column ``column`` of items 0..n_items: float32 ``[n_items + 1, k]`` and a mask
        ``[n_items + 1]`` (False, with a zero row, for padding and items without a vector)."""


@dataclass
class Split:
    """Evaluation rows: user ``rows`` (positions in ``SequenceData.users``) read their first
    ``history_len`` events and are scored on ``targets`` [S, T] (0-padded)."""

    rows: np.ndarray
    history_len: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class SequenceData:
    day: date
    protocol: str
    n_items: int
    users: np.ndarray  # [U] user_idx
    offsets: np.ndarray  # [U + 1] into ``items``
    items: np.ndarray  # flat item indexes, user by user, in time order
    train_len: np.ndarray  # [U] events a user trains on
    splits: dict[str, Split] = field(default_factory=dict)
    #: What methods may ask for besides the sequences (module docstring); None for bare data.
    side: SideData | None = None
    #: Behavior code of each event in ``items`` (``models.multitask``), loaded on first use.
    event_codes: np.ndarray | None = None
    #: The items a ranking may return (a cross-domain pair's target items); None: every item.
    candidates: np.ndarray | None = None

    @property
    def user_vocab(self) -> int:
        """Size of the user vocabulary seen here: the largest ``user_idx`` + 1."""
        return int(self.users.max()) + 1 if len(self.users) else 0

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, rows: np.ndarray) -> "SequenceData":
        """The same data for users at positions ``rows`` only (sorted), e.g. a small slice for tests."""
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        lens = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        items = self.items[ragged_positions(self.offsets[rows], self.offsets[rows + 1])]
        new_row = np.full(len(self.users), -1, dtype=np.int64)
        new_row[rows] = np.arange(len(rows))
        splits = {}
        for name, sp in self.splits.items():
            keep = new_row[sp.rows] >= 0
            splits[name] = Split(new_row[sp.rows[keep]], sp.history_len[keep], sp.targets[keep])
        codes = None if self.event_codes is None else self.event_codes[
            ragged_positions(self.offsets[rows], self.offsets[rows + 1])]
        return SequenceData(self.day, self.protocol, self.n_items, self.users[rows], offsets, items,
                            self.train_len[rows], splits, self.side, codes, self.candidates)

    def item_counts(self) -> np.ndarray:
        """Training events per item (index 0 unused): the popularity of the training data."""
        return np.bincount(self.items[train_positions(self.offsets, self.train_len)], minlength=self.n_items + 1)


def train_positions(offsets: np.ndarray, train_len: np.ndarray) -> np.ndarray:
    """Flat positions of every user's first ``train_len`` events."""
    return ragged_positions(offsets[:-1], offsets[:-1] + train_len)


def ragged_positions(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for each pair, without a Python loop."""
    lens = np.maximum(ends - starts, 0)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(lens)), lens)
    within = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
    return starts[rows] + within


def ragged_rows(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Row number of each position that ``ragged_positions`` returns."""
    lens = np.maximum(ends - starts, 0)
    return np.repeat(np.arange(len(lens)), lens)


def windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Right-padded matrix [W, width] of ``items[s:e]`` per window (at most ``width`` long)."""
    idx = starts[:, None] + np.arange(width)[None, :]
    valid = idx < ends[:, None]
    out = np.where(valid, items[np.minimum(idx, max(len(items) - 1, 0))] if len(items) else 0, 0)
    return out.astype(np.int64)


def history_windows(data: SequenceData, rows: np.ndarray, history_len: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``max_len`` events of each row's first ``history_len`` events, and their lengths."""
    ends = data.offsets[rows] + history_len
    starts = np.maximum(data.offsets[rows], ends - max_len)
    return windows(data.items, starts, ends, max_len), (ends - starts)


def training_windows(data: SequenceData, width: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of every training window, cut from the end of each user's training events.

    Consecutive windows of one user overlap by ``width - stride`` events: with ``stride = width - 1``
    (next-item models) every event after a user's first is a target exactly once per epoch; with
    ``stride = width`` (masked models) every event appears once.
    """
    n = data.train_len.astype(np.int64)
    overlap = width - stride
    counts = np.where(n >= 2, -(-(n - overlap) // stride), 0)
    user = np.repeat(np.arange(len(n)), counts)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    ends = data.offsets[:-1][user] + n[user] - k * stride
    starts = np.maximum(data.offsets[:-1][user], ends - width)
    return starts, ends





def held_out_pairs(data: SequenceData) -> np.ndarray:
    """(user_idx, item_idx) of every event after a user's training events, one row per event."""
    starts = data.offsets[:-1] + data.train_len
    pos = ragged_positions(starts, data.offsets[1:])
    rows = ragged_rows(starts, data.offsets[1:])
    return np.stack([data.users[rows], data.items[pos]], 1).astype(np.int64)


def prefix_windows(data: SequenceData, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of one window per training target: every prefix of a user's training events
    of at least 2 events, cut to its last ``width`` (the last event is the target)."""
    n = data.train_len.astype(np.int64)
    counts = np.maximum(n - 1, 0)
    user = np.repeat(np.arange(len(n)), counts)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    ends = data.offsets[:-1][user] + 2 + k
    return np.maximum(data.offsets[:-1][user], ends - width), ends
