"""Self-attention encoders: SASRec (causal) and BERT4Rec (bidirectional, masked items).

SASRec (Kang and McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018,
https://arxiv.org/abs/1808.09781):

    H^0 = dropout(sqrt(d) E[x] + P),   H^l = TransformerLayer_causal(H^{l-1}),
    u_t = LayerNorm(H^L_t),   score(t, i) = <u_t, E[i]>

position t attends to positions <= t only, so every position predicts the next item in one pass.

BERT4Rec (Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer", CIKM 2019, https://arxiv.org/abs/1904.06690): the same stack
without the causal mask; training replaces a share ``mask_prob`` of a window's items with a
[mask] token and predicts them from both sides,

    u_t = LayerNorm(GELU(W H^L_t)),   loss = - sum_{t masked} log softmax_i(<u_t, E[i]> + b_i)[x_t]

A user is encoded by appending [mask] after their history and reading its output. Both use
``torch.nn.TransformerEncoder`` (pre-norm layers, GELU).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from models.base import ModelParams, SequenceModel, cut_padding, next_item_loss


class TransformerParams(ModelParams):
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    #: Width of each layer's feed-forward block, as a multiple of ``dim``.
    ff_mult: int = Field(4, ge=1)


class SASRec(SequenceModel):
    """SASRec: causal self-attention over the item sequence (see the module docstring)."""

    name: ClassVar[str] = "sasrec"
    family: ClassVar[str] = "Transformer"
    Params: ClassVar[type[ModelParams]] = TransformerParams
    causal: ClassVar[bool] = True

    def __init__(self, n_items: int, params: TransformerParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)
        d = params.dim
        self.item_emb = nn.Embedding(self.vocab_size, d, padding_idx=0)
        self.pos_emb = nn.Embedding(params.max_len, d)
        self.dropout = nn.Dropout(params.dropout)
        layer = nn.TransformerEncoderLayer(d, params.num_heads, d * params.ff_mult, params.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, params.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.reset_parameters()

    @property
    def vocab_size(self) -> int:
        return self.n_items + 1

    def reset_parameters(self) -> None:
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)
        self.item_emb.weight.data[0].zero_()

    def _inputs(self, items: Tensor) -> Tensor:
        L = items.size(1)
        return self.dropout(self.item_emb(items) * math.sqrt(self.params.dim) + self.pos_emb.weight[:L])

    def _encode_stack(self, items: Tensor) -> Tensor:
        L = items.size(1)
        x = self._inputs(items)
        if self.causal:
            # Right padding: a real position never sees a pad, so no key-padding mask is needed.
            mask = nn.Transformer.generate_square_subsequent_mask(L, device=items.device, dtype=x.dtype)
            return self.norm(self.encoder(x, mask=mask, is_causal=True))
        return self.norm(self.encoder(x, src_key_padding_mask=items == 0))

    def hidden(self, items: Tensor) -> Tensor:
        return self._encode_stack(items)

    def encode(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        """The state at each history's last event. Outside training, the last layer runs for that
        one query only (keys and values still cover the history): the same vector as
        ``hidden(history)[b, lengths[b] - 1]`` for about ``(n - 1) / n`` of the FLOPs of n layers, and
        over the batch's longest history only."""
        last = self.encoder.layers[-1]
        if self.training or not self.causal or not last.norm_first or self.encoder.norm is not None:
            return super().encode(history, lengths, users)
        return self._last_state(cut_padding(history, lengths), lengths)

    def _last_state(self, history: Tensor, lengths: Tensor) -> Tensor:
        B, L = history.shape
        x = self._inputs(history)
        mask = nn.Transformer.generate_square_subsequent_mask(L, device=history.device, dtype=x.dtype)
        for layer in self.encoder.layers[:-1]:
            if torch.compiler.is_compiling():
                # The layer's own ops (its training path): compiled, they fuse better than the
                # fused inference kernel that ``layer(x)`` runs (bench/infer.py: compiled vs eager).
                x = x + layer._sa_block(layer.norm1(x), mask, None, is_causal=True)
                x = x + layer._ff_block(layer.norm2(x))
            else:
                x = layer(x, src_mask=mask, is_causal=True)
        last = self.encoder.layers[-1]
        rows, at = torch.arange(B, device=history.device), lengths - 1
        kv = last.norm1(x)
        later = torch.arange(L, device=history.device).unsqueeze(0) > at.unsqueeze(1)  # causal, for one query
        attn = last.self_attn(kv[rows, at].unsqueeze(1), kv, kv, key_padding_mask=later, need_weights=False)[0]
        y = x[rows, at] + last.dropout1(attn.squeeze(1))
        y = y + last._ff_block(last.norm2(y))
        return self.norm(y)

    def compile_encode(self) -> bool:
        if type(self).encode is not SASRec.encode:  # BERT4Rec and MMoE encode their own way
            return False
        import torch._dynamo.config
        import torch._inductor.config

        compiled = torch.compile(self._last_state, dynamic=True)

        def last_state(history: Tensor, lengths: Tensor) -> Tensor:
            # Freezing (weights as constants) lets inductor pack them for oneDNN and fuse bias and
            # GELU into the matmuls; it is read while compiling, which happens on a call (the
            # first, and any recompile). A failed compile runs eager, with a warning.
            with torch._inductor.config.patch(freezing=True), torch._dynamo.config.patch(suppress_errors=True):
                return compiled(history, lengths)

        self._last_state = last_state
        return True

    def item_embeddings(self) -> Tensor:
        return self.item_emb.weight[: self.n_items + 1]


class BERT4RecParams(TransformerParams):
    #: Share of a training window's items replaced by [mask] (at least one per window).
    mask_prob: float = Field(0.2, gt=0.0, lt=1.0)


class BERT4Rec(SASRec):
    """BERT4Rec: bidirectional self-attention trained on masked items (see the module docstring)."""

    name: ClassVar[str] = "bert4rec"
    Params: ClassVar[type[ModelParams]] = BERT4RecParams
    causal: ClassVar[bool] = False

    def __init__(self, n_items: int, params: BERT4RecParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)
        d = params.dim
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
        self.out_bias = nn.Parameter(torch.zeros(n_items + 1))

    @property
    def vocab_size(self) -> int:
        return self.n_items + 2  # the last row is [mask]

    @property
    def mask_token(self) -> int:
        return self.n_items + 1

    @property
    def window_width(self) -> int:
        return self.params.max_len

    @property
    def window_stride(self) -> int:
        return self.params.max_len

    def hidden(self, items: Tensor) -> Tensor:
        return self.head(self._encode_stack(items))

    def encode(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        """The output at a [mask] put after the history (its first event drops out when full)."""
        B, L = history.shape
        full = lengths >= L
        shifted = torch.where(full.unsqueeze(1), torch.roll(history, -1, 1), history)
        pos = torch.where(full, torch.full_like(lengths, L - 1), lengths)
        rows = torch.arange(B, device=history.device)
        after = torch.arange(L, device=history.device).unsqueeze(0) > pos.unsqueeze(1)
        x = shifted.masked_fill(after, 0)  # bidirectional: nothing past the history may be read
        x[rows, pos] = self.mask_token
        return self.hidden(x)[rows, pos]

    def item_bias(self) -> Tensor:
        return self.out_bias

    def full_scores(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        return self.encode(history, lengths) @ self.item_embeddings().T + self.out_bias

    def loss(self, windows: Tensor) -> Tensor:
        real = windows > 0
        masked = (torch.rand(windows.shape, device=windows.device) < self.params.mask_prob) & real
        # At least one masked item per window: its last real one (the position inference asks about).
        last = real.sum(1) - 1
        rows = torch.arange(windows.size(0), device=windows.device)
        none = ~masked.any(1)
        masked[rows[none], last[none]] = True
        x = windows.masked_fill(masked, self.mask_token)
        h = self.hidden(x)
        return next_item_loss(h[masked], windows[masked], self.item_embeddings(), self.params, bias=self.out_bias)
