"""Multimodal items: SASRec whose item vectors fuse ID embeddings with item text features.

Each item ``i`` has an ID embedding ``e_i`` (learned, as in SASRec) and a fixed text vector
``t_i`` (``models.text``: TF-IDF + truncated SVD of its title, category, tags and text, unit
norm; zero with ``m_i = 0`` when the item has no text). A learned projection ``P`` brings the
text into the model's space, and a per-dimension gate mixes the two:

    p_i = P t_i
    g_i = sigmoid(W_g [e_i ; p_i] + b_g)        (g_i = 1 when m_i = 0: such an item is its ID)
    v_i = g_i * e_i + (1 - g_i) * p_i           (``fusion: gate``, the default)
    v_i = W_c [e_i ; p_i]                       (``fusion: concat``; v_i = e_i when m_i = 0)

``v_i`` replaces ``e_i`` everywhere SASRec uses an item: as the input embedding of the sequence
(``sqrt(d) v_x + P_pos``) and as the output item vector, ``score(u, i) = <u, v_i>``. An item
seen in a few training events still gets a useful ``v_i`` through ``P t_i``, which is trained by
every item that shares its words: that is where text is expected to help (the long tail).

The gated sum follows the gated multimodal unit (Arevalo et al., "Gated Multimodal Units for
Information Fusion", ICLR workshop 2017, https://arxiv.org/abs/1702.01992) applied to
ID + text item representations as in sequential recommenders with side information (e.g.
Zhang et al., "Feature-level Deeper Self-Attention Network for Sequential Recommendation",
IJCAI 2019, which concatenates and projects, our ``concat`` option). SASRec: Kang and McAuley,
ICDM 2018 (``models/transformer.py``).

The text features are computed in ``prepare(data)`` from the items' documents (``data.side``:
the warehouse's ``vocab/items`` as of the day joined to ``items/source=*``) and kept as buffers,
so a saved model carries them and scores without the warehouse.

A caution on Last.fm: its item metadata (tags) is built by the ingest from all tag events,
including the events held out for evaluation, so the tags of a rarely tagged artist partly name the
held-out user's own tags. ``text_fields: [title]`` (artist names only) is the leak-free check.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from models.base import ModelParams
from models.data import SequenceData
from models.text import TEXT_FIELDS, TextField, item_text_features
from models.transformer import SASRec, TransformerParams


class TextSASRecParams(TransformerParams):
    #: Size of the text vectors t_i (SVD components; fewer terms than this leave zero columns).
    text_dim: int = Field(64, ge=1)
    #: Metadata fields joined into an item's document, in this order.
    text_fields: list[TextField] = Field(default_factory=lambda: list(TEXT_FIELDS), min_length=1)
    #: A term must occur in at least this many items' documents to be kept.
    text_min_df: int = Field(2, ge=1)
    #: ``gate``: v = g * e + (1 - g) * P t; ``concat``: v = W [e ; P t].
    fusion: Literal["gate", "concat"] = "gate"
    #: Seed of the randomized SVD (the features do not depend on ``train.seed``).
    text_seed: int = 0


class TextFusedEmbedding(nn.Embedding):
    """An item embedding table whose lookups return the fused vectors ``v_i`` (module docstring).

    ``weight`` is the ID table ``e`` (so SASRec's initialisation applies to it); ``text`` [V, k]
    and ``has_text`` [V] are buffers filled by ``set_text``.
    """

    def __init__(self, num_embeddings: int, dim: int, text_dim: int, fusion: Literal["gate", "concat"] = "gate"):
        super().__init__(num_embeddings, dim, padding_idx=0)
        self.fusion = fusion
        self.proj = nn.Linear(text_dim, dim, bias=False)
        # gate: W_g [e; p] + b_g -> g; concat: W_c [e; p] -> v.
        self.mix = nn.Linear(2 * dim, dim, bias=fusion == "gate")
        self.register_buffer("text", torch.zeros(num_embeddings, text_dim))
        self.register_buffer("has_text", torch.zeros(num_embeddings, dtype=torch.bool))
        # t_i has unit norm, so (P t_i)_j has std 0.02 like the ID embeddings: neither side dominates at first.
        nn.init.normal_(self.proj.weight, std=0.02)
        if fusion == "concat":
            with torch.no_grad():  # start at v = e + p
                self.mix.weight.copy_(torch.cat([torch.eye(dim), torch.eye(dim)], 1))

    def set_text(self, features: np.ndarray | Tensor, has_text: np.ndarray | Tensor) -> None:
        """Store text features [V, k] (row = item index; row 0 must be zeros) and their mask [V]."""
        features = torch.as_tensor(features, dtype=torch.float32)
        has_text = torch.as_tensor(has_text, dtype=torch.bool)
        if tuple(features.shape) != tuple(self.text.shape) or tuple(has_text.shape) != tuple(self.has_text.shape):
            raise ValueError(f"text features of shape {tuple(features.shape)} / mask {tuple(has_text.shape)}; "
                             f"this model expects {tuple(self.text.shape)} / {tuple(self.has_text.shape)}")
        if bool(features[0].any()) or bool(has_text[0]):
            raise ValueError("row 0 is padding: its text features must be zeros")
        self.text.copy_(features)
        self.has_text.copy_(has_text)

    def fuse(self, e: Tensor, t: Tensor, has: Tensor) -> Tensor:
        """Fused vectors of ID embeddings ``e`` [..., d], text ``t`` [..., k], mask ``has`` [...]."""
        p = self.proj(t)
        z = torch.cat([e, p], -1)
        has = has.unsqueeze(-1)
        if self.fusion == "gate":
            g = torch.where(has, torch.sigmoid(self.mix(z)), torch.ones_like(e))
            return g * e + (1 - g) * p
        return torch.where(has, self.mix(z), e)

    def gate(self, items: Tensor | None = None) -> Tensor:
        """The gate g [..., d] of ``items`` (all rows when None); 1 for items without text."""
        if self.fusion != "gate":
            raise ValueError("the gate exists only with fusion: gate")
        e, t, has = (self.weight, self.text, self.has_text) if items is None else \
            (self.weight[items], self.text[items], self.has_text[items])
        g = torch.sigmoid(self.mix(torch.cat([e, self.proj(t)], -1)))
        return torch.where(has.unsqueeze(-1), g, torch.ones_like(g))

    def fused_weight(self) -> Tensor:
        """Every row's fused vector [V, d]; row 0 (padding: e_0 = 0, no text) is zeros."""
        return self.fuse(self.weight, self.text, self.has_text)

    def forward(self, items: Tensor) -> Tensor:
        return self.fuse(super().forward(items), self.text[items], self.has_text[items])


class TextSASRec(SASRec):
    """SASRec over fused ID + text item vectors (see the module docstring)."""

    name: ClassVar[str] = "sasrec_text"
    family: ClassVar[str] = "multimodal"
    Params: ClassVar[type[ModelParams]] = TextSASRecParams

    def __init__(self, n_items: int, params: TextSASRecParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)
        # SASRec reads item vectors through item_emb(items) (inputs) and item_embeddings() (outputs):
        # a fused table in its place changes both, and nothing else of SASRec.
        self.item_emb = TextFusedEmbedding(self.vocab_size, params.dim, params.text_dim, params.fusion)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def prepare(self, data: SequenceData) -> None:
        """Text features of the items as of ``data.day`` (``models.text``, documents from ``data.side``)."""
        p: TextSASRecParams = self.params  # type: ignore[assignment]
        features, has_text = item_text_features(data.side, self.n_items, p.text_dim,
                                                fields=p.text_fields, min_df=p.text_min_df, random_state=p.text_seed)
        self.item_emb.set_text(features, has_text)

    def item_embeddings(self) -> Tensor:
        return self.item_emb.fused_weight()[: self.n_items + 1]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", fusion={self.params.fusion}, text_dim={self.params.text_dim}"
