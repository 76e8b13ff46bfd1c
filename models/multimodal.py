"""Multimodal items: SASRec whose item vectors fuse ID embeddings with the items' content.

Each item ``i`` has an ID embedding ``e_i`` (learned, as in SASRec) and a fixed content vector
``x_{m,i}`` per modality ``m`` of ``modalities``:

- ``text``: ``models.text`` (TF-IDF + truncated SVD of its title, category, tags and text);
- any other name: a vector column of the items table (``ingest.item_vectors``: the product's own
  image or video encoder's output, ``SideData.item_vectors``), of ``vector_dims[m]`` numbers.

Content vectors are scaled to unit norm (an encoder's scale says nothing the model can use, and
unit norm keeps every modality's projection at the ID embeddings' scale at first). An item without
a modality (no text, a null vector) has ``h_{m,i} = 0`` and that modality drops out of its fusion.
A learned projection per modality brings its content into the model's space, and a per-dimension
gate over the ID and the modalities the item has mixes them:

    p_{m,i} = P_m x_{m,i}                                          P_m: [d, k_m]
    s_{m,i} = W_m [e_i ; p_{m,i}] + b_m                            the ID's score against m
    g_i     = softmax_j(a_{j,i}),  a_0 = 0,  a_m = -s_{m,i} (or -inf where h_{m,i} = 0)
    v_i     = g_{0,i} * e_i + sum_m g_{m,i} * p_{m,i}              (``fusion: gate``, the default)
    v_i     = W_c [e_i ; h_1 p_{1,i} ; ... ; h_M p_{M,i}]          (``fusion: concat``; e_i without content)

(softmax, products and sums per dimension). With one modality the gate is ``g_0 = sigmoid(s)``,
``v = g e + (1 - g) p``: ``sasrec_text`` with its defaults (``modalities: [text]``) is the model it
was before vector columns existed, with the same parameter names and version.

``v_i`` replaces ``e_i`` everywhere SASRec uses an item: as the input embedding of the sequence
(``sqrt(d) v_x + P_pos``) and as the output item vector, ``score(u, i) = <u, v_i>``. An item seen
in a few training events, or none, still gets a useful ``v_i`` through ``P_m x_{m,i}``, which is
trained by every item whose content is near its own: that is where content is expected to help
(the long tail and new items).

References. The gate is the gated multimodal unit (Arevalo et al., "Gated Multimodal Units for
Information Fusion", ICLR workshop 2017, https://arxiv.org/abs/1702.01992), applied to ID and
content item representations as sequential recommenders with side information do (Zhang et al.,
"Feature-level Deeper Self-Attention Network for Sequential Recommendation", IJCAI 2019, which
concatenates and projects: our ``concat``). One learned branch per modality, combined into the
item's representation, follows multimodal recommenders such as MMGCN (Wei et al., "MMGCN:
Multi-modal Graph Convolution Network for Personalized Recommendation of Micro-video", ACM MM
2019), here without its per-modality user-item graphs. SASRec: Kang and McAuley, ICDM 2018
(``models/transformer.py``).

Where it departs from the GMU paper: the projections are linear, without GMU's ``tanh`` (item
vectors live in a dot-product space, unbounded like the ID embeddings); GMU's gate reads every
modality at once, each gate logit here reads the ID and its own modality only, so a missing
modality is simply left out of the softmax and adding one adds parameters linearly; the ID's
logit is fixed at 0 (the softmax is unchanged by a common shift). Unlike MMGCN, content enters
the item vectors of a sequential model, not a graph.

The content vectors are read in ``prepare(data)`` (``data.side``: the warehouse's ``vocab/items``
as of the day joined to ``items/source=*``) and kept as buffers, so a saved model carries them
and scores without the warehouse.

A caution on Last.fm: its item metadata (tags) is built by the ingest from all tag events,
including the events held out for evaluation, so the tags of a rarely tagged artist partly name the
held-out user's own tags. ``text_fields: [title]`` (artist names only) is the leak-free check.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from models.base import ModelParams
from models.data import SequenceData, SideData
from models.errors import DataError
from models.text import TEXT_FIELDS, TextField, item_text_features
from models.transformer import SASRec, TransformerParams

#: The modality of the items' text (``models.text``); any other is a vector column.
TEXT = "text"


class TextSASRecParams(TransformerParams):
    #: Content fused into the item vectors: ``text`` and/or vector columns of the items table
    #: (``ingest.item_vectors``), e.g. ``[text, image_vec]``.
    modalities: list[str] = Field(default_factory=lambda: [TEXT], min_length=1)
    #: Size of each vector column of ``modalities`` (as the ingest manifest's ``item_vectors`` says).
    vector_dims: dict[str, int] = Field(default_factory=dict)
    #: Size of the text vectors t_i (SVD components; fewer terms than this leave zero columns).
    text_dim: int = Field(64, ge=1)
    #: Metadata fields joined into an item's document, in this order.
    text_fields: list[TextField] = Field(default_factory=lambda: list(TEXT_FIELDS), min_length=1)
    #: A term must occur in at least this many items' documents to be kept.
    text_min_df: int = Field(2, ge=1)
    #: ``gate``: a softmax gate over the ID and each modality; ``concat``: v = W [e ; P_1 x_1 ; ...].
    fusion: Literal["gate", "concat"] = "gate"
    #: Seed of the randomized SVD (the features do not depend on ``train.seed``).
    text_seed: int = 0

    @model_validator(mode="after")
    def _modalities(self) -> "TextSASRecParams":
        names = self.modalities
        if len(set(names)) != len(names) or not all(re.fullmatch(r"[a-z_][a-z0-9_]{0,63}", m) for m in names):
            raise ValueError(f"modalities must be distinct names of lower-case letters, digits and _: {names}")
        vectors = [m for m in names if m != TEXT]
        if set(self.vector_dims) != set(vectors) or any(k < 1 for k in self.vector_dims.values()):
            raise ValueError(f"vector_dims must give the size (>= 1) of each vector modality {vectors} and of no "
                             f"other: got {self.vector_dims} (the ingest manifest's item_vectors has the sizes)")
        return self

    def content_sizes(self) -> dict[str, int]:
        """Each modality's content size k_m, in ``modalities`` order."""
        return {m: self.text_dim if m == TEXT else self.vector_dims[m] for m in self.modalities}


def _attr(kind: Literal["proj", "mix", "x", "has"], modality: str) -> str:
    """The attribute of a modality's projection, gate, content buffer or mask. The text
    modality keeps the names ``sasrec_text`` had before vector columns (``proj``, ``mix``,
    ``text``, ``has_text``), so its saved models still load and warm-start."""
    if modality == TEXT:
        return {"proj": "proj", "mix": "mix", "x": "text", "has": "has_text"}[kind]
    return f"{kind}_{modality}"


class FusedItemEmbedding(nn.Embedding):
    """An item embedding table whose lookups return the fused vectors ``v_i`` (module docstring).

    ``weight`` is the ID table ``e`` (so SASRec's initialisation applies to it); each modality's
    content [V, k_m] and mask [V] are buffers filled by ``set_content``.
    """

    def __init__(self, num_embeddings: int, dim: int, sizes: dict[str, int],
                 fusion: Literal["gate", "concat"] = "gate"):
        super().__init__(num_embeddings, dim, padding_idx=0)
        self.fusion = fusion
        self.modalities = tuple(sizes)
        for m, k in sizes.items():
            setattr(self, _attr("proj", m), nn.Linear(k, dim, bias=False))
            if fusion == "gate":  # W_m [e; p_m] + b_m -> s_m
                setattr(self, _attr("mix", m), nn.Linear(2 * dim, dim))
            self.register_buffer(_attr("x", m), torch.zeros(num_embeddings, k))
            self.register_buffer(_attr("has", m), torch.zeros(num_embeddings, dtype=torch.bool))
        if fusion == "concat":  # W_c [e; p_1; ...; p_M] -> v
            self.mix = nn.Linear((1 + len(sizes)) * dim, dim, bias=False)
        for m in self.modalities:
            # x has unit norm, so (P x)_j has std 0.02 like the ID embeddings: neither side dominates at first.
            nn.init.normal_(self._proj(m).weight, std=0.02)
        if fusion == "concat":
            with torch.no_grad():  # start at v = e + sum_m p_m
                self.mix.weight.copy_(torch.cat([torch.eye(dim)] * (1 + len(sizes)), 1))

    def _proj(self, m: str) -> nn.Linear:
        return getattr(self, _attr("proj", m))

    def content(self, m: str) -> tuple[Tensor, Tensor]:
        """Modality ``m``'s content [V, k_m] and mask [V]."""
        return getattr(self, _attr("x", m)), getattr(self, _attr("has", m))

    def set_content(self, m: str, features: np.ndarray | Tensor, has: np.ndarray | Tensor) -> None:
        """Store modality ``m``'s content [V, k_m] (row = item index; row 0 must be zeros) and its mask [V]."""
        x, mask = self.content(m)
        features = torch.as_tensor(features, dtype=torch.float32)
        has = torch.as_tensor(has, dtype=torch.bool)
        if tuple(features.shape) != tuple(x.shape) or tuple(has.shape) != tuple(mask.shape):
            raise ValueError(f"{m} features of shape {tuple(features.shape)} / mask {tuple(has.shape)}; "
                             f"this model expects {tuple(x.shape)} / {tuple(mask.shape)}")
        if bool(features[0].any()) or bool(has[0]):
            raise ValueError(f"row 0 is padding: its {m} features must be zeros")
        x.copy_(features)
        mask.copy_(has)

    def _parts(self, items: Tensor | None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """ID embeddings, projected content p_m and masks h_m of ``items`` (every row when None)."""
        pick = (lambda t: t) if items is None else (lambda t: t[items])  # noqa: E731
        e = self.weight if items is None else super().forward(items)
        xs, hs = zip(*(self.content(m) for m in self.modalities))
        return e, [self._proj(m)(pick(x)) for m, x in zip(self.modalities, xs)], [pick(h) for h in hs]

    def _weights(self, e: Tensor, ps: list[Tensor], hs: list[Tensor]) -> Tensor:
        """The gate g [..., 1 + M, d] (module docstring): the ID first, then each modality."""
        logits = [torch.zeros_like(e)]
        for m, p, h in zip(self.modalities, ps, hs):
            s = getattr(self, _attr("mix", m))(torch.cat([e, p], -1))
            logits.append(torch.where(h.unsqueeze(-1), -s, torch.full_like(s, float("-inf"))))
        return torch.softmax(torch.stack(logits, -2), -2)

    def _fuse(self, e: Tensor, ps: list[Tensor], hs: list[Tensor]) -> Tensor:
        if self.fusion == "gate":
            g = self._weights(e, ps, hs)
            return g[..., 0, :] * e + sum(g[..., j + 1, :] * p for j, p in enumerate(ps))
        any_content = torch.stack(hs, -1).any(-1, keepdim=True)
        z = torch.cat([e, *[p * h.unsqueeze(-1) for p, h in zip(ps, hs)]], -1)
        return torch.where(any_content, self.mix(z), e)

    def gates(self, items: Tensor | None = None) -> Tensor:
        """The gate [..., 1 + M, d] of ``items`` (all rows when None): the ID's share first, then
        each modality's in ``modalities`` order (0 where the item lacks it)."""
        if self.fusion != "gate":
            raise ValueError("the gate exists only with fusion: gate")
        return self._weights(*self._parts(items))

    def gate(self, items: Tensor | None = None) -> Tensor:
        """The ID's share g_0 [..., d] of ``items``; 1 for items without content."""
        return self.gates(items)[..., 0, :]

    def fused_weight(self) -> Tensor:
        """Every row's fused vector [V, d]; row 0 (padding: e_0 = 0, no content) is zeros."""
        return self._fuse(*self._parts(None))

    def forward(self, items: Tensor) -> Tensor:
        return self._fuse(*self._parts(items))


def item_vector_features(side: SideData | None, n_items: int, column: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The vector column ``column`` of items 0..n_items (``SideData.item_vectors``), rows scaled
    to unit norm, and its mask (a zero vector counts as none): ``[n_items + 1, dim]``, ``[n_items + 1]``."""
    if side is None:
        raise DataError("item vectors come from the warehouse (vocab/items and items/source=*); this data has no "
                        "warehouse side: load it with pipelines.modeling.data.load")
    x, has = side.item_vectors(n_items, column)
    if not has.any():
        raise DataError(f"no item of the vocabulary has a {column!r} vector: nothing to fuse")
    if x.shape[1] != dim:
        raise DataError(f"item vector {column!r} has {x.shape[1]} numbers per item in the warehouse, but "
                        f"model.vector_dims.{column} is {dim}: set it to {x.shape[1]}")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    has = has & (norm[:, 0] > 0)
    x = np.divide(x, norm, out=np.zeros_like(x), where=has[:, None]).astype(np.float32)
    return x, has


def item_content(side: SideData | None, n_items: int,
                 params: TextSASRecParams) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each modality's content and mask for items 0..n_items, as of the data's day."""
    sizes = params.content_sizes()
    return {m: item_text_features(side, n_items, params.text_dim, fields=params.text_fields,
                                  min_df=params.text_min_df, random_state=params.text_seed) if m == TEXT
            else item_vector_features(side, n_items, m, sizes[m]) for m in params.modalities}


class TextSASRec(SASRec):
    """SASRec over item vectors fused from ID embeddings, text and the items' vector columns."""

    name: ClassVar[str] = "sasrec_text"
    family: ClassVar[str] = "multimodal"
    Params: ClassVar[type[ModelParams]] = TextSASRecParams

    def __init__(self, n_items: int, params: TextSASRecParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)
        # SASRec reads item vectors through item_emb(items) (inputs) and item_embeddings() (outputs):
        # a fused table in its place changes both, and nothing else of SASRec.
        self.item_emb = FusedItemEmbedding(self.vocab_size, params.dim, params.content_sizes(), params.fusion)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def prepare(self, data: SequenceData) -> None:
        """Content of the items as of ``data.day`` (``data.side``): text features, vector columns."""
        p: TextSASRecParams = self.params  # type: ignore[assignment]
        for m, (x, has) in item_content(data.side, self.n_items, p).items():
            self.item_emb.set_content(m, x, has)

    def item_embeddings(self) -> Tensor:
        return self.item_emb.fused_weight()[: self.n_items + 1]

    def extra_repr(self) -> str:
        p = self.params
        return super().extra_repr() + f", fusion={p.fusion}, modalities={p.content_sizes()}"
