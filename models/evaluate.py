"""Full-ranking evaluation of a method on a split (the metrics table is ``pipelines/modeling/metrics.py``).

Each evaluated user reads the last ``max_len`` events of their history (the split's
``history_len``), every item is scored (every candidate item, when the data names candidates: a
cross-domain pair ranks its target's items only), the user's seen items are masked (``mask_seen``), and
``models.metrics`` turns the target ranks into HR, NDCG and MRR at 10 and 20. The same pass keeps
each user's top 20 for the metrics beyond accuracy (``models.metrics``: popularity, novelty,
long-tail share and intra-list diversity per user; coverage, Gini index and entropy of the
catalogue). Per-user values are kept so methods and seeds can be compared paired on users, and
each user's segments (``segment_labels``: the length of their history, the popularity bucket of
their target) so accuracy can be read per segment.

A user with no history at all (a cold-start-in-target user of a pair's target-only view) is
ranked by the training popularity, what a deployed recommender falls back to, never by an
encoder's state of an all-padding input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.base import SequenceModel
from models.data import SequenceData, ragged_positions, ragged_rows
from models.metrics import (catalogue_metrics, list_metrics, lists_and_ranks, mask_scores, metrics_from_ranks,
                            popularity_buckets)

KS = (10, 20)
#: History-length buckets of ``segment_labels``: upper bounds of all but the last.
HISTORY_BUCKETS = (5, 20, 50)


@dataclass
class EvalResult:
    split: str
    users: np.ndarray  # user_idx of each evaluated row
    per_user: dict[tuple[str, int], np.ndarray]
    #: Metrics of the whole catalogue's lists (coverage, gini, entropy at each K): no per-user value.
    catalogue: dict[tuple[str, int], float] = field(default_factory=dict)
    #: Each user's label per segmentation (``segment_labels``), in ``users``' order.
    segments: dict[str, np.ndarray] = field(default_factory=dict)

    def mean(self) -> dict[tuple[str, int], float]:
        means = {key: float(v.mean()) if len(v) else float("nan") for key, v in self.per_user.items()}
        return {**means, **self.catalogue}


@torch.no_grad()
def evaluate(model: SequenceModel, data: SequenceData, split: str, *, mask_seen: bool = True,
             batch_size: int = 512, device: torch.device | str = "cpu") -> EvalResult:
    """HR/NDCG/MRR at ``KS`` of ``model`` on ``data.splits[split]``, full ranking."""
    if split not in data.splits:
        raise ValueError(f"no {split!r} rows in the {data.protocol} splits as of {data.day}")
    sp = data.splits[split]
    was_training = model.training
    model.eval()
    # Bound the score matrix to about 64M floats whatever the catalogue size.
    step = max(1, min(batch_size, (1 << 26) // (data.n_items + 1)))
    per_user: dict[tuple[str, int], list[np.ndarray]] = {}
    outside = pop = None
    if data.candidates is not None:
        mask = torch.ones(data.n_items + 1, dtype=torch.bool, device=device)
        mask[torch.as_tensor(data.candidates, device=device)] = False
        outside = torch.nonzero(mask).flatten()  # index_fill_ by these: ~3x a boolean column mask
    # What the lists' metrics read: training popularity, its buckets, the item vectors.
    counts = torch.as_tensor(data.item_counts())
    buckets = popularity_buckets(counts)
    try:
        vectors = model.item_embeddings().detach().float().cpu()[:data.n_items + 1]
    except NotImplementedError:  # a baseline: no vectors, no diversity
        vectors = None
    width = max(KS)
    in_lists = {k: torch.zeros(data.n_items + 1, dtype=torch.long) for k in KS}
    for lo in range(0, len(sp), step):
        rows, hist = sp.rows[lo:lo + step], sp.history_len[lo:lo + step]
        history, lengths = model.histories(data, rows, hist)
        history_t = torch.as_tensor(history, device=device)
        lengths_t = torch.as_tensor(lengths, device=device)
        users_t = torch.as_tensor(data.users[rows], device=device)
        scores = model.full_scores(history_t, lengths_t, users_t).float()
        empty = lengths_t == 0
        if bool(empty.any()):
            if pop is None:
                pop = torch.log1p(counts.float()).to(device)
            scores[empty] = pop
        if outside is not None:
            scores.index_fill_(1, outside, float("-inf"))
        if mask_seen:
            starts = data.offsets[rows]
            pos = ragged_positions(starts, starts + hist)
            r = torch.as_tensor(ragged_rows(starts, starts + hist), device=device)
            c = torch.as_tensor(data.items[pos], device=device)
        else:
            r = c = torch.zeros(0, dtype=torch.long, device=device)
        mask_scores(scores, r, c)
        # Ties keep the lower item index first: lists do not depend on the kernel.
        ranks, top_scores, top = lists_and_ranks(scores, torch.as_tensor(sp.targets[lo:lo + step], device=device), width)
        top, ok = _widen(top.cpu(), torch.isfinite(top_scores).cpu(), width)
        for k in KS:
            in_lists[k] += torch.bincount(top[:, :k][ok[:, :k]], minlength=data.n_items + 1)
        for key, value in {**metrics_from_ranks(ranks.cpu(), KS),
                           **list_metrics(top, ok, counts, len(data.users), buckets, vectors, KS)}.items():
            per_user.setdefault(key, []).append(value.numpy())
    model.train(was_training)
    candidates = torch.as_tensor(data.candidates) if data.candidates is not None else torch.arange(1, data.n_items + 1)
    catalogue = {(name, k): value for k in KS for name, value in catalogue_metrics(in_lists[k], candidates).items()}
    return EvalResult(split, data.users[sp.rows], {k: np.concatenate(v) for k, v in per_user.items()}, catalogue,
                      segment_labels(sp.history_len, sp.targets[:, 0], buckets.numpy()))


def segment_labels(history_len: np.ndarray, first_target: np.ndarray, buckets: np.ndarray) -> dict[str, np.ndarray]:
    """Per user: ``history``, the length of the history the ranking read (``1-5``, ``6-20``,
    ``21-50``, ``51+``; ``0`` for none), and ``target``, the popularity bucket of their (first)
    target item (``head``, ``torso``, ``tail``: ``models.metrics.popularity_buckets``)."""
    bounds = np.asarray(HISTORY_BUCKETS)
    names = [f"{lo + 1}-{hi}" for lo, hi in zip((0, *HISTORY_BUCKETS[:-1]), HISTORY_BUCKETS)] + [f"{bounds[-1] + 1}+"]
    history = np.asarray(names, dtype=object)[np.searchsorted(bounds, history_len, side="left")]
    history[history_len == 0] = "0"
    target = np.asarray(["head", "torso", "tail"], dtype=object)[buckets[first_target]]
    return {"history": history, "target": target}


def _widen(top: torch.Tensor, ok: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of a catalogue smaller than ``width`` padded to it (item 0, not valid)."""
    if top.size(1) == width:
        return top, ok
    pad = width - top.size(1)
    return (torch.cat([top, torch.zeros(len(top), pad, dtype=top.dtype)], 1),
            torch.cat([ok, torch.zeros(len(ok), pad, dtype=torch.bool)], 1))
