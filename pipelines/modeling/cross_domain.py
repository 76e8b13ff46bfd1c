"""A cross-domain pair's data for the methods, and what its methods ask of it besides sequences.

``load_pair_data(cfg, day, pair, view)`` is ``pipelines.modeling.data.load_pair`` with a
:class:`PairSide` attached:

- ``user_item_edges``: the user-item graph of the view's own events (LightGCN on the target
  view is the target-only graph; on the mixed view, the joint graph of both domains, users
  shared). It holds every event of the view's sequences, and ``models.gnn.training_graph``
  removes the held-out ones, as for the global graph; a cold user's target events are in no
  table of the pair, so they never reach it.
- ``run_vectors(run)``: user and item vectors of a trained run on one of the pair's views
  (``method@version``, trained with ``pair_scope``; EMCDR maps one onto another). Each user is
  encoded from their *training* events of that run's view, never from a held-out one.

A model trained on a pair is stored like any other (``models/<method>/<version>``), its version
hashed with the pair and view (``pair_scope``); ``train_on_pair`` trains one. Runs that it reads
by method name (``pipelines/modeling/pair_runs.py``) are trained first.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np

from models.data import SequenceData, train_positions
from models.errors import DataError
from pipelines.core.config import PAIR_VIEWS, Config
from pipelines.modeling.data import load_pair
from pipelines.modeling.pair_runs import PairRun, find_pair, needed_runs, run_config


def train_on_pair(cfg: Config, name: str, day: date, pair: str, view: str, *, sets: list[str] = (),
                  echo=print, **kwargs: Any):
    """``pipelines.modeling.train.train_method`` on the pair's ``view`` as of ``day``; the runs it
    reads by method name are trained first, on the same day's data (a rerun of a day never reads
    a run trained on what the day held before)."""
    from pipelines.modeling.train import train_method

    run = PairRun(pair, name, view)
    for need in needed_runs(cfg, run, sets).values():
        echo(f"{run.method} reads {need.method} on {need.scope}: training it first")
        train_on_pair(cfg, need.method, day, need.pair, need.view, echo=echo, evaluate=False)
    _, resolved = run_config(cfg, run, day, sets)
    return train_method(cfg, name, day, data=load_pair_data(cfg, day, pair, view), scope=run.scope,
                        sets=resolved, echo=echo, **kwargs)


def evaluate_run(cfg: Config, name: str, day: date, sets: list[str] = ()) -> list[dict]:
    """Full-ranking metrics of a pair run's version as of ``day`` (``METHOD.PAIR``) on every split
    of its view, written to ``metrics/`` (what ``seqrep evaluate`` does for a method)."""
    from pipelines.core.runs import transaction
    from pipelines.core.warehouse import Warehouse
    from pipelines.modeling.pair_runs import parse_run
    from pipelines.modeling.train import evaluate_model, load_trained

    run = parse_run(cfg, name)
    mc, model, folder = load_trained(cfg, name, day, list(sets))
    data = load_pair_data(cfg, day, run.pair, run.view)
    with transaction(Warehouse(cfg.warehouse), f"model={name}") as wh:
        return evaluate_model(wh, cfg, mc, model, data, folder.name, run.scope)


def load_pair_data(cfg: Config, day: date, pair: str, view: str) -> SequenceData:
    """The pair's ``view`` as of ``day``, with its side (module docstring)."""
    data = load_pair(cfg.warehouse, day, find_pair(cfg, pair), view)
    side = PairSide(cfg, day, pair)
    data = replace(data, side=side)
    side.data = data
    return data


@dataclass
class PairSide:
    """``models.data.SideData`` of a pair's view (module docstring)."""

    cfg: Config
    day: date
    pair: str
    data: SequenceData | None = field(default=None, repr=False)

    def user_item_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user_idx, item_idx, events) of every event of the view's sequences."""
        d = self.data
        users = np.repeat(d.users, d.lengths)
        key, count = np.unique(users * (d.n_items + 1) + d.items, return_counts=True)
        return key // (d.n_items + 1), key % (d.n_items + 1), count

    def run_vectors(self, run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """User vectors of ``run`` (``method@version``, trained on one of this pair's views) from each
        user's training events of that view, and its item vectors: (user_idx [U], vectors [U, d],
        items [N + 1, d])."""
        import torch

        from models.infer import encode_users
        from pipelines.modeling.train import load_version

        method, sep, version = run.partition("@")
        if not sep:
            raise DataError(f"a run is method@version (`seqrep train` prints the version), got {run!r}")
        mc, model, folder = load_version(self.cfg, method, version)
        view = _view_of(folder, self.pair)
        data = training_part(load_pair(self.cfg.warehouse, self.day, find_pair(self.cfg, self.pair), view))
        rows = np.flatnonzero(data.lengths > 0)
        vectors = encode_users(model, data, rows, batch_size=mc.train.eval_batch_size)
        with torch.inference_mode():  # as encode_users (a graph model's propagation is not for autograd here)
            items = model.item_embeddings().float().cpu().numpy()
        return data.users[rows], vectors, items


def _view_of(folder, pair: str) -> str:
    """The view of the pair that the model in ``folder`` was trained on (its config.json's scope)."""
    from models.checkpoint import read_json

    scope: Any = read_json(folder / "config.json").get("scope", "")
    parts = dict(p.split("=", 1) for p in str(scope).split("/") if "=" in p)
    if parts.get("pair") != pair or parts.get("view") not in PAIR_VIEWS:
        raise DataError(f"{folder} was not trained on a view of pair {pair} (its scope: {scope or 'none'}): "
                        f"train it with `seqrep train --pair {pair} --view VIEW`")
    return parts["view"]


def training_part(data: SequenceData) -> SequenceData:
    """``data`` cut to each user's training events (no splits): what a user vector may be made of."""
    pos = train_positions(data.offsets, data.train_len)
    offsets = np.concatenate([[0], np.cumsum(data.train_len)]).astype(np.int64)
    return replace(data, offsets=offsets, items=data.items[pos], splits={}, event_codes=None)
