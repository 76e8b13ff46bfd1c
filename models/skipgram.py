"""Skip-gram sequence embeddings: item2vec.

**item2vec** (Barkan and Koenigstein, "Item2Vec: Neural Item Embedding for Collaborative
Filtering", 2016; Grbovic et al., "E-commerce in Your Inbox: Product Recommendations at Scale"
(prod2vec), KDD 2015): word2vec's skip-gram with negative sampling (Mikolov et al., 2013) over
users' item sequences, an item a word and a history a sentence. For each event ``x_t`` and each
context event ``x_c`` within ``window`` positions,

    max  log sigmoid(<w_{x_t}, w'_{x_c}>) + sum_{k=1..negative} log sigmoid(-<w_{x_t}, w'_{n_k}>),

negatives ``n_k`` drawn from the unigram distribution to the power 3/4, frequent items
down-sampled (``sample``). Fitted by gensim's ``Word2Vec`` (``sg=1``) in ``prepare``, not by the
trainer's gradient epochs (``fits_itself``): ``iterations`` passes over the training events.

A user's vector is the recency-weighted mean of the unit input vectors ``w_i / |w_i|`` of their
last ``max_len`` items, the ``k``-th most recent weighted ``decay^k``:

    u = sum_k decay^k w_{x_{n-k}} / |w_{x_{n-k}}| / sum_k decay^k.

The item vectors it is scored against (``item_vectors``) are by default the output (context)
vectors ``w'_j``: ``score(u, j) = <u, w'_j>`` is the skip-gram's own estimate of how likely ``j``
is in the context of the history's items, popularity included (frequent items have large
context vectors). ``item_vectors: input`` scores against the unit input vectors instead (a
weighted mean of cosines, the space of item2vec's similar-items lists): on ml-100k that ranks
rare look-alikes first and falls below most-popular (test NDCG@10 0.0158 against 0.0640 with
context vectors, 3 seeds, ``bench/README.md``).

Where it departs from the papers: sentences are users' training histories (the ETL's sequences)
rather than sessions or baskets; the window keeps the context local. Items never in a training
history (seen only in held-out events, say) keep a seeded random unit input vector, as an
untrained embedding row of the other methods does, and a seeded random context vector of a
thousandth of the trained ones' mean norm (gensim leaves it zero; a table's item needs a vector). With one worker and a fixed seed (``train.seed``) a fit
is deterministic.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from models.base import ModelParams, SequenceModel
from models.data import SequenceData, train_positions
from models.errors import DataError


class Item2VecParams(ModelParams):
    #: Context positions on each side of an event.
    window: int = Field(5, ge=1)
    #: Negative samples per positive pair.
    negative: int = Field(5, ge=1)
    #: Passes of gensim over the training events (its ``epochs``).
    iterations: int = Field(10, ge=1)
    #: Down-sampling threshold of frequent items (gensim's ``sample``; 0: none).
    sample: float = Field(1e-3, ge=0.0)
    #: Recency weight of a user's k-th most recent event in their vector: ``decay^k``.
    decay: float = Field(0.8, gt=0.0, le=1.0)
    #: gensim's worker threads: 1 keeps a fit deterministic.
    workers: int = Field(1, ge=1)
    #: The item vectors users are scored against and the item table holds: the skip-gram's output
    #: (``context``) vectors, or its unit ``input`` vectors (module docstring).
    item_vectors: Literal["context", "input"] = "context"


class Item2Vec(SequenceModel):
    """Skip-gram item vectors (gensim), users as recency-weighted means (module docstring)."""

    name: ClassVar[str] = "item2vec"
    family: ClassVar[str] = "skip-gram"
    Params: ClassVar[type[ModelParams]] = Item2VecParams
    fits_itself: ClassVar[bool] = True

    def __init__(self, n_items: int, params: Item2VecParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)
        self.register_buffer("vectors", torch.zeros(n_items + 1, params.dim))  # unit input vectors
        self.register_buffer("context", torch.zeros(n_items + 1, params.dim))  # output vectors (0: never trained)

    def prepare(self, data: SequenceData) -> None:
        """Fit the skip-gram model on every user's training events (module docstring)."""
        from gensim.models import Word2Vec

        p = self.params
        pos = train_positions(data.offsets, data.train_len)
        bounds = np.concatenate([[0], np.cumsum(data.train_len)])
        items = data.items[pos].astype(str)
        sentences = [items[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 2]
        if not sentences:
            raise DataError(f"item2vec: no user has two training events as of {data.day}: nothing to learn from")
        seed = int(torch.initial_seed() % 2**31)  # train.seed, set by the trainer
        w2v = Word2Vec(sentences, vector_size=p.dim, window=p.window, min_count=1, sg=1, negative=p.negative,
                       sample=p.sample, workers=p.workers, seed=seed, epochs=p.iterations)
        table = torch.randn(self.n_items + 1, p.dim, generator=torch.Generator().manual_seed(seed))
        keys = torch.as_tensor(np.asarray(w2v.wv.index_to_key, dtype=np.int64))
        table[keys] = torch.as_tensor(w2v.wv.vectors, dtype=torch.float32)
        table = torch.nn.functional.normalize(table, dim=1)
        table[0] = 0.0  # padding
        self.vectors.copy_(table.to(self.vectors.device))
        # Negative sampling's output layer. An item never in a training history has gensim's zero
        # row there: it gets a seeded random one of a thousandth of the trained rows' mean norm
        # (scores about 0 all the same, and a vector, as every item of a table must have).
        trained = torch.as_tensor(w2v.syn1neg, dtype=torch.float32)
        context = torch.nn.functional.normalize(torch.randn(self.n_items + 1, p.dim, generator=torch.Generator()
                                                            .manual_seed(seed + 1)), dim=1)
        context *= 1e-3 * float(trained.norm(dim=1).mean())
        context[keys] = trained
        context[0] = 0.0  # padding
        self.context.copy_(context.to(self.context.device))

    def encode(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        """The recency-weighted mean of the history's item vectors (module docstring)."""
        L = history.size(1)
        k = (lengths.unsqueeze(1) - 1 - torch.arange(L, device=history.device)).float()  # 0 at the last event
        weight = torch.where(k >= 0, self.params.decay ** k.clamp(min=0), torch.zeros_like(k))
        total = weight.sum(1, keepdim=True).clamp(min=1e-12)
        return (weight.unsqueeze(-1) * self.vectors[history]).sum(1) / total

    def item_embeddings(self) -> Tensor:
        return self.context if self.params.item_vectors == "context" else self.vectors
