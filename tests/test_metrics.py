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


# -- beyond accuracy ------------------------------------------------------------------------------

def test_popularity_buckets_are_thirds_of_the_events_ties_by_index():
    from models.metrics import popularity_buckets

    # 12 events: item 1 (6) makes the first third alone, item 2 (3) starts before 8: torso, the rest tail.
    assert popularity_buckets(torch.tensor([0, 6, 3, 2, 1, 0])).tolist() == [2, 0, 1, 2, 2, 2]
    # ties: equal counts in index order, a third each
    assert popularity_buckets(torch.tensor([0, 2, 2, 2])).tolist() == [2, 0, 1, 2]


def test_list_metrics_by_hand():
    from models.metrics import list_metrics, popularity_buckets

    counts = torch.tensor([0, 6, 3, 2, 1, 0])
    items = torch.tensor([[1, 2], [3, 0]])
    valid = torch.tensor([[True, True], [True, False]])  # user 1's list ran out of candidates
    vectors = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    m = list_metrics(items, valid, counts, 8, popularity_buckets(counts), vectors, ks=(2,))
    assert m[("popularity", 2)].tolist() == [4.5, 2.0]
    assert m[("novelty", 2)].tolist() == pytest.approx([(math.log2(8 / 6) + math.log2(8 / 3)) / 2, math.log2(8 / 2)])
    assert m[("tail", 2)].tolist() == [0.0, 1.0]  # items 1 (head) and 2 (torso); item 3 is in the tail
    assert m[("ild", 2)].tolist() == pytest.approx([1.0, 0.0])  # orthogonal pair; one item has no pair
    assert ("ild", 2) not in list_metrics(items, valid, counts, 8, popularity_buckets(counts), None, ks=(2,))


def test_catalogue_metrics_one_item_for_everyone_and_an_even_spread():
    from models.metrics import catalogue_metrics

    candidates = torch.tensor([1, 2, 3, 4])
    one = catalogue_metrics(torch.tensor([0, 5, 0, 0, 0]), candidates)
    assert one == {"coverage": 0.25, "gini": pytest.approx(0.75), "entropy": 0.0}  # gini (n - 1) / n: its maximum
    even = catalogue_metrics(torch.tensor([9, 2, 2, 2, 2]), candidates)  # item 0 is no candidate
    assert even == {"coverage": 1.0, "gini": 0.0, "entropy": pytest.approx(2.0)}


def test_evaluation_keeps_lists_ties_by_index_and_an_empty_tail():
    """Through ``models.evaluate``: a constant scorer recommends the lowest indexes to everyone (ties
    by index), none of them in the tail when they are the popular ones."""
    from datetime import date

    import numpy as np

    from models.data import SequenceData, Split
    from models.evaluate import evaluate
    from models.registry import build, method_config

    # 3 users, 25 items; items 1-20 are the popular ones (each in every training history once), 21-25 rare.
    hist = [list(range(1, 21)) + [21 + u, 24] for u in range(3)]
    lengths = np.array([len(h) for h in hist])
    data = SequenceData(date(2024, 1, 1), "loo", 25, np.arange(3), np.concatenate([[0], np.cumsum(lengths)]),
                        np.concatenate(hist).astype(np.int64), lengths - 1,
                        {"test": Split(np.arange(3), lengths - 1, np.array([[24]] * 3))})
    pop = build(method_config("pop"), 25)
    pop.popularity = torch.ones(26)  # a constant scorer: every score ties
    res = evaluate(pop, data, "test", mask_seen=False).mean()
    assert res[("coverage", 10)] == pytest.approx(10 / 25) and res[("gini", 10)] == pytest.approx(
        sum((2 * k - 25 - 1) * (3 if k > 15 else 0) for k in range(1, 26)) / (25 * 30))
    assert res[("tail", 10)] == 0.0 and res[("popularity", 10)] == 3.0  # items 1-10: 3 events each
    assert res[("entropy", 10)] == pytest.approx(math.log2(10))


def test_segments_by_hand_and_weighted_they_give_the_overall_value():
    import numpy as np

    from models.evaluate import evaluate, segment_labels
    from models.registry import build, method_config
    from pipelines.modeling.metrics import metric_rows, segment_rows

    labels = segment_labels(np.array([0, 1, 5, 6, 20, 21, 50, 51]), np.array([1, 2, 3, 1, 2, 3, 1, 5]),
                            np.array([2, 0, 1, 2, 2, 2]))
    assert labels["history"].tolist() == ["0", "1-5", "1-5", "6-20", "6-20", "21-50", "21-50", "51+"]
    assert labels["target"].tolist() == ["head", "torso", "tail", "head", "torso", "tail", "head", "tail"]
    from test_models import crafted

    data = crafted(n_users=60)
    markov = build(method_config("markov"), data.n_items)
    markov.prepare(data)
    res = evaluate(markov, data, "test")
    keys = dict(method="markov", dataset="d", protocol="loo", day=data.day, version="v", seed=0)
    overall = {(r["metric"], r["k"]): r["value"] for r in metric_rows(res, **keys)}
    rows = segment_rows(res, **keys)
    assert {r["segmentation"] for r in rows} == {"history", "target"} and {r["metric"] for r in rows} == {"hr", "ndcg", "mrr"}
    for segmentation in ("history", "target"):
        part = [r for r in rows if r["segmentation"] == segmentation]
        assert sum(r["users"] for r in part if (r["metric"], r["k"]) == ("ndcg", 10)) == len(res.users)
        for key, value in overall.items():
            if key[0] in ("hr", "ndcg", "mrr"):
                weighted = sum(r["value"] * r["users"] for r in part if (r["metric"], r["k"]) == key) / len(res.users)
                assert weighted == pytest.approx(value), (segmentation, key)


def test_top_lists_equal_a_full_stable_sort_ties_and_masks_included():
    from models.metrics import top_lists

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 40, (64, 500), generator=g).float()  # many ties at every level
    scores[:5, 100:] = -math.inf  # rows with few candidates
    scores[5] = 1.0  # one constant row: every item tied
    for width in (1, 20):
        want_v, want_i = (t[:, :width] for t in scores.sort(dim=1, descending=True, stable=True))
        got_v, got_i = top_lists(scores, width)
        assert torch.equal(got_i, want_i) and torch.equal(got_v, want_v)
    got_v, got_i = top_lists(scores[6:], 20)  # without the short and constant rows
    assert torch.equal(got_i, scores[6:].sort(dim=1, descending=True, stable=True).indices[:, :20])


def test_lists_and_ranks_give_top_lists_and_the_ranks_that_count():
    """evaluate's one pass: the lists of ``top_lists`` and the ranks of ``target_ranks`` wherever a
    rank is at most the list's width (ties at the cut, masked and padded targets, several targets
    per row, a constant row, fewer items than the width); a rank beyond it reads as width + 1."""
    from models.metrics import lists_and_ranks, top_lists

    g = torch.Generator().manual_seed(5)
    scores = torch.randint(0, 30, (64, 400), generator=g).float()  # ties at every level, the cut included
    scores[:, 0] = -math.inf
    scores[torch.rand(64, 400, generator=g) < 0.1] = -math.inf
    scores[7] = 2.0  # a constant row: the full sort path
    targets = torch.randint(0, 400, (64, 3), generator=g)  # 0 = padding slot
    targets[:, 0] = scores[:, 1:].argmax(1) + 1  # some targets at the top of their row
    for width, cols in ((20, 400), (20, 12), (1, 400)):
        s, t = scores[:, :cols], targets.clamp(max=cols - 1)
        ranks, values, items = lists_and_ranks(s, t, width)
        want_v, want_i = top_lists(s, width)
        assert torch.equal(values, want_v) and torch.equal(items, want_i), (width, cols)
        assert torch.equal(ranks, target_ranks(s, t).clamp(max=min(width, cols) + 1)), (width, cols)
        if (width, cols) == (20, 400):  # row 7's target ties with all 400 items; the others top their rows
            top = torch.cat([ranks[:7, 0], ranks[8:, 0]])
            assert bool(((top >= 1) & (top <= width)).all()) and ranks[7, 0] == width + 1
