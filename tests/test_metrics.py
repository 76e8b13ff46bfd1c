"""Full-ranking metrics on hand-computed cases: ties, masked items, masked targets, several targets."""

from __future__ import annotations

import math

import pytest
import torch

from models.metrics import mask_scores, metrics_from_ranks, target_ranks


def _ranks(scores, targets, mask=()):
    s = torch.tensor(scores, dtype=torch.float)
    rows = torch.tensor([r for r, _ in mask], dtype=torch.long)
    cols = torch.tensor([c for _, c in mask], dtype=torch.long)
    mask_scores(s, rows, cols)
    return target_ranks(s, torch.tensor(targets))


def test_plain_rank_and_metrics():
    # items 1..5 (column 0 is padding and never a candidate, whatever its score)
    ranks = _ranks([[9.0, 0.1, 0.9, 0.3, 0.7, 0.2]], [[4]])
    assert ranks.tolist() == [[2]]  # only item 2 (0.9) scores higher
    m = metrics_from_ranks(ranks, ks=(1, 10))
    assert m[("hr", 1)].item() == 0 and m[("hr", 10)].item() == 1
    assert m[("mrr", 10)].item() == pytest.approx(0.5)
    assert m[("ndcg", 10)].item() == pytest.approx(1 / math.log2(3))
    assert m[("ndcg", 1)].item() == 0 and m[("mrr", 1)].item() == 0


def test_ties_count_against_the_target():
    # items 2 and 4 tie at 0.5: the target 4 is ranked after item 2 (pessimistic), whatever the index order
    assert _ranks([[0, 0.1, 0.5, 0.3, 0.5, 0.2]], [[4]]).tolist() == [[2]]
    assert _ranks([[0, 0.1, 0.5, 0.3, 0.5, 0.2]], [[2]]).tolist() == [[2]]
    # a constant scorer ranks every target last among the 5 candidates
    assert _ranks([[1.0] * 6], [[1]]).tolist() == [[5]]
    assert _ranks([[1.0] * 6], [[5]]).tolist() == [[5]]


def test_masked_items_are_not_candidates_and_a_masked_target_misses():
    scores = [[0, 0.1, 0.9, 0.3, 0.7, 0.2]]
    assert _ranks(scores, [[4]], mask=[(0, 2)]).tolist() == [[1]]  # the seen item 2 no longer outranks it
    miss = _ranks(scores, [[4]], mask=[(0, 4)])
    assert miss.tolist() == [[-1]]  # never a hit, at any K
    m = metrics_from_ranks(miss, ks=(10,))
    assert m[("hr", 10)].item() == 0 and m[("ndcg", 10)].item() == 0 and m[("mrr", 10)].item() == 0


def test_several_targets_and_padding_slots():
    # targets {1, 3}: ranks 5 and 1; a third slot is padding (0)
    ranks = _ranks([[0, 0.1, 0.9, 0.95, 0.7, 0.2]], [[1, 3, 0]])
    assert ranks.tolist() == [[5, 1, 0]]
    m = metrics_from_ranks(ranks, ks=(2, 10))
    assert m[("hr", 2)].item() == 1
    assert m[("mrr", 2)].item() == 1
    idcg = 1 + 1 / math.log2(3)
    assert m[("ndcg", 2)].item() == pytest.approx(1 / idcg)
    assert m[("ndcg", 10)].item() == pytest.approx((1 + 1 / math.log2(6)) / idcg)


def test_a_masked_target_still_counts_in_the_ideal_dcg():
    ranks = _ranks([[0, 0.1, 0.9, 0.3]], [[2, 3]], mask=[(0, 3)])
    assert ranks.tolist() == [[1, -1]]
    m = metrics_from_ranks(ranks, ks=(10,))
    assert m[("ndcg", 10)].item() == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_rows_are_independent():
    ranks = _ranks([[0, 1, 2, 3], [0, 3, 2, 1]], [[3], [3]], mask=[(1, 1)])
    assert ranks.tolist() == [[1], [2]]
    m = metrics_from_ranks(ranks, ks=(1,))
    assert m[("hr", 1)].tolist() == [1.0, 0.0]


def test_many_targets_rank_like_the_direct_comparison():
    """Rows with several targets take a sort and binary search; the ranks equal the direct count."""
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 20, (64, 200), generator=g).float()  # many ties
    scores[:, 0] = -math.inf
    scores[torch.rand(64, 200, generator=g) < 0.1] = -math.inf  # masked candidates
    targets = torch.randint(0, 200, (64, 7), generator=g)  # 0 = padding slot
    ranks = target_ranks(scores, targets)
    s_t = scores.gather(1, targets)
    direct = (scores.unsqueeze(1) >= s_t.unsqueeze(2)).sum(-1)
    expected = torch.where(torch.isneginf(s_t), -1, direct)
    expected = torch.where(targets > 0, expected, 0)
    assert torch.equal(ranks, expected)
    one = torch.cat([target_ranks(scores, targets[:, i:i + 1]) for i in range(7)], 1)
    assert torch.equal(one, expected)
