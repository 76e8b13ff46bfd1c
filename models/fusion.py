"""GNN x self-attention fusion: GC-SAN.

**GC-SAN** (Xu et al., "Graph Contextualized Self-Attention Network for Session-based
Recommendation", IJCAI 2019). A history's session graph (its distinct items as nodes, an edge
for each pair of consecutive events: ``models.gnn.session_graphs``, as SR-GNN) passes ``steps``
gated graph layers (PyG ``GatedGraphConv``), which give every item a state ``h_v`` that knows its
local transitions. The node states, read back in the order of the history's positions
``H = [h_{x_1}, ..., h_{x_n}]`` (a repeated item's state at each of its positions), then pass
``num_layers`` self-attention blocks (``torch.nn.TransformerEncoderLayer``: multi-head attention,
a position-wise feed-forward layer, residuals and layer norm; padding masked), ``E = SAN(H)``, which
relate every position to every other, near or far. The user vector mixes the attention output at
the last position with the last item's graph state,

    u = omega * E_n + (1 - omega) * h_{x_n},

and ``score(u, j) = <u, v_j>``. Same training examples and loss as SR-GNN (every prefix of a
user's training events, its last event the target).

Where it departs from the paper: the graph layer reads in-neighbours only (as ``models.gnn``'s
SR-GNN; the paper concatenates in- and out-neighbour messages); the attention is not causal,
which changes nothing for the last position the score reads; like the paper, no position
embedding (the graph states carry the order of transitions).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from models.base import ModelParams
from models.gnn import SRGNN, SRGNNParams, session_graphs


class GCSANParams(SRGNNParams):
    #: Self-attention blocks over the node states.
    num_layers: int = Field(1, ge=1)
    num_heads: int = Field(1, ge=1)
    #: Width of each block's feed-forward layer, as a multiple of ``dim``.
    ff_mult: int = Field(4, ge=1)
    #: Dropout inside the attention blocks.
    attention_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    #: ``omega``: the attention output's weight in the user vector (the last graph state's is 1 - omega).
    omega: float = Field(0.5, ge=0.0, le=1.0)


class GCSAN(SRGNN):
    """GC-SAN: SR-GNN's graph layers, then self-attention over the node states (module docstring)."""

    name: ClassVar[str] = "gcsan"
    family: ClassVar[str] = "fusion"
    Params: ClassVar[type[ModelParams]] = GCSANParams

    def __init__(self, n_items: int, params: GCSANParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)  # the item embeddings and graph layers, initialised as SR-GNN's
        d = params.dim
        if d % params.num_heads:
            raise ValueError(f"gcsan: model.dim={d} must be a multiple of model.num_heads={params.num_heads}")
        block = nn.TransformerEncoderLayer(d, params.num_heads, params.ff_mult * d, params.attention_dropout,
                                           batch_first=True)
        self.san = nn.TransformerEncoder(block, params.num_layers, enable_nested_tensor=False)

    def graph_states(self, history: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The graph layers' state of each position's item, [B, L, d] (zeros past the history),
        and the mask of real positions [B, L]."""
        node_item, edge_index, position_node = session_graphs(history, lengths, self.n_items)
        h = self.ggnn(self.drop(self.item(node_item)), edge_index)
        valid = position_node >= 0
        return h[position_node.clamp(min=0)] * valid.unsqueeze(-1), valid

    def encode(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        states, valid = self.graph_states(history, lengths)
        attended = self.san(states, src_key_padding_mask=~valid)
        rows, last = torch.arange(len(history), device=history.device), lengths - 1
        omega = self.params.omega
        return omega * attended[rows, last] + (1 - omega) * states[rows, last]
