"""Graph neural network methods (torch-geometric): SR-GNN over session graphs, LightGCN over the
user-item graph.

**SR-GNN** (Wu et al., "Session-based Recommendation with Graph Neural Networks", AAAI 2019).
A history's distinct items are the nodes of a directed graph with an edge for each pair of
consecutive events. Node states start at the item embeddings and pass ``steps`` gated graph
layers (PyG ``GatedGraphConv``: ``m_v = mean_{u->v} W h_u``, ``h_v <- GRU(m_v, h_v)``; the
paper concatenates in- and out-neighbour messages, here a node reads its in-neighbours).
Readout over the history's positions ``i``, with ``s_l`` the state of the last item:

    a_i = q^T sigmoid(W_1 s_l + W_2 h_i + c),   s_g = sum_i a_i h_i,   u = W_3 [s_l ; s_g]

and ``score(u, j) = <u, v_j>``. Like the paper, it trains on every prefix of a user's training
events (the prefix's last event is the target), a graph per prefix, built for the whole batch at
once with ``torch.unique`` (``session_graphs``).

**LightGCN** (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020), PyG's ``LightGCN``: embeddings ``e^(0)`` of users and items,
propagated without weights or non-linearities over the symmetric-normalized bipartite graph,
``e^(k+1) = D^-1/2 A D^-1/2 e^(k)``, and averaged over layers, ``e = mean_k e^(k)``. The graph
is the ETL's ``graphs/user_item`` table as of the day (``data.side.user_item_edges``) minus every
held-out (validation or test) event, stored with the model (sparse edge list; never a dense user x item matrix). Loss: BPR with
one uniform negative per training edge and L2 on the batch's layer-0 embeddings (the paper's), or
any of the shared next-item losses. On a cross-domain pair's joint graph, ``same_domain_negatives``
draws each negative from its positive's domain (BiTGCF, Liu et al. CIKM 2020, trains a BPR loss
per domain). A user's vector is their row: LightGCN has no vector for a
user absent from the training graph.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from models.base import ModelParams, SequenceModel, cached_csr, next_item_loss
from models.data import SequenceData, held_out_pairs, prefix_windows, windows
from models.errors import DataError


class SRGNNParams(ModelParams):
    #: Gated graph layers per history.
    steps: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


def session_graphs(items: Tensor, lengths: Tensor, n_items: int) -> tuple[Tensor, Tensor, Tensor]:
    """The session graphs of a batch of right-padded histories ``items`` [B, L].

    Returns ``node_item`` [N] (the item of each node; nodes are each row's distinct items, row by
    row), ``edge_index`` [2, E] (distinct directed edges between consecutive events' nodes) and
    ``position_node`` [B, L] (the node of each position; -1 past the history).
    """
    B, L = items.shape
    valid = torch.arange(L, device=items.device).unsqueeze(0) < lengths.unsqueeze(1)
    rows = torch.arange(B, device=items.device).unsqueeze(1).expand(B, L)
    key = rows * (n_items + 1) + items  # distinct per (row, item)
    uniq, inverse = torch.unique(key[valid], return_inverse=True)
    node_item = uniq % (n_items + 1)
    position_node = torch.full((B, L), -1, dtype=torch.long, device=items.device)
    position_node[valid] = inverse
    step = valid[:, :-1] & valid[:, 1:]
    src, dst = position_node[:, :-1][step], position_node[:, 1:][step]
    n = max(len(uniq), 1)
    pair = torch.unique(src * n + dst)
    return node_item, torch.stack([pair // n, pair % n]), position_node


class SRGNN(SequenceModel):
    """SR-GNN: gated graph layers over each history's item graph, attention readout (see the module docstring)."""

    name: ClassVar[str] = "srgnn"
    family: ClassVar[str] = "GNN"
    Params: ClassVar[type[ModelParams]] = SRGNNParams

    def __init__(self, n_items: int, params: SRGNNParams, n_users: int = 0):
        from torch_geometric.nn import GatedGraphConv

        super().__init__(n_items, params, n_users)
        d = params.dim
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.ggnn = GatedGraphConv(d, num_layers=params.steps, aggr="mean")
        self.w1, self.w2 = nn.Linear(d, d, bias=False), nn.Linear(d, d)
        self.q = nn.Linear(d, 1, bias=False)
        self.w3 = nn.Linear(2 * d, d, bias=False)
        self.drop = nn.Dropout(params.dropout)
        stdv = 1.0 / math.sqrt(d)  # the paper's initialisation: U(-1/sqrt(d), 1/sqrt(d))
        for p in self.parameters():
            nn.init.uniform_(p, -stdv, stdv)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def training_examples(self, data: SequenceData) -> Tensor:
        """One window per training target: each prefix's last ``max_len`` events and its target."""
        starts, ends = prefix_windows(data, self.params.max_len + 1)
        return torch.as_tensor(windows(data.items, starts, ends, self.params.max_len + 1))

    def count_targets(self, examples: Tensor) -> int:
        return len(examples)

    def encode(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        node_item, edge_index, position_node = session_graphs(history, lengths, self.n_items)
        h = self.ggnn(self.drop(self.item(node_item)), edge_index)
        valid = position_node >= 0
        seq = h[position_node.clamp(min=0)] * valid.unsqueeze(-1)  # [B, L, d]
        last = seq[torch.arange(len(history), device=history.device), lengths - 1]
        alpha = self.q(torch.sigmoid(self.w1(last).unsqueeze(1) + self.w2(seq))) * valid.unsqueeze(-1)
        return self.w3(torch.cat([last, (alpha * seq).sum(1)], -1))

    def item_embeddings(self) -> Tensor:
        return self.item.weight

    def loss(self, batch: Tensor) -> Tensor:
        lengths = (batch > 0).sum(1)
        rows = torch.arange(len(batch), device=batch.device)
        targets = batch[rows, lengths - 1]
        history = batch.clone()
        history[rows, lengths - 1] = 0
        u = self.encode(history[:, :-1], lengths - 1)
        return next_item_loss(u, targets, self.item_embeddings(), self.params)


class LightGCNParams(ModelParams):
    num_layers: int = Field(3, ge=1)
    #: ``bpr`` (the paper's) or one of the shared next-item losses.
    loss: Literal["bpr", "ce", "sampled", "bce"] = "bpr"  # type: ignore[assignment]
    #: L2 weight on the batch's layer-0 embeddings (BPR only).
    reg: float = Field(1e-4, ge=0.0)
    #: BPR on a cross-domain pair's joint graph: draw each negative from its positive's domain
    #: (target items when the positive is one, the source's otherwise), as BiTGCF's per-domain
    #: losses; uniform negatives reward telling the two domains apart.
    same_domain_negatives: bool = False


class LightGCN(SequenceModel):
    """LightGCN over the ETL's user-item graph (see the module docstring)."""

    name: ClassVar[str] = "lightgcn"
    family: ClassVar[str] = "GNN"
    Params: ClassVar[type[ModelParams]] = LightGCNParams

    def __init__(self, n_items: int, params: LightGCNParams, n_users: int = 0):
        from torch_geometric.nn.models import LightGCN as PygLightGCN

        if n_users < 1:
            raise ValueError("lightgcn needs the user vocabulary's size (n_users)")
        super().__init__(n_items, params, n_users)
        # Nodes: users 0..U-1, then items U + 0..U + N (item 0 is padding and has no edges).
        self.gcn = PygLightGCN(n_users + n_items + 1, params.dim, params.num_layers, normalize=False)
        self.register_buffer("edge_index", torch.zeros(2, 0, dtype=torch.long))
        self.register_buffer("edge_weight", torch.zeros(0))

    def prepare(self, data: SequenceData) -> None:
        """The training graph: the user-item graph as of the day minus held-out events."""
        src, dst = training_graph(data)
        from torch_geometric.utils import to_undirected
        from torch_geometric.nn.conv.gcn_conv import gcn_norm

        edge_index = to_undirected(torch.stack([torch.as_tensor(src), torch.as_tensor(dst) + self.n_users]),
                                   num_nodes=self.gcn.num_nodes)
        edge_index, weight = gcn_norm(edge_index, None, self.gcn.num_nodes, add_self_loops=False)
        self.edge_index, self.edge_weight = edge_index.to(self.edge_index.device), weight.to(self.edge_weight.device)
        self._pairs = torch.stack([torch.as_tensor(src), torch.as_tensor(dst)], 1)
        # Sorted (user, item) keys of the training edges: BPR negatives are drawn among other items.
        self._edge_keys = torch.sort(self._pairs[:, 0] * (self.n_items + 1) + self._pairs[:, 1]).values
        self._domains = None
        if self.params.same_domain_negatives and data.candidates is not None:
            target = torch.zeros(self.n_items + 1, dtype=torch.bool)
            target[torch.as_tensor(data.candidates, dtype=torch.long)] = True
            target[0] = False
            source = torch.nonzero(~target).flatten()[1:]  # item 0 is padding
            if len(source) and bool(target.any()):  # one domain alone: uniform draws are the same thing
                self._domains = (target, torch.nonzero(target).flatten(), source)

    def training_examples(self, data: SequenceData) -> Tensor:
        """The training graph's (user_idx, item_idx) edges."""
        return self._pairs

    def count_targets(self, examples: Tensor) -> int:
        return len(examples)

    def _adjacency(self) -> Tensor:
        """The normalized adjacency as a sparse CSR matrix, built once from the stored edge list: PyG then
        propagates with one sparse matmul per layer (~7x faster on CPU than gather/scatter)."""
        n = self.gcn.num_nodes
        return cached_csr(self, "adjacency", self.edge_index, self.edge_weight, (n, n), transpose=True)

    def _embeddings(self) -> Tensor:
        if torch.is_grad_enabled():
            return self.gcn.get_embedding(self._adjacency())
        # Without gradients (evaluation, inference) one propagation serves every batch until the
        # weights change: an optimizer step or a load bumps the tensor's version counter.
        w = self.gcn.embedding.weight
        key = (w.data_ptr(), w._version, w.device, self.edge_index.data_ptr())
        cached = getattr(self, "_propagated", None)
        if cached is None or cached[0] != key:
            cached = (key, self.gcn.get_embedding(self._adjacency()))
            object.__setattr__(self, "_propagated", cached)  # not a buffer: no state_dict entry
        return cached[1]

    def encode(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        if users is None:
            raise ValueError("lightgcn encodes users by their user_idx")
        return self._embeddings()[users]

    def item_embeddings(self) -> Tensor:
        return self._embeddings()[self.n_users:]

    def fold_in(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        """``u = mean_{i in history} v_i``: one propagation step from the user's items, without
        retraining (a user's trained row only knows the training graph)."""
        v = self.item_embeddings()[history]  # [B, L, d]; padding rows are masked out below
        real = (history > 0).unsqueeze(-1).to(v.dtype)
        return (v * real).sum(1) / real.sum(1).clamp(min=1)

    def full_scores(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        if users is None:
            raise ValueError("lightgcn encodes users by their user_idx")
        e = self._embeddings()
        return e[users] @ e[self.n_users:].T

    def negatives(self, users: Tensor, shape: torch.Size, tries: int = 8, pos: Tensor | None = None) -> Tensor:
        """One uniform item per user among those not in the user's training edges (as the paper's
        BPR sampler): draws that hit an edge are redrawn, up to ``tries`` times. With
        ``same_domain_negatives`` on a pair's joint graph, uniform within ``pos``'s domain."""
        draw = self._sampler(users.device, pos)
        neg = draw(torch.ones(shape, dtype=torch.bool, device=users.device)).reshape(shape)
        keys = self._edge_keys.to(users.device)
        for _ in range(tries):
            k = users * (self.n_items + 1) + neg
            at = torch.searchsorted(keys, k).clamp(max=len(keys) - 1)
            hit = keys[at] == k
            if not hit.any():
                break
            neg[hit] = draw(hit)
        return neg

    def _sampler(self, device: torch.device, pos: Tensor | None):
        """``draw(mask)``: a uniform item for each position of ``mask`` that is set, from every item,
        or from the domain of ``pos`` at that position."""
        if getattr(self, "_domains", None) is None or pos is None:
            return lambda mask: torch.randint(1, self.n_items + 1, (int(mask.sum()),), device=device)
        if self._domains[0].device != device:  # moved once, not on every batch
            self._domains = tuple(t.to(device) for t in self._domains)
        is_target, target, source = self._domains
        in_target = is_target[pos]

        def draw(mask: Tensor) -> Tensor:
            n = int(mask.sum())
            t = target[torch.randint(0, len(target), (n,), device=device)]
            s = source[torch.randint(0, len(source), (n,), device=device)]
            return torch.where(in_target[mask], t, s)
        return draw

    def loss(self, batch: Tensor) -> Tensor:
        users, pos = batch[:, 0], batch[:, 1]
        e = self._embeddings()
        u, items = e[users], e[self.n_users:]
        if self.params.loss != "bpr":
            return next_item_loss(u, pos, items, self.params)
        neg = self.negatives(users, pos.shape, pos=pos)
        pos_rank, neg_rank = (u * items[pos]).sum(-1), (u * items[neg]).sum(-1)
        nodes = torch.cat([users, pos + self.n_users, neg + self.n_users])
        return self.gcn.recommendation_loss(pos_rank, neg_rank, node_id=nodes, lambda_reg=self.params.reg)


def training_graph(data: SequenceData) -> tuple[np.ndarray, np.ndarray]:
    """(user_idx, item_idx) edges of the user-item graph as of ``data.day`` (``data.side``: the
    ETL's ``graphs/user_item`` table when the data was loaded from a warehouse) that remain after
    removing each held-out event (a pair the user also has among training events stays)."""
    if data.side is None:
        raise DataError("lightgcn trains on the user-item graph (the warehouse's graphs/user_item); this data has "
                        "none: load it with pipelines.modeling.data.load, or give SequenceData a side")
    users_e, items_e, count = data.side.user_item_edges()
    n = data.n_items + 1
    key = users_e.astype(np.int64) * n + items_e.astype(np.int64)
    count = count.astype(np.int64)
    held = held_out_pairs(data)
    held_key, held_count = np.unique(held[:, 0] * n + held[:, 1], return_counts=True)
    order = np.argsort(key)
    key, count = key[order], count[order]
    at = np.searchsorted(key, held_key)
    found = (at < len(key)) & (key[np.minimum(at, len(key) - 1)] == held_key)
    if not found.all():
        raise DataError(f"graphs/user_item as of {data.day} lacks {int((~found).sum())} (user, item) pairs of the "
                        "sequences: the graph and sequence tables are out of step (rerun `seqrep etl`)")
    count[at] -= held_count
    keep = key[count > 0]
    # Only users of this data (a graph row of a user without sequences would train a vector never used).
    users = keep // n
    keep = keep[np.isin(users, data.users)]
    return keep // n, keep % n
