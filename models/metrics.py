"""Full-ranking metrics: every item is a candidate, no sampled negatives.

Ranks are pessimistic on ties: a target's rank is one plus the number of *other* candidates that
score at least as high as it, so a model never gains from equal scores (a constant scorer ranks
every target last, not first). Masked candidates (padding, already-seen items) score -inf and are
never counted; a masked target is a miss.

With a set of targets T (the temporal protocol's items of a day; leave-one-out has one):

- HR@K   = 1 if some target has rank <= K
- MRR@K  = 1 / (best rank), 0 if it is > K
- NDCG@K = sum_{t in T, rank_t <= K} 1 / log2(rank_t + 1)  /  sum_{i=1}^{min(|T|, K)} 1 / log2(i + 1)

With one target these are the usual hit rate, reciprocal rank and 1 / log2(rank + 1).

Beyond accuracy, from the same ranking's top K list ``R_u`` of each user (``list_metrics``, per
user; items scoring -inf never enter a list), with ``c_i`` item i's training events, ``|U|`` the
users and the popularity buckets of ``popularity_buckets``:

- popularity@K = mean_{i in R_u} c_i (the average popularity of what is recommended);
- novelty@K    = mean_{i in R_u} log2(|U| / max(c_i, 1)) (mean self-information; Zhou et al., PNAS 2010);
- tail@K       = the share of R_u in the long tail (the least popular items that make the last third
  of the training events);
- ild@K        = mean over pairs i != j of R_u of 1 - cos(v_i, v_j) (intra-list diversity, from the
  model's item vectors; none for a method without them).

and over the whole catalogue of candidates C, from the number of lists ``n_i`` each item is in
(``catalogue_metrics``):

- coverage@K = |{i in C : n_i > 0}| / |C|;
- gini@K     = sum_k (2k - |C| - 1) n_(k) / (|C| sum_i n_i), the n_(k) in ascending order (0: every
  item recommended equally often, towards 1: one item to everyone);
- entropy@K  = -sum_i p_i log2 p_i with p_i = n_i / sum_j n_j (Shannon, in bits).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

METRICS = ("hr", "ndcg", "mrr")


def target_ranks(scores: Tensor, targets: Tensor) -> Tensor:
    """Pessimistic 1-based ranks of ``targets`` [B, T] (0 = no target, padding) in ``scores`` [B, N].

    ``scores`` must already hold -inf at masked candidates. Padded target slots get rank 0; a
    target whose score is -inf (masked) gets rank -1: a target that is never hit, at any K.
    """
    s_t = scores.gather(1, targets.clamp(min=0))  # [B, T]
    # Candidates at least as high as the target, the target itself included (when unmasked).
    if targets.size(1) == 1:  # one comparison per candidate
        at_least = (scores >= s_t).sum(-1, keepdim=True)
    else:  # many targets (a day's items): a sort and binary searches, not a [B, T, N] comparison
        ascending = scores.sort(1).values
        at_least = scores.size(1) - torch.searchsorted(ascending, s_t.contiguous(), side="left")
    ranks = torch.where(torch.isneginf(s_t), torch.full_like(at_least, -1), at_least)
    return torch.where(targets > 0, ranks, torch.zeros_like(ranks))


def metrics_from_ranks(ranks: Tensor, ks: tuple[int, ...] = (10, 20)) -> dict[tuple[str, int], Tensor]:
    """Per-row HR, NDCG and MRR at each K from ``ranks`` [B, T] (0 = padding slot, -1 = masked target)."""
    valid = ranks > 0
    n_targets = (ranks != 0).sum(1)
    r = ranks.double()
    out: dict[tuple[str, int], Tensor] = {}
    for k in ks:
        hit = valid & (ranks <= k)
        out[("hr", k)] = hit.any(1).double()
        best = torch.where(hit, r, torch.full_like(r, math.inf)).min(1).values
        out[("mrr", k)] = torch.where(torch.isinf(best), torch.zeros_like(best), 1.0 / best)
        dcg = torch.where(hit, 1.0 / torch.log2(r + 1.0), torch.zeros_like(r)).sum(1)
        discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.double))
        idcg = torch.cumsum(discounts, 0)[(n_targets.clamp(1, k) - 1)]
        out[("ndcg", k)] = dcg / idcg
    return out


def mask_scores(scores: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Set ``scores[rows, cols]`` and the padding column 0 to -inf (in place; returns ``scores``)."""
    scores[:, 0] = -math.inf
    if rows.numel():
        scores[rows, cols] = -math.inf
    return scores


#: Metrics of the recommended lists (``list_metrics``) and of the catalogue (``catalogue_metrics``).
LIST_METRICS = ("popularity", "novelty", "tail", "ild")
CATALOGUE_METRICS = ("coverage", "gini", "entropy")


def top_lists(scores: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """(scores, items) [B, width] of each row's best ``width``, ties by the lower item index: what a
    full stable sort gives, at the cost of a ``topk`` (a full sort is ~40x a topk of 20 over 41k
    items). Only the items at or above the row's ``width``-th score are ordered; rows tied over
    far more items than that (a constant scorer) take the full sort."""
    width = min(width, scores.size(1))
    top = _at_or_above(scores, width)
    if top is None:
        values, items = scores.sort(dim=1, descending=True, stable=True)
        return values[:, :width], items[:, :width]
    return _order(top[0], top[1], width)


def _at_or_above(scores: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor] | None:
    """(values, items) [B, m] of every item at or above each row's ``width``-th score, in no set
    order, and that score [B, 1]; None when a row ties over far more items than ``width`` (a
    constant scorer), which the callers sort in full."""
    values, items = scores.topk(width, dim=1)
    kth = values[:, -1:]
    m = int((scores >= kth).sum(1).max())
    if m > 4 * width + 1024:
        return None
    if m > width:  # ties at the width-th score: every tied item, to order them by index
        values, items = scores.topk(m, dim=1)
    return values, items, kth


def _order(values: Tensor, items: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """The best ``width`` of unordered (``values``, ``items``) [B, m], ties by the lower item index."""
    items, by_index = items.sort(dim=1)
    values, by_score = values.gather(1, by_index).sort(dim=1, descending=True, stable=True)
    return values[:, :width], items.gather(1, by_score)[:, :width]


def lists_and_ranks(scores: Tensor, targets: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """``top_lists(scores, width)`` and ``target_ranks(scores, targets)`` in one pass over ``scores``
    fewer, with every rank beyond ``width`` reported as ``width + 1``: HR, NDCG and MRR at K <= width
    read both as a miss. Every item scoring at least the target is among those at or above the
    ``width``-th score when the target is, so its rank is counted there, in [B, T, m] not [B, N]."""
    width = min(width, scores.size(1))
    top = _at_or_above(scores, width)
    if top is None:  # a constant scorer: the plain way
        return target_ranks(scores, targets).clamp(max=width + 1), *top_lists(scores, width)
    values, items, kth = top
    s_t = scores.gather(1, targets.clamp(min=0))  # [B, T]
    at_least = values.size(1) - torch.searchsorted(values.sort(1).values, s_t.contiguous(), side="left")
    ranks = torch.where(s_t >= kth, at_least, width + 1).clamp(max=width + 1)
    ranks = torch.where(torch.isneginf(s_t), torch.full_like(ranks, -1), ranks)
    return torch.where(targets > 0, ranks, torch.zeros_like(ranks)), *_order(values, items, width)


def popularity_buckets(counts: Tensor) -> Tensor:
    """0 (head), 1 (torso) or 2 (tail) per item of ``counts`` [N] (training events; index 0 is
    padding): items by decreasing count (ties: lower index first), the head those that make the
    first third of all events, the torso the second, the tail the rest and every item never seen."""
    order = torch.argsort(-counts.double(), stable=True)
    total = counts.double().sum().clamp(min=1.0)
    before = torch.cumsum(counts.double()[order], 0) - counts.double()[order]  # events of more popular items
    bucket = torch.empty_like(counts, dtype=torch.long)
    bucket[order] = torch.where(before < total / 3, 0, torch.where(before < 2 * total / 3, 1, 2))
    bucket[counts <= 0] = 2
    return bucket


def list_metrics(items: Tensor, valid: Tensor, counts: Tensor, n_users: int, tail: Tensor,
                 vectors: Tensor | None, ks: tuple[int, ...] = (10, 20)) -> dict[tuple[str, int], Tensor]:
    """Per-user popularity, novelty, tail share and intra-list diversity at each K (module
    docstring) of the top lists ``items`` [B, >= max K] (``valid`` [B, >= max K]: False where the
    list ran out of candidates); ``vectors`` [N, d] the item vectors, or None."""
    out: dict[tuple[str, int], Tensor] = {}
    c = counts.double()
    novelty = torch.log2(n_users / c.clamp(min=1.0))
    unit = None if vectors is None else torch.nn.functional.normalize(vectors.double(), dim=1)
    for k in ks:
        top, ok = items[:, :k], valid[:, :k].double()
        n = ok.sum(1).clamp(min=1.0)
        out[("popularity", k)] = (c[top] * ok).sum(1) / n
        out[("novelty", k)] = (novelty[top] * ok).sum(1) / n
        out[("tail", k)] = ((tail[top] == 2).double() * ok).sum(1) / n
        if unit is not None:
            v = unit[top] * ok.unsqueeze(-1)  # [B, k, d]; rows past the list are zero
            pairs = ok.unsqueeze(2) * ok.unsqueeze(1) * (1 - torch.eye(k, dtype=torch.double))
            dist = (1 - v @ v.transpose(1, 2)) * pairs
            out[("ild", k)] = dist.sum((1, 2)) / pairs.sum((1, 2)).clamp(min=1.0)
    return out


def catalogue_metrics(list_counts: Tensor, candidates: Tensor) -> dict[str, float]:
    """Coverage, Gini index and entropy (module docstring) of ``list_counts`` [N] (how many lists
    each item is in) over the ``candidates`` [C] items."""
    n = list_counts[candidates].double()
    total = float(n.sum())
    if total == 0 or len(n) == 0:
        return {"coverage": 0.0, "gini": float("nan"), "entropy": float("nan")}
    ascending = n.sort().values
    k = torch.arange(1, len(n) + 1, dtype=torch.double)
    p = n[n > 0] / total
    return {"coverage": float((n > 0).double().mean()),
            "gini": float(((2 * k - len(n) - 1) * ascending).sum() / (len(n) * total)),
            "entropy": float(-(p * torch.log2(p)).sum())}
