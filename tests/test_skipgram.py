"""item2vec (``models/skipgram.py``): a deterministic gensim fit, what it learns, the user vector."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import torch

from models.data import SequenceData, Split
from models.evaluate import evaluate
from models.registry import FAMILIES, METHODS, build, method_config
from models.skipgram import Item2Vec
from models.trainer import train


def clusters(n_users: int = 60, seed: int = 0, n_items: int = 20) -> SequenceData:
    """Half the users browse items 1-10 only, half items 11-20 only, in random order (items
    beyond 20 in the catalogue, never browsed)."""
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, 11, 12) + (10 if u % 2 else 0) for u in range(n_users)]
    lengths = np.array([len(s) for s in seqs])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = np.concatenate(seqs).astype(np.int64)
    rows = np.arange(n_users)
    splits = {"valid": Split(rows, lengths - 2, items[offsets[:-1] + lengths - 2][:, None]),
              "test": Split(rows, lengths - 1, items[offsets[:-1] + lengths - 1][:, None])}
    return SequenceData(date(2024, 1, 1), "loo", n_items, np.arange(1, n_users + 1), offsets, items, lengths - 2, splits)


def _fit(tmp_path, data, seed=1, **model):
    mc = method_config("item2vec", {"model": {"dim": 16, **model}, "train": {"seed": seed}})
    m = build(mc, data.n_items)
    result = train(m, data, mc, tmp_path / f"m{seed}", echo=lambda _: None, progress=False)
    return m, result


def test_registered_and_fitted_by_gensim_not_by_epochs(tmp_path):
    assert METHODS["item2vec"] is Item2Vec and FAMILIES["item2vec"] == "skip-gram"
    m, result = _fit(tmp_path, clusters())
    assert result.epochs == 0, "no gradient epochs: gensim fits it in prepare"
    assert (tmp_path / "m1" / "model.safetensors").is_file()
    norms = m.vectors[1:].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))  # unit input vectors: <v_i, v_j> is their cosine
    assert not m.vectors[0].any() and not m.item_embeddings()[0].any()  # padding
    # Scored against gensim's output vectors by default; `item_vectors: input` against the input ones.
    assert m.item_embeddings() is m.context and (m.context[1:].norm(dim=1) > 0).all()
    # An item in no training history: a vector all the same (the embeddings gate wants one), of a negligible norm.
    m21, _ = _fit(tmp_path / "21", clusters(n_items=21))
    norms = m21.item_embeddings().norm(dim=1)
    assert 0 < norms[21] < 0.01 * norms[1:21].mean() and norms[0] == 0
    assert _fit(tmp_path / "input", clusters(), item_vectors="input")[0].item_embeddings().norm(dim=1)[1:].allclose(
        torch.ones(20))


def test_one_worker_and_a_seed_give_the_same_vectors(tmp_path):
    data = clusters()
    a, _ = _fit(tmp_path / "a", data, seed=3)
    b, _ = _fit(tmp_path / "b", data, seed=3)
    c, _ = _fit(tmp_path / "c", data, seed=4)
    assert torch.equal(a.vectors, b.vectors)
    assert not torch.equal(a.vectors, c.vectors)


def test_items_browsed_together_are_near_and_rank_first(tmp_path):
    data = clusters()
    m, _ = _fit(tmp_path, data, iterations=30, sample=0.0)  # 20 items: the default down-sampling would drop most events
    v = m.vectors[1:]
    cos = v @ v.T
    same = torch.block_diag(torch.ones(10, 10), torch.ones(10, 10)).bool() & ~torch.eye(20, dtype=torch.bool)
    assert cos[same].mean() > cos[~same & ~torch.eye(20, dtype=torch.bool)].mean() + 0.3
    # Every user's top 10 is their own cluster: HR@10 of a held-out item from it is 1 without seen-masking.
    assert evaluate(m, data, "test", mask_seen=False).mean()[("hr", 10)] == pytest.approx(1.0)


def test_the_user_vector_is_the_recency_weighted_mean_padding_ignored():
    m = build(method_config("item2vec", {"model": {"dim": 4, "decay": 0.5}}), 5)
    with torch.no_grad():
        m.vectors[1:] = torch.eye(5, 4)[:5] + torch.arange(5).unsqueeze(1)
    v = m.vectors
    u = m.encode(torch.tensor([[1, 2, 3, 0]]), torch.tensor([3]))[0]
    torch.testing.assert_close(u, (0.25 * v[1] + 0.5 * v[2] + 1.0 * v[3]) / 1.75)
    torch.testing.assert_close(m.encode(torch.tensor([[1, 2, 3]]), torch.tensor([3]))[0], u)
