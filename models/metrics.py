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
