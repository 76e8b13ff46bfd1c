"""The interface every method implements, and the next-item losses they share.

A method maps a user's behavior to a vector ``u`` in the space of its item vectors ``v_i``, and
ranks items by ``score(u, i) = <u, v_i>``; ``u`` is the published user embedding and ``v_i`` the
item embedding. Like RecBole's models, each method has the same few entry points, so the trainer
and the evaluator never look inside one:

- ``prepare(data)``: anything built from the training data before the first step (graphs, counts);
- ``training_examples(data)``: the rows an epoch shuffles and batches (by default right-padded
  windows of item indexes, cut by ``window_width`` and ``window_stride``, see
  ``models.data.training_windows``);
- ``loss(batch)``: the training loss of a batch of those rows;
- ``encode(history, lengths, users)``: user vectors from right-padded histories (the last
  ``max_len`` events) and the users' vocabulary indexes (graph methods read those);
- ``item_embeddings()``: the item vectors, row ``i`` for item index ``i`` (row 0 is padding);
- ``fold_in(history, lengths, users)``: user vectors for fresh activity the model was not trained
  on (``seqrep infer``; ``encode`` unless the method has per-user parameters);
- ``full_scores(history, lengths, users)``: scores of every item, ``encode(...) @ item_embeddings().T``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.nn import functional as F

from models.data import SequenceData, history_windows, training_windows, windows

LossKind = Literal["ce", "sampled", "bce"]


class ModelParams(BaseModel):
    """Hyperparameters shared by the sequence encoders (each method adds its own)."""

    model_config = ConfigDict(extra="forbid")

    #: Size of user and item vectors.
    dim: int = Field(64, ge=1)
    #: Longest history the encoder reads (older events are cut).
    max_len: int = Field(50, ge=2)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    #: ``ce``: softmax over every item; ``sampled``: softmax over the target and ``num_negatives``
    #: uniformly drawn items (large catalogues); ``bce``: one random negative per target.
    loss: LossKind = "ce"
    num_negatives: int = Field(1024, ge=1)


class SequenceModel(nn.Module):
    """Base class of the methods (see the module docstring)."""

    name: ClassVar[str]
    #: The family ``seqrep methods`` lists it under (RNN, Transformer, GNN, ...).
    family: ClassVar[str] = "other"
    Params: ClassVar[type[ModelParams]] = ModelParams
    #: Has embeddings to publish (False: a baseline that only ranks).
    learned: ClassVar[bool] = True
    #: Fitted in ``prepare`` by its own library (item2vec: gensim), not by the trainer's gradient
    #: epochs; a night's "warm start" is a full fit.
    fits_itself: ClassVar[bool] = False
    #: Reads each event's behavior besides its item (``SequenceData.event_codes``).
    uses_event_codes: ClassVar[bool] = False
    #: The view of a cross-domain pair it trains on unless told otherwise (``target``: the
    #: target's events alone; the cross-domain methods read ``mixed``, both domains').
    pair_view: ClassVar[str] = "target"

    def __init__(self, n_items: int, params: ModelParams, n_users: int = 0):
        super().__init__()
        self.n_items = n_items
        self.n_users = n_users  # size of the user vocabulary (user_idx < n_users); graph methods use it
        self.params = params

    # -- the interface ---------------------------------------------------------------------------
    @property
    def window_width(self) -> int:
        return self.params.max_len + 1  # inputs [:-1] predict targets [1:]

    @property
    def window_stride(self) -> int:
        return self.params.max_len

    def prepare(self, data: SequenceData) -> None:
        """Build what training needs from ``data`` besides the examples (nothing by default)."""

    def training_examples(self, data: SequenceData) -> Tensor:
        """Windows of every user's training events, [W, window_width] (see the module docstring)."""
        starts, ends = training_windows(data, self.window_width, self.window_stride)
        return torch.as_tensor(windows(data.items, starts, ends, self.window_width))

    def count_targets(self, examples: Tensor) -> int:
        """Predicted items in ``examples`` (for the targets/s figure)."""
        real = examples[:, 1:] if self.window_stride < self.window_width else examples
        return int((real > 0).sum())

    def histories(self, data: SequenceData, rows, history_len) -> tuple:
        """What ``encode`` reads for evaluation ``rows`` (arrays): by default the last ``max_len`` of
        each row's first ``history_len`` items, right-padded, and their lengths; a method with
        per-event features (``models.multitask``: behaviors) adds them."""
        return history_windows(data, rows, history_len, self.params.max_len)

    def hidden(self, items: Tensor) -> Tensor:
        """Hidden state [B, L, dim] at every position of right-padded ``items`` [B, L]."""
        raise NotImplementedError

    def item_embeddings(self) -> Tensor:
        raise NotImplementedError

    def encode(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        """User vectors: the hidden state at each history's last event."""
        h = self.hidden(history)
        return h[torch.arange(h.size(0), device=h.device), lengths - 1]

    def compile_encode(self) -> bool:
        """From now on, run ``encode``'s tensor work under ``torch.compile`` (inference only: batch
        encoding of many users, where compiling pays off); False where the method has no compiled
        path (the default)."""
        return False

    def item_bias(self) -> Tensor | None:
        """A per-item term added to every score (BERT4Rec's output bias), or None. ``seqrep infer``
        publishes it as one more coordinate (``u' = [u, 1]``, ``v' = [v, b]``) so ``<u', v'>`` is the score."""
        return None

    def fold_in(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        """Vectors of users whose newest events the model was not trained on. Sequence encoders
        read the history anyway, so this is ``encode``; methods with per-user parameters
        (LightGCN) derive the vector from the history instead."""
        return self.encode(history, lengths, users)

    def full_scores(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        return self.encode(history, lengths, users) @ self.item_embeddings().T

    def loss(self, windows: Tensor) -> Tensor:
        """Next-item loss at every position: ``windows[:, :-1]`` predicts ``windows[:, 1:]``."""
        inputs, targets = windows[:, :-1], windows[:, 1:]
        h = self.hidden(inputs)
        keep = targets > 0
        return next_item_loss(h[keep], targets[keep], self.item_embeddings(), self.params)

    def extra_repr(self) -> str:
        return f"n_items={self.n_items}, dim={self.params.dim}, max_len={self.params.max_len}, loss={self.params.loss}"


def cached_csr(module: nn.Module, name: str, index: Tensor, values: Tensor, shape: tuple[int, int],
               transpose: bool = False) -> Tensor:
    """The sparse CSR matrix of the COO buffers ``index`` [2, E] (rows, columns; swapped when
    ``transpose``) and ``values`` [E], built once and kept on ``module`` until the buffers change (a
    new tensor, or a move to another device): a COO matrix would be converted on every sparse matmul."""
    key = (index.data_ptr(), index.shape, index.device)
    cached = getattr(module, f"_{name}_csr", None)
    if cached is None or cached[0] != key:
        coo = torch.sparse_coo_tensor(index.flip(0) if transpose else index, values, shape, check_invariants=False)
        cached = (key, coo.coalesce().to_sparse_csr())
        object.__setattr__(module, f"_{name}_csr", cached)  # not a parameter or buffer: no state_dict entry
    return cached[1]


def cut_padding(history: Tensor, lengths: Tensor) -> Tensor:
    """Right-padded ``history`` [B, L] without the columns past its longest row: for encoders
    where a position never reads later ones (causal attention, a recurrence), the same states at
    every real position; ``encode_users`` batches users by length so the cut is large."""
    return history[:, :max(1, int(lengths.max()))].contiguous()


def next_item_loss(h: Tensor, targets: Tensor, items: Tensor, params: ModelParams, bias: Tensor | None = None) -> Tensor:
    """Loss of hidden states ``h`` [M, d] against ``targets`` [M], item vectors ``items`` [N + 1, d]
    (plus an optional per-item ``bias`` [N + 1] on the logits).

    ``ce``: -log softmax over items 1..N. ``sampled``: the same over the target and K shared
    uniform negatives (a negative equal to the target is masked). ``bce``: -log s(<h, v_t>)
    - log(1 - s(<h, v_j>)) with one uniform negative j per target.
    """
    if params.loss == "ce":
        logits = h @ items.T
        if bias is not None:
            logits = logits + bias
        logits[:, 0] = -math.inf
        return F.cross_entropy(logits.float(), targets)
    n = items.size(0) - 1
    b = bias if bias is not None else torch.zeros(items.size(0), device=h.device, dtype=h.dtype)
    pos = (h * items[targets]).sum(-1, keepdim=True) + b[targets].unsqueeze(1)
    if params.loss == "sampled":
        neg = torch.randint(1, n + 1, (params.num_negatives,), device=h.device)
        neg_logits = h @ items[neg].T + b[neg]
        neg_logits = neg_logits.masked_fill(neg.unsqueeze(0) == targets.unsqueeze(1), -math.inf)
        logits = torch.cat([pos, neg_logits], 1).float()
        return F.cross_entropy(logits, torch.zeros_like(targets))
    neg = torch.randint(1, n + 1, targets.shape, device=h.device)
    neg_logit = (h * items[neg]).sum(-1) + b[neg]
    return (F.binary_cross_entropy_with_logits(pos.squeeze(1).float(), torch.ones_like(pos.squeeze(1).float()))
            + F.binary_cross_entropy_with_logits(neg_logit.float(), torch.zeros_like(neg_logit.float())))
