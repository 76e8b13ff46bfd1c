"""Social: SASRec whose user vector also reads the tastes of the user's friends (DiffNet-style).

A user ``u`` with friends ``F(u)`` (the social graph as of the day, ``data.side.social_edges``:
``u`` befriends or follows each ``v``) gets, besides SASRec's sequence state ``h_u``
(``models/transformer.py``), the mean taste of their friends:

    x_v = (1 / |T_v|) sum_{i in T_v} e_i          a friend's training events T_v, SASRec's item table e
    s_u = mean_{v in F(u)} x_v                    one mean-aggregation layer over the graph (PyG ``SimpleConv``)
    z_u = W_s s_u,   g_u = sigmoid(W_g [h_u ; z_u] + b_g)
    u   = h_u + g_u * z_u                         (``u = h_u`` for a user without friends: s_u = 0)

and ``score(u, i) = <u, e_i>`` as in SASRec. Every position of a training window reads the
window's user's ``z_u``; ``x`` is recomputed from the current item table at every step, so the
friends' vectors train with the items. A user with a short history has a weak ``h_u``: their
friends' events are the signal that should help them most (``bench/README.md``, "Social").

DiffNet (Wu et al., "A Neural Influence Diffusion Model for Social Recommendation", SIGIR 2019,
https://arxiv.org/abs/1904.10322) diffuses user vectors through ``K`` layers of the social graph,
starting from a free user embedding plus the user's features, and adds the mean of the items the
user consumed. Where this departs from it: one layer, not ``K``, and the user's own events are
left out of ``s_u`` (in two or more layers a user's own later events would come back through
their friends' friends and leak a training window's targets into its input); no free per-user
embedding (so a new user with friends gets a social vector without retraining); the sequence
model is SASRec, not a matrix factorization. The friends' events are their training events as of
the training day, stored with the model (``seqrep infer`` on a later day reads the same tastes).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from models.base import ModelParams, cached_csr, next_item_loss
from models.data import SequenceData, training_windows, train_positions, windows
from models.errors import DataError
from models.transformer import SASRec, TransformerParams


class SocialSASRec(SASRec):
    """SASRec fused with the mean taste of the user's friends."""

    name: ClassVar[str] = "sasrec_social"
    family: ClassVar[str] = "social"
    Params: ClassVar[type[ModelParams]] = TransformerParams

    def __init__(self, n_items: int, params: TransformerParams, n_users: int = 0):
        from torch_geometric.nn import SimpleConv

        if n_users < 1:
            raise ValueError("sasrec_social needs the user vocabulary's size (n_users)")
        super().__init__(n_items, params, n_users)
        d = params.dim
        self.social = nn.Linear(d, d, bias=False)  # W_s
        self.gate = nn.Linear(2 * d, d)  # W_g, b_g
        self.friends_mean = SimpleConv(aggr="mean")
        # (user_idx, item_idx, 1 / |T_v|) of every training event, and the (friend, user) edges:
        # buffers, so a saved model carries them (their size is the data's).
        self.register_buffer("taste_index", torch.zeros(2, 0, dtype=torch.long))
        self.register_buffer("taste_weight", torch.zeros(0))
        self.register_buffer("edge_index", torch.zeros(2, 0, dtype=torch.long))

    def prepare(self, data: SequenceData) -> None:
        """The friends' training events and the social graph as of ``data.day`` (its users only)."""
        if data.side is None:
            raise DataError("sasrec_social reads the social graph (the warehouse's graphs/social); this data has "
                            "none: load it with pipelines.modeling.data.load, or give SequenceData a side")
        users, friends = data.side.social_edges()
        n = data.train_len.astype(np.int64)
        row = np.repeat(np.arange(len(n)), n)
        user, item = data.users[row], data.items[train_positions(data.offsets, data.train_len)]
        active = np.zeros(self.n_users, dtype=bool)
        active[data.users[n > 0]] = True
        # Edges between users of the model whose friend has training events (an empty taste would
        # only pull the mean towards zero).
        keep = (users < self.n_users) & (friends < self.n_users) & active[np.minimum(friends, self.n_users - 1)]
        dev = self.taste_index.device
        self.taste_index = torch.as_tensor(np.stack([user, item]), dtype=torch.long, device=dev)
        self.taste_weight = torch.as_tensor(1.0 / n[row], dtype=torch.float32, device=dev)
        self.edge_index = torch.as_tensor(np.stack([friends[keep], users[keep]]), dtype=torch.long, device=dev)

    def _taste(self) -> Tensor:
        """The [U, N + 1] matrix of the users' mean training items, sparse CSR, built once from the buffers."""
        return cached_csr(self, "taste", self.taste_index, self.taste_weight, (self.n_users, self.vocab_size))

    def friend_vectors(self, users: Tensor) -> Tensor:
        """``z_u = W_s s_u`` [B, d] of ``users`` (zero for a user outside the graph)."""
        x = self._taste() @ self.item_emb.weight  # [U, d]: each user's mean training item
        s = self.friends_mean(x, self.edge_index)  # [U, d]: mean over in-edges friend -> user
        inside = users < self.n_users
        s_u = torch.where(inside.unsqueeze(-1), s[users.clamp(max=self.n_users - 1)], torch.zeros_like(s[:1]))
        return self.social(s_u)

    def fuse(self, h: Tensor, z: Tensor) -> Tensor:
        """``u = h + sigmoid(W_g [h ; z] + b_g) * z`` (``z`` broadcast over positions)."""
        z = z.expand_as(h)
        return h + torch.sigmoid(self.gate(torch.cat([h, z], -1))) * z

    def training_examples(self, data: SequenceData) -> Tensor:
        """SASRec's windows, each with its user's ``user_idx`` as a last column."""
        starts, ends = training_windows(data, self.window_width, self.window_stride)
        rows = np.searchsorted(data.offsets, starts, side="right") - 1
        return torch.as_tensor(np.hstack([windows(data.items, starts, ends, self.window_width),
                                          data.users[rows][:, None].astype(np.int64)]))

    def count_targets(self, examples: Tensor) -> int:
        return super().count_targets(examples[:, :-1])

    def loss(self, batch: Tensor) -> Tensor:
        inputs, targets, users = batch[:, :-2], batch[:, 1:-1], batch[:, -1]
        h = self.fuse(self.hidden(inputs), self.friend_vectors(users).unsqueeze(1))
        keep = targets > 0
        return next_item_loss(h[keep], targets[keep], self.item_embeddings(), self.params)

    def encode(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        if users is None:
            raise ValueError("sasrec_social reads the users' friends: it needs their user_idx")
        return self.fuse(super().encode(history, lengths, users), self.friend_vectors(users))
