"""Non-learned baselines, evaluated with the same protocol and table as the learned methods.

- ``pop``: score(i) = number of training events of item i (the same list for every user).
- ``markov``: first-order Markov chain, score(i) = count(last item -> i) in the training
  sequences, with popularity as the tie-breaker (+ pop(i) / (max pop + 1) < 1), so items the
  chain has never seen after the last item are ordered by popularity instead of tying.

They have no embeddings (``learned = False``): ``seqrep infer`` refuses them.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from models.base import ModelParams, SequenceModel
from models.data import SequenceData


class BaselineParams(ModelParams):
    pass


class MostPopular(SequenceModel):
    """Most popular items first (see the module docstring)."""

    name: ClassVar[str] = "pop"
    family: ClassVar[str] = "baseline"
    Params: ClassVar[type[ModelParams]] = BaselineParams
    learned: ClassVar[bool] = False

    def __init__(self, n_items: int, params: ModelParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)
        self.register_buffer("popularity", torch.zeros(n_items + 1))

    def prepare(self, data: SequenceData) -> None:
        self.popularity = torch.as_tensor(data.item_counts(), dtype=torch.float32)

    def full_scores(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        return self.popularity.to(history.device).expand(history.size(0), -1).clone()


class Markov(MostPopular):
    """First-order Markov chain with popularity tie-breaking (see the module docstring)."""

    name: ClassVar[str] = "markov"

    def __init__(self, n_items: int, params: ModelParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)
        # Transition counts as CSR rows (source item -> next items): memory grows with the
        # distinct pairs seen, not with items squared.
        self.register_buffer("crow", torch.zeros(n_items + 2, dtype=torch.long))
        self.register_buffer("col", torch.zeros(0, dtype=torch.long))
        self.register_buffer("count", torch.zeros(0))

    def prepare(self, data: SequenceData) -> None:
        super().prepare(data)
        starts = data.offsets[:-1]
        ends = starts + np.maximum(data.train_len - 1, 0)  # pairs (p, p + 1) inside the training events
        from models.data import ragged_positions

        pos = ragged_positions(starts, ends)
        src, dst = data.items[pos], data.items[pos + 1]
        n = self.n_items + 1
        pairs, counts = np.unique(src * n + dst, return_counts=True)  # sorted by source, then target
        src, dst = pairs // n, pairs % n
        self.crow = torch.as_tensor(np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]), dtype=torch.long)
        self.col = torch.as_tensor(dst, dtype=torch.long)
        self.count = torch.as_tensor(counts, dtype=torch.float32)

    def full_scores(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        pop = self.popularity.to(history.device)
        scores = (pop / (pop.max() + 1)).expand(history.size(0), -1).clone()
        last = history[torch.arange(history.size(0), device=history.device), lengths - 1].cpu()
        lo, hi = self.crow[last], self.crow[last + 1]
        n = hi - lo
        rows = torch.repeat_interleave(torch.arange(len(last)), n)
        pos = torch.arange(int(n.sum())) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n) + lo[rows]
        scores[rows.to(history.device), self.col[pos].to(history.device)] += self.count[pos].to(history.device)
        return scores
