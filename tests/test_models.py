"""Sequence encoders, training windows, baselines, trainer (determinism, resume) on small crafted data."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import torch

from models.data import SequenceData, Split, history_windows, ragged_positions, training_windows, windows
from models.evaluate import evaluate
from models.registry import METHODS, MethodError, method_config
from models.registry import build
from models.trainer import train


def crafted(n_users: int = 40, n_items: int = 30, seed: int = 0) -> SequenceData:
    """Users walk a cycle of items (i -> i + 1) from random starts: a sequence model can learn it."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 25, n_users)
    starts = rng.integers(0, n_items, n_users)
    items = np.concatenate([(s + np.arange(n)) % n_items + 1 for s, n in zip(starts, lengths)])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows = np.arange(n_users)
    data = SequenceData(date(2024, 1, 1), "loo", n_items, np.arange(1, n_users + 1), offsets, items, lengths.copy())
    data.splits["valid"] = Split(rows, lengths - 2, items[offsets[:-1] + lengths - 2][:, None])
    data.splits["test"] = Split(rows, lengths - 1, items[offsets[:-1] + lengths - 1][:, None])
    data.train_len = lengths - 2
    return data


def test_ragged_positions():
    assert ragged_positions(np.array([0, 5, 9]), np.array([2, 5, 12])).tolist() == [0, 1, 9, 10, 11]


@pytest.mark.parametrize("width,stride", [(3, 2), (5, 4), (4, 4), (51, 50)])
def test_training_windows_cover_every_target_once(width, stride):
    data = crafted()
    starts, ends = training_windows(data, width, stride)
    assert np.all(ends - starts <= width) and np.all(ends - starts >= (2 if stride < width else 1))
    if stride == width - 1:  # next-item windows: every event after a user's first is a target once
        targets = np.concatenate([np.arange(s + 1, e) for s, e in zip(starts, ends)])
        expected = ragged_positions(data.offsets[:-1] + 1, data.offsets[:-1] + data.train_len)
    else:  # masked windows: every event once
        targets = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
        expected = ragged_positions(data.offsets[:-1], data.offsets[:-1] + data.train_len)
    assert sorted(targets.tolist()) == sorted(expected.tolist())
    assert np.all(ends <= data.offsets[:-1][np.searchsorted(data.offsets, starts, "right") - 1] + data.train_len.max())


def test_windows_and_histories_are_right_padded():
    items = np.array([5, 6, 7, 8, 9])
    assert windows(items, np.array([0, 3]), np.array([3, 5]), 4).tolist() == [[5, 6, 7, 0], [8, 9, 0, 0]]
    data = SequenceData(date(2024, 1, 1), "loo", 9, np.array([1]), np.array([0, 5]), items, np.array([5]))
    hist, lens = history_windows(data, np.array([0]), np.array([4]), 3)
    assert hist.tolist() == [[6, 7, 8]] and lens.tolist() == [3]  # the last 3 of the first 4


@pytest.mark.parametrize("name", ["gru4rec", "lstm", "sasrec", "bert4rec"])
@pytest.mark.parametrize("loss", ["ce", "sampled", "bce"])
def test_every_method_and_loss_runs(name, loss):
    torch.manual_seed(0)
    mc = method_config(name, {"model": {"dim": 16, "max_len": 8, "loss": loss, "num_negatives": 5}})
    model = build(mc, 30)
    batch = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9][: model.window_width], [4, 5, 6] + [0] * (model.window_width - 3)])
    value = model.loss(batch)
    assert torch.isfinite(value) and value.item() > 0
    value.backward()
    assert model.item_embeddings().shape == (31, 16)
    hist, lens = torch.tensor([[1, 2, 3, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8]]), torch.tensor([3, 8])
    assert model.eval().full_scores(hist, lens).shape == (2, 31)


@pytest.mark.parametrize("name", ["gru4rec", "lstm", "sasrec"])
def test_causal_methods_ignore_the_future_and_the_padding(name):
    mc = method_config(name, {"model": {"dim": 16, "max_len": 6}})
    model = build(mc, 20).eval()
    a = torch.tensor([[3, 4, 5, 6, 7, 8]])
    b = torch.tensor([[3, 4, 5, 9, 0, 0]])
    with torch.no_grad():
        ha, hb = model.hidden(a), model.hidden(b)
        assert torch.allclose(ha[:, :3], hb[:, :3], atol=1e-5)
        assert torch.allclose(model.encode(a, torch.tensor([3])), model.encode(b, torch.tensor([3])), atol=1e-5)


def test_bert4rec_reads_both_sides_and_ignores_padding():
    model = build(method_config("bert4rec", {"model": {"dim": 16, "max_len": 6}}), 20).eval()
    with torch.no_grad():
        u1 = model.encode(torch.tensor([[3, 4, 5, 0, 0, 0]]), torch.tensor([3]))
        u2 = model.encode(torch.tensor([[3, 4, 5, 0, 0, 0]]), torch.tensor([3]))
        u3 = model.encode(torch.tensor([[3, 4, 5, 11, 12, 13]]), torch.tensor([3]))
        full = model.encode(torch.tensor([[3, 4, 5, 11, 12, 13]]), torch.tensor([6]))
    assert torch.allclose(u1, u2) and torch.allclose(u1, u3, atol=1e-5)  # what lies past the length is never read
    assert not torch.allclose(u1, full)


def test_baselines_on_hand_counts():
    items = np.array([1, 2, 3, 1, 2, 4, 2, 3])
    data = SequenceData(date(2024, 1, 1), "loo", 4, np.array([1, 2]), np.array([0, 3, 8]), items, np.array([3, 5]))
    pop = build(method_config("pop"), 4)
    pop.prepare(data)
    assert pop.popularity.tolist() == [0, 2, 3, 2, 1]
    markov = build(method_config("markov"), 4)
    markov.prepare(data)
    scores = markov.full_scores(torch.tensor([[1, 2, 0]]), torch.tensor([2]))  # last item 2: 2 -> 3 twice, 2 -> 4 once
    tie_break = np.array([0, 2, 3, 2, 1]) / 4
    assert scores[0].tolist() == pytest.approx((tie_break + np.array([0, 0, 0, 2, 1])).tolist())


def test_method_config_layers_and_errors():
    mc = method_config("sasrec", {"model": {"dim": 32}}, ["model.num_layers=3", "train.seed=7"])
    assert mc.params().dim == 32 and mc.params().num_layers == 3 and mc.train.seed == 7
    assert mc.version(date(2024, 1, 1)) != method_config("sasrec").version(date(2024, 1, 1))
    with pytest.raises(MethodError, match="unknown method"):
        method_config("nope")
    with pytest.raises(MethodError, match="model.bogus"):
        method_config("sasrec", sets=["model.bogus=1"])
    with pytest.raises(MethodError, match="loss"):
        method_config("gru4rec", {"model": {"loss": "hinge"}})
    assert set(METHODS) >= {"pop", "markov", "gru4rec", "lstm", "sasrec", "bert4rec"}


def _train(tmp_path, name, data, epochs, resume=False, echo=lambda m: None, **train):
    mc = method_config(name, {"model": {"dim": 16, "max_len": 10}, "train": {"epochs": epochs, "batch_size": 8,
                                                                            "patience": 50, "lr": 0.01, **train}})
    model = build(mc, data.n_items)
    folder = tmp_path / "models" / name / mc.version(data.day)
    return model, train_run(model, data, mc, folder, resume, echo)


def train_run(model, data, mc, folder, resume, echo):
    return train(model, data, mc, folder, resume=resume, echo=echo, progress=False)


@pytest.mark.parametrize("name", ["gru4rec", "sasrec"])
def test_training_learns_the_cycle_and_is_deterministic(tmp_path, name):
    data = crafted()
    m1, r1 = _train(tmp_path / "a", name, data, 15)
    m2, r2 = _train(tmp_path / "b", name, data, 15)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert r1.best_valid_ndcg == r2.best_valid_ndcg
    test = evaluate(m1, data, "test").mean()
    assert test[("hr", 10)] > 0.9, test  # the cycle is learnable; popularity is flat on it
    pop = build(method_config("pop"), data.n_items)
    pop.prepare(data)
    assert evaluate(pop, data, "test").mean()[("hr", 10)] < 0.6
    assert (r1.folder / "model.safetensors").is_file() and (r1.folder / "config.json").is_file()
    assert not r1.folder.with_name(r1.folder.name + ".partial").exists()
    assert len((r1.folder / "epochs.jsonl").read_text().splitlines()) == r1.epochs


def test_resume_continues_an_interrupted_run_exactly(tmp_path):
    data = crafted()
    straight, _ = _train(tmp_path / "straight", "sasrec", data, 6)

    def crash_after_3(msg):
        if msg.startswith("epoch   3"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "resumed", "sasrec", data, 6, echo=crash_after_3)
    resumed, result = _train(tmp_path / "resumed", "sasrec", data, 6, resume=True)
    assert result.epochs == 6 and len(result.log) == 6
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_checkpoint_round_trip_and_no_pickle(tmp_path):
    from models.checkpoint import load_model

    data = crafted()
    model, result = _train(tmp_path, "markov", data, 1)
    again = build(method_config("markov"), data.n_items)
    load_model(again, result.folder)
    hist, lens = torch.tensor([[3, 4, 0]]), torch.tensor([2])
    assert torch.equal(model.full_scores(hist, lens), again.full_scores(hist, lens))
    assert not list(result.folder.glob("*.pt")) and not list(result.folder.glob("*.pkl"))


def test_time_budget_stops_training_and_the_log_has_wall_clock(tmp_path):
    _, result = _train(tmp_path, "gru4rec", crafted(), 50, time_budget_s=1e-6)
    assert result.epochs == 1  # the first epoch always runs; the budget stops the next ones
    assert result.log[0]["elapsed_s"] >= result.log[0]["seconds"] > 0


def test_candidates_bound_the_ranking_to_their_items():
    """A cross-domain pair ranks its target's items only: the most popular item of the other
    domain never outranks a target item."""
    # Item 1 (another domain) is the most popular; items 2 and 3 are the candidates.
    items = np.array([1, 1, 2, 3, 1, 2, 1, 3, 3, 2])
    data = SequenceData(date(2024, 1, 1), "loo", 3, np.array([1, 2, 3, 4]), np.array([0, 3, 6, 9, 10]), items,
                        np.array([3, 3, 3, 1]))
    data.splits["test"] = Split(np.array([3]), np.array([0]), np.array([[2]]))  # a user with no history
    model = build(method_config("pop"), data.n_items, data.user_vocab)
    model.prepare(data)
    everything = evaluate(model, data, "test").mean()
    data.candidates = np.array([2, 3])
    bounded = evaluate(model, data, "test").mean()
    # Training events: item 1 four, items 2 and 3 three each; ties rank pessimistically: 3, then 2.
    assert everything[("mrr", 10)] == pytest.approx(1 / 3) and bounded[("mrr", 10)] == pytest.approx(1 / 2)



def test_a_user_without_history_is_ranked_by_popularity_whatever_the_encoder():
    """A cold-start-in-target user of a pair's target view has no event: every method ranks them
    as the popularity baseline does, never from the encoder's state of an all-padding input."""
    data = crafted()
    data.splits["cold"] = Split(np.arange(5), np.zeros(5, dtype=np.int64), data.splits["test"].targets[:5])
    pop = build(method_config("pop"), data.n_items, data.user_vocab)
    pop.prepare(data)
    sasrec = build(method_config("sasrec", {"model": {"dim": 16, "max_len": 10}}), data.n_items)
    want, got = evaluate(pop, data, "cold"), evaluate(sasrec, data, "cold")
    for key in want.per_user:
        np.testing.assert_array_equal(got.per_user[key], want.per_user[key])


def test_the_mixed_encoder_learns_from_target_targets_only():
    """sasrec_mixed's loss is taken where the next event is a target item (the candidates),
    among target items: a window whose targets are all source items carries no loss."""
    data = crafted(n_items=30)
    data.candidates = np.arange(16, 31)  # items 16..30: the target
    model = build(method_config("sasrec_mixed", {"model": {"dim": 16, "max_len": 10, "loss": "ce"}}), data.n_items)
    model.prepare(data)
    assert model.domain_of[0] == 0 and set(model.domain_of[16:].tolist()) == {1} and set(model.domain_of[1:16].tolist()) == {2}
    source_only = torch.tensor([[1, 2, 3, 4, 0]])
    assert model.loss(source_only).item() == 0.0 and model.count_targets(source_only) == 0
    mixed = torch.tensor([[1, 16, 2, 17, 0]])
    assert model.count_targets(mixed) == 2
    # ce over the 15 target items (and padding, masked): about log 15 at initialisation, not log 30.
    assert abs(model.loss(mixed).item() - np.log(15)) < 0.5


def test_new_train_settings_keep_the_versions_named_before_them():
    """A setting added later (train.valid_split) enters the version hash only away from its default."""
    mc = method_config("sasrec")
    assert mc.version(date(2024, 1, 1)) == method_config("sasrec", {"train": {"valid_split": "valid"}}).version(date(2024, 1, 1))
    assert mc.version(date(2024, 1, 1)) != method_config("sasrec", {"train": {"valid_split": "cold_valid"}}).version(date(2024, 1, 1))
    assert mc.version(date(2024, 1, 1)) != mc.version(date(2024, 1, 1), "pair=p/view=target")


def test_a_missing_validation_split_is_a_clear_error(tmp_path):
    from models.errors import DataError

    with pytest.raises(DataError, match="train.valid_split=cold_valid: the data as of 2024-01-01 has no such split"):
        _train(tmp_path, "sasrec", crafted(), 1, valid_split="cold_valid")
