"""Recurrent encoders: GRU4Rec and its LSTM variant.

GRU4Rec (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR 2016,
https://arxiv.org/abs/1511.06939), in the form RecBole and most re-implementations use:

    e_t = dropout(E[x_t]),   h_t = GRU(e_t, h_{t-1}),   u_t = W h_t + b,   score(t, i) = <u_t, E[i]>

The item table ``E`` is shared by input and output, so item embeddings live in the user space.
``LSTM`` swaps the GRU cell for an LSTM cell. Both are causal: right padding never reaches a real
position, and every position is trained to predict the next item.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
import torch
from torch import Tensor, nn

from models.base import ModelParams, SequenceModel, cut_padding


class RNNParams(ModelParams):
    #: Width of the recurrent state (projected back to ``dim`` for scoring).
    hidden_size: int = Field(128, ge=1)
    num_layers: int = Field(1, ge=1)


class GRU4Rec(SequenceModel):
    """GRU4Rec: a GRU over the item sequence (see the module docstring)."""

    name: ClassVar[str] = "gru4rec"
    family: ClassVar[str] = "RNN"
    Params: ClassVar[type[ModelParams]] = RNNParams
    cell: ClassVar[type[nn.RNNBase]] = nn.GRU

    def __init__(self, n_items: int, params: RNNParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)
        self.item_emb = nn.Embedding(n_items + 1, params.dim, padding_idx=0)
        self.dropout = nn.Dropout(params.dropout)
        self.rnn = self.cell(params.dim, params.hidden_size, params.num_layers, batch_first=True,
                             dropout=params.dropout if params.num_layers > 1 else 0.0)
        self.out = nn.Linear(params.hidden_size, params.dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.item_emb.weight)
        self.item_emb.weight.data[0].zero_()
        self.rnn.reset_parameters()
        self.out.reset_parameters()

    def hidden(self, items: Tensor) -> Tensor:
        h, _ = self.rnn(self.dropout(self.item_emb(items)))
        return self.out(h)

    def encode(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        """The projected state at each history's last event (projected at that position only; the
        recurrence stops at the batch's longest history)."""
        h, _ = self.rnn(self.dropout(self.item_emb(cut_padding(history, lengths))))
        return self.out(h[torch.arange(h.size(0), device=h.device), lengths - 1])

    def item_embeddings(self) -> Tensor:
        return self.item_emb.weight


class LSTM(GRU4Rec):
    """GRU4Rec's architecture with an LSTM cell."""

    name: ClassVar[str] = "lstm"
    cell: ClassVar[type[nn.RNNBase]] = nn.LSTM
