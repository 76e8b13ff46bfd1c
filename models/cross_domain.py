"""Cross-domain methods: a user's behavior in a source domain gives them a representation in a
target domain. They train on a cross-domain pair's data (``pipelines/modeling/cross_domain.py``:
a pair's target, source or mixed view, whose ``candidates`` are the target's items), and every
ranking covers target items only. The target-only baselines are the other methods on the
target view; LightGCN on the mixed view is the graph method over the joint user-item graph
(``models/gnn.py``: users shared by both domains' items, BiTGCF's simple form).

**Mixed-sequence SASRec** (``sasrec_mixed``; the idea of C2DSR, Cao et al., "Contrastive
Cross-Domain Sequential Recommendation", CIKM 2022, simplified to one encoder): SASRec over the
time-ordered events of both domains, each input embedded with its domain,

    H^0 = dropout(sqrt(d) E[x_t] + D[dom(x_t)] + P_t),

trained to predict the next *target* item only: the loss at position t is taken when x_{t+1} is
a target item, over target items (softmax over the target's items, or sampled among them). A
cold-start-in-target user is encoded from their source events.

**EMCDR** (``emcdr``; Man et al., "Cross-Domain Recommendation: An Embedding and Mapping
Approach", IJCAI 2017): two models trained on each domain alone give user vectors ``u^s`` and
``u^t`` and the target item vectors ``v^t``; a mapping ``f`` (an MLP) is fitted on users with both,

    min_f  sum_{u in overlap} || f(u^s) - u^t ||^2,

and a user with no target history is scored by ``<f(u^s), v^t_i>``; a user with one keeps ``u^t``.
The vectors come from the data's side (``data.side.run_vectors``): runs named in the params
(by default LightGCN's on the pair's source and target views: the paper fits MF vectors,
LightGCN is their graph form).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from models.base import ModelParams, SequenceModel, next_item_loss
from models.data import SequenceData
from models.errors import DataError
from models.transformer import SASRec, TransformerParams

#: Domain codes of ``MixedSASRec.domain_of``: padding, the target, any other domain.
PAD, TARGET, OTHER = 0, 1, 2


def target_items(data: SequenceData) -> np.ndarray:
    """The data's candidate items (a pair's target items); an error without them."""
    if data.candidates is None:
        raise DataError("this method trains on a cross-domain pair's data (candidates: the target's items); "
                        "load it with pipelines.modeling.cross_domain.load_pair_data")
    return np.asarray(data.candidates, dtype=np.int64)


class MixedParams(TransformerParams):
    #: Only positions whose next event is a target item carry a loss (False: every next item).
    target_loss_only: bool = True


class MixedSASRec(SASRec):
    """SASRec over mixed sequences with a domain embedding (module docstring)."""

    name: ClassVar[str] = "sasrec_mixed"
    family: ClassVar[str] = "cross-domain"
    pair_view: ClassVar[str] = "mixed"
    Params: ClassVar[type[ModelParams]] = MixedParams

    def __init__(self, n_items: int, params: MixedParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)
        self.domain_emb = nn.Embedding(3, params.dim, padding_idx=PAD)
        nn.init.normal_(self.domain_emb.weight, std=0.02)
        self.domain_emb.weight.data[PAD].zero_()
        # Domain of each item (stored with the weights, so a loaded model needs no data).
        self.register_buffer("domain_of", torch.full((n_items + 1,), OTHER, dtype=torch.long))
        self.domain_of[0] = PAD

    def prepare(self, data: SequenceData) -> None:
        domain = torch.full((self.n_items + 1,), OTHER, dtype=torch.long)
        domain[0] = PAD
        domain[torch.as_tensor(target_items(data))] = TARGET
        self.domain_of.copy_(domain.to(self.domain_of.device))

    def _inputs(self, items: Tensor) -> Tensor:
        L = items.size(1)
        x = self.item_emb(items) * self.params.dim ** 0.5 + self.domain_emb(self.domain_of[items])
        return self.dropout(x + self.pos_emb.weight[:L])

    def loss(self, windows: Tensor) -> Tensor:
        """Next-target-item loss over the target's items (see the module docstring)."""
        if not self.params.target_loss_only:
            return super().loss(windows)
        inputs, targets = windows[:, :-1], windows[:, 1:]
        keep = self.domain_of[targets] == TARGET
        if not bool(keep.any()):
            return self.item_emb.weight.sum() * 0.0  # a batch without target events: no gradient
        h = self.hidden(inputs)[keep]
        # Rows of the target's items (0 first, as padding): targets as positions among them.
        rows = torch.cat([torch.zeros(1, dtype=torch.long, device=windows.device),
                          torch.nonzero(self.domain_of == TARGET).squeeze(1)])
        position = torch.zeros(self.n_items + 1, dtype=torch.long, device=windows.device)
        position[rows] = torch.arange(len(rows), device=windows.device)
        return next_item_loss(h, position[targets[keep]], self.item_emb.weight[rows], self.params)

    def count_targets(self, examples: Tensor) -> int:
        real = examples[:, 1:]
        return int((self.domain_of[real] == TARGET).sum()) if self.params.target_loss_only else int((real > 0).sum())


class EMCDRParams(ModelParams):
    #: The source-domain run whose user vectors are mapped: ``method@version`` of a run on the
    #: pair's source view, or a method's name: its run on that view with the config's settings
    #: as of the same day (trained first).
    source_run: str = "lightgcn"
    #: The target-domain run (the same forms, on the pair's target view): its user vectors are
    #: the mapping's targets, its item vectors rank.
    target_run: str = "lightgcn"
    #: Size of the source run's vectors (``dim`` is the target run's).
    source_dim: int = Field(64, ge=1)
    #: Hidden width of the mapping MLP (the paper: one hidden layer, 2x the input).
    hidden: int = Field(128, ge=1)


class EMCDR(SequenceModel):
    """Embedding and mapping across domains (module docstring)."""

    name: ClassVar[str] = "emcdr"
    family: ClassVar[str] = "cross-domain"
    pair_view: ClassVar[str] = "mixed"
    Params: ClassVar[type[ModelParams]] = EMCDRParams

    def __init__(self, n_items: int, params: EMCDRParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)
        self.mapping = nn.Sequential(nn.Linear(params.source_dim, params.hidden), nn.Tanh(),
                                     nn.Linear(params.hidden, params.dim))
        # The two runs' vectors, stored with the mapping so a loaded model scores without them.
        self.register_buffer("source_vectors", torch.zeros(n_users, params.source_dim))
        self.register_buffer("target_vectors", torch.zeros(n_users, params.dim))
        self.register_buffer("has_source", torch.zeros(n_users, dtype=torch.bool))
        self.register_buffer("has_target", torch.zeros(n_users, dtype=torch.bool))
        self.register_buffer("items", torch.zeros(n_items + 1, params.dim))

    def prepare(self, data: SequenceData) -> None:
        p = self.params
        if not p.source_run or not p.target_run:
            raise DataError("emcdr maps one run's user vectors onto another's: set model.source_run and "
                            "model.target_run (method@version of runs on the pair's source and target views)")
        if data.side is None or not hasattr(data.side, "run_vectors"):
            raise DataError("emcdr reads two runs' vectors from its data's side (a cross-domain pair's data)")
        for run, table, flag, dim in ((p.source_run, self.source_vectors, self.has_source, p.source_dim),
                                      (p.target_run, self.target_vectors, self.has_target, p.dim)):
            users, vectors, items = data.side.run_vectors(run)
            if vectors.shape[1] != dim:
                raise DataError(f"emcdr: run {run} has {vectors.shape[1]}-dimensional vectors, the params say {dim} "
                                "(model.source_dim for the source run, model.dim for the target run)")
            users = torch.as_tensor(users, dtype=torch.long)
            inside = users < self.n_users
            table[users[inside]] = torch.as_tensor(vectors, dtype=table.dtype)[inside].to(table.device)
            flag[users[inside]] = True
            if run == p.target_run:
                n = min(len(items), self.n_items + 1)
                self.items[:n] = torch.as_tensor(items[:n], dtype=self.items.dtype).to(self.items.device)

    def training_examples(self, data: SequenceData) -> Tensor:
        """The users with both vectors, one per row."""
        both = torch.nonzero(self.has_source & self.has_target).squeeze(1).cpu()
        return both.unsqueeze(1)

    def count_targets(self, examples: Tensor) -> int:
        return len(examples)

    def loss(self, batch: Tensor) -> Tensor:
        users = batch[:, 0]
        return F.mse_loss(self.mapping(self.source_vectors[users]), self.target_vectors[users])

    def encode(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        """``u^t`` where the user has one, else ``f(u^s)`` (zeros without either)."""
        if users is None:
            raise ValueError("emcdr encodes users by their user_idx")
        mapped = self.mapping(self.source_vectors[users])
        mapped = torch.where(self.has_source[users].unsqueeze(1), mapped, torch.zeros_like(mapped))
        return torch.where(self.has_target[users].unsqueeze(1), self.target_vectors[users], mapped)

    def item_embeddings(self) -> Tensor:
        return self.items
