"""MMoE over behaviors (models/multitask.py): crafted data for the parts, the Taobao sample end to end."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import torch

from models.base import next_item_loss
from models.data import SequenceData, Split, history_windows, ragged_positions, training_windows
from pipelines.modeling.data import latest_day, load
from models.evaluate import evaluate
from models.multitask import (BEHAVIOR_CODES, MMoE, behavior_code, behavior_codes, evaluate_tasks, load_behaviors,
                              pack, task_splits)
from models.registry import FAMILIES, METHODS, MethodError, method_config
from models.registry import build
from models.trainer import train

VIEW, CART, FAV, BUY = (BEHAVIOR_CODES[b] for b in ("view", "cart", "fav", "buy"))
N_ITEMS = 30
BUY_NDCG_PIN = 0.007923  # 143 buyers; see test_taobao_sample_behaviors_training_and_popularity


def crafted(n_users: int = 40, seed: int = 0, held_out: int = 4) -> SequenceData:
    """Users walk a cycle of items with behaviors drawn per event (mostly views); the last
    ``held_out`` events are a temporal-style held-out part (test history before them, valid target
    the event just before, training before that)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 25, n_users)
    starts = rng.integers(0, N_ITEMS, n_users)
    items = np.concatenate([(s + np.arange(n)) % N_ITEMS + 1 for s, n in zip(starts, lengths)])
    codes = rng.choice([VIEW, CART, FAV, BUY], len(items), p=[0.7, 0.1, 0.1, 0.1])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows = np.arange(n_users)
    data = SequenceData(date(2024, 1, 1), "temporal", N_ITEMS, np.arange(1, n_users + 1), offsets, items,
                        lengths - held_out - 1)
    test_hist = lengths - held_out
    data.splits["test"] = Split(rows, test_hist, np.stack([items[offsets[:-1] + test_hist + k] for k in range(held_out)], 1))
    data.splits["valid"] = Split(rows, test_hist - 1, items[offsets[:-1] + test_hist - 1][:, None])
    data.event_codes = codes
    return data


def model_of(tasks=("view", "cart", "fav", "buy"), **model) -> MMoE:
    torch.manual_seed(0)
    mc = method_config("mmoe", {"model": {"dim": 16, "max_len": 8, "num_experts": 3, "tasks": list(tasks), **model}})
    return build(mc, N_ITEMS)


def test_registered_with_config_defaults_and_errors():
    assert METHODS["mmoe"] is MMoE and FAMILIES["mmoe"] == "multi-task"
    p = method_config("mmoe").params()
    assert p.tasks == ["view", "cart", "fav", "buy"] and p.num_experts == 4
    assert method_config("mmoe", sets=["model.tasks=[pv, buy]"]).params().tasks == ["view", "buy"]
    with pytest.raises(MethodError, match="unknown behavior"):
        method_config("mmoe", sets=["model.tasks=[purchase]"])
    with pytest.raises(MethodError, match="not tasks"):
        method_config("mmoe", sets=["model.tasks=[buy]", "model.task_weights={view: 2}"])


def test_shapes_and_gates_sum_to_one():
    model = model_of().eval()
    x = pack(torch.tensor([[1, 2, 3, 4, 0, 0, 0, 0], [5, 6, 7, 8, 9, 10, 11, 12]]),
             torch.tensor([[VIEW, CART, VIEW, BUY, 0, 0, 0, 0], [VIEW] * 8]), N_ITEMS)
    with torch.no_grad():
        h = model.hidden(x)
        g = model.gate_weights(h)
        u = model.task_vectors(h)
        lengths = torch.tensor([4, 8])
        assert h.shape == (2, 8, 16) and g.shape == (2, 8, 4, 3) and u.shape == (2, 8, 4, 16)
        assert torch.allclose(g.sum(-1), torch.ones(2, 8, 4)) and bool((g >= 0).all())
        assert model.full_scores(x, lengths).shape == (2, N_ITEMS + 1)
        # encode: the prior-weighted mixture of the heads, or the active task's head
        last = u[torch.arange(2), lengths - 1]
        assert torch.allclose(model.encode(x, lengths), (model.task_prior[:, None] * last).sum(1), atol=1e-6)
        with model.task("buy"):
            assert torch.allclose(model.encode(x, lengths), last[:, 3], atol=1e-6)
        assert model.active_task is None
        # behaviors are read: the same items with other behaviors give other vectors
        other = pack(x % (N_ITEMS + 1), torch.full_like(x, FAV) * (x > 0), N_ITEMS)
        assert not torch.allclose(model.encode(other, lengths), model.encode(x, lengths))
        # causal: what lies past the length is never read
        cut = x.clone()
        cut[1, 5:] = 0
        assert torch.allclose(model.encode(cut, torch.tensor([4, 5])), model.encode(x, torch.tensor([4, 5])), atol=1e-5)


def test_a_tasks_loss_counts_only_targets_of_its_behavior():
    model = model_of().eval()  # no dropout: the same batch gives the same loss
    items = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9], [4, 5, 6, 7, 0, 0, 0, 0, 0]])
    codes = torch.tensor([[VIEW, BUY, VIEW, CART, VIEW, VIEW, BUY, VIEW, FAV], [VIEW, VIEW, BUY, VIEW, 0, 0, 0, 0, 0]])
    batch = pack(items, codes, N_ITEMS)
    losses = model.task_losses(batch)
    assert set(losses) == {"view", "cart", "fav", "buy"}
    # buy by hand: the buy head at the positions whose next event is a buy
    u = model.task_vectors(model.hidden(batch[:, :-1]))
    keep = codes[:, 1:] == BUY
    assert int(keep.sum()) == 3
    manual = next_item_loss(u[..., 3, :][keep], items[:, 1:][keep], model.item_embeddings(), model.params)
    assert torch.allclose(losses["buy"], manual)
    # changing the item of a view target changes the view loss, never the buy loss
    changed_target_only = batch.clone()
    changed_target_only[0, 8] = pack(torch.tensor(25), torch.tensor(FAV), N_ITEMS)  # last target: input of nothing
    again = model.task_losses(changed_target_only)
    assert torch.allclose(again["buy"], losses["buy"]) and torch.allclose(again["view"], losses["view"])
    assert not torch.allclose(again["fav"], losses["fav"])
    # the total is sum_t w_t L_t
    weighted = model_of(task_weights={"buy": 3.0, "view": 0.5}).eval()
    ls = weighted.task_losses(batch)
    expected = 0.5 * ls["view"] + ls["cart"] + ls["fav"] + 3.0 * ls["buy"]
    assert torch.allclose(weighted.loss(batch), expected)
    # a single-task model predicts only its behavior's targets
    only_buy = model_of(tasks=["buy"]).eval()
    assert set(only_buy.task_losses(batch)) == {"buy"}
    assert only_buy.count_targets(batch) == 3 and model.count_targets(batch) == int((items[:, 1:] > 0).sum())


def test_examples_and_histories_keep_behaviors_aligned_with_items():
    data = crafted()
    model = model_of()
    model.prepare(data)
    ex = model.training_examples(data)
    starts, ends = training_windows(data, model.window_width, model.window_stride)
    assert len(ex) == len(starts)  # every window has a target of some task
    items, codes = model.unpack(ex)
    first = ex[:, 0]
    # each window's first event: (item, behavior) of the flat position it starts at
    assert torch.equal(items[:, 0], torch.as_tensor(data.items[starts])) and torch.equal(
        codes[:, 0], torch.as_tensor(data.event_codes[starts]))
    assert bool((first > 0).all())
    real = items > 0
    assert torch.equal(real, codes > 0)
    rows = np.arange(len(data.users))
    packed, lengths = model.histories(data, rows, data.splits["test"].history_len)
    plain, plain_lengths = history_windows(data, rows, data.splits["test"].history_len, model.params.max_len)
    h_items, h_codes = model.unpack(torch.as_tensor(packed))
    assert np.array_equal(lengths, plain_lengths) and np.array_equal(h_items.numpy(), plain)
    ends = data.offsets[:-1] + data.splits["test"].history_len
    assert np.array_equal(h_codes.numpy()[rows, lengths - 1], data.event_codes[ends - 1])
    # the mixture weights are the tasks' shares of the training targets
    pos = ragged_positions(data.offsets[:-1] + 1, data.offsets[:-1] + data.train_len)
    counts = np.array([(data.event_codes[pos] == behavior_code(t)).sum() for t in model.tasks], dtype=float)
    assert np.allclose(model.task_prior.numpy(), counts / counts.sum())
    # single task: only windows with a buy target
    only_buy = model_of(tasks=["buy"])
    only_buy.prepare(data)
    ex_buy = only_buy.training_examples(data)
    assert 0 < len(ex_buy) <= len(ex)
    assert bool((only_buy.unpack(ex_buy[:, 1:])[1] == BUY).any(1).all())


def test_per_task_targets_are_never_trained_on():
    data = crafted(held_out=6)
    splits = task_splits(data, ["view", "cart", "fav", "buy"])
    test = data.splits["test"]
    model = model_of()
    model.prepare(data)
    starts, ends = training_windows(data, model.window_width, model.window_stride)
    trained = np.zeros(len(data.items), dtype=bool)
    trained[ragged_positions(starts, ends)] = True
    assert not trained[ragged_positions(data.offsets[:-1] + data.train_len, data.offsets[1:])].any()
    for task, sp in splits.items():
        assert len(sp) > 0
        pos = data.offsets[sp.rows] + sp.history_len  # the target's flat position
        assert np.all(sp.history_len >= test.history_len[sp.rows])  # in the held-out part
        assert not trained[pos].any() and np.all(sp.history_len > data.train_len[sp.rows])
        assert np.all(data.event_codes[pos] == behavior_code(task))
        assert np.array_equal(sp.targets[:, 0], data.items[pos])
        # the user's last event of that behavior: none of it after the target
        for r, p in zip(sp.rows[:5], pos[:5]):
            later = data.event_codes[p + 1:data.offsets[r + 1]]
            assert not (later == behavior_code(task)).any()
    # users with no event of a behavior in the held-out part have no row for it
    with_buy = {int(r) for r in splits["buy"].rows}
    for r in range(len(data.users)):
        held = data.event_codes[data.offsets[r] + test.history_len[r]:data.offsets[r + 1]]
        assert ((held == BUY).any()) == (r in with_buy)


def test_training_on_crafted_data_learns_and_evaluates_per_task(tmp_path):
    """The bars are MRR@10 and NDCG@10, not HR@10: a user's unseen items are few here, so HR@10 is
    high for any model (the untrained one's is checked to fail the same bars)."""
    data = crafted(n_users=60)
    mc = method_config("mmoe", {"model": {"dim": 16, "max_len": 10, "num_experts": 2},
                                "train": {"epochs": 12, "batch_size": 8, "patience": 50, "lr": 0.01}})
    torch.manual_seed(0)
    model = build(mc, data.n_items)

    def scores() -> tuple[dict[str, float], float]:
        per_task = evaluate_tasks(model.eval(), data)
        assert set(per_task) == {"view", "cart", "fav", "buy"}
        return ({task: m.mean()[("mrr", 10)] for task, m in per_task.items()},
                evaluate(model, data, "test").mean()[("ndcg", 10)])  # the shared evaluator reads behaviors too

    untrained, untrained_ndcg = scores()
    assert max(untrained.values()) < 0.5 and untrained_ndcg < 0.6, (untrained, untrained_ndcg)
    result = train(model, data, mc, tmp_path / "models" / "mmoe" / mc.version(data.day), echo=lambda m: None,
                   progress=False)
    assert result.log[-1]["loss"] < result.log[0]["loss"]
    trained, trained_ndcg = scores()  # the cycle is learnt: the next item first for every behavior
    assert min(trained.values()) > 0.8 and trained_ndcg > 0.8, (trained, trained_ndcg)


def test_without_warehouse_or_codes_the_error_says_what_is_missing():
    data = crafted()
    del data.event_codes
    with pytest.raises(ValueError, match="event_codes"):
        behavior_codes(data)


def test_taobao_sample_behaviors_training_and_popularity(taobao_wh, tmp_path):
    import duckdb

    wh = taobao_wh.warehouse
    day = latest_day(wh)
    data = load(wh, day, "temporal")
    codes = load_behaviors(data)
    # alignment: per behavior, the events counted here are the warehouse's own count as of the day
    con = duckdb.connect()
    counts = dict(con.execute(
        "SELECT t, count(*) FROM (SELECT unnest(event_type) AS t FROM (SELECT *, row_number() OVER "
        "(PARTITION BY user_idx ORDER BY dt DESC) AS r FROM read_parquet(?, hive_partitioning = true) WHERE dt <= ?) "
        "WHERE r = 1) GROUP BY t", [str(wh / "sequences" / "dt=*" / "*.parquet"), day]).fetchall())
    assert {b: int((codes == behavior_code(b)).sum()) for b in counts} == counts and counts["buy"] > 500
    data.event_codes = codes
    splits = task_splits(data, ["view", "buy"])
    assert len(splits["view"]) > 100 and len(splits["buy"]) > 10
    mc = method_config("mmoe", taobao_wh.methods.get("mmoe"), [
        "model.dim=32", "model.num_layers=1", "model.num_experts=2", "model.loss=sampled",
        "model.num_negatives=512", "train.epochs=8", "train.patience=8", "train.batch_size=64", "train.lr=0.005",
        "train.seed=1"])
    model = build(mc, data.n_items)
    result = train(model, data, mc, tmp_path / "models" / "mmoe" / mc.version(day), echo=lambda m: None,
                   progress=False)
    assert result.log[-1]["loss"] < result.log[0]["loss"]
    pop = build(method_config("pop"), data.n_items)
    pop.prepare(data)
    ours = {task: m.mean() for task, m in evaluate_tasks(model, data, ["view", "buy"]).items()}
    base = evaluate_tasks(pop, data, ["view"])["view"].mean()
    assert ours["view"][("hr", 10)] > base[("hr", 10)] and ours["view"][("ndcg", 10)] > base[("ndcg", 10)], (ours, base)
    # The buy task's test NDCG@10 at this budget (CPU, seed 1: deterministic), pinned 2026-12-01;
    # a change that costs it more than 3% fails (bench/README.md has the converged figures).
    buy = ours["buy"][("ndcg", 10)]
    assert BUY_NDCG_PIN * 0.97 <= buy <= BUY_NDCG_PIN * 1.25, f"buy NDCG@10 {buy:.6f}, pinned {BUY_NDCG_PIN:.6f}"
