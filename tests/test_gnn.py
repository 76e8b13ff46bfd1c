"""SR-GNN and LightGCN: session graphs, the training graph from the ETL's tables, and smoke training on ml-100k."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import torch

from models.data import SequenceData, Split, prefix_windows

from pipelines.modeling.data import latest_day, load
from models.evaluate import evaluate
from models.gnn import session_graphs, training_graph
from models.registry import method_config
from models.registry import build


def _edges(edge_index: torch.Tensor, node_item: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(node_item[a]), int(node_item[b])) for a, b in edge_index.T.tolist()}


def test_session_graph_by_hand():
    # row 0: 3 4 3 5 (a revisit of 3); row 1: 7 7 8 (a repeat: self-loop) then padding
    items = torch.tensor([[3, 4, 3, 5, 0], [7, 7, 8, 0, 0]])
    node_item, edge_index, pos = session_graphs(items, torch.tensor([4, 3]), n_items=10)
    assert node_item.tolist() == [3, 4, 5, 7, 8]  # each row's distinct items, row by row
    assert pos.tolist() == [[0, 1, 0, 2, -1], [3, 3, 4, -1, -1]]
    assert _edges(edge_index, node_item) == {(3, 4), (4, 3), (3, 5), (7, 7), (7, 8)}
    assert edge_index.shape[1] == 5  # distinct edges only; none across rows
    rows_of = torch.tensor([0, 0, 0, 1, 1])
    assert torch.equal(rows_of[edge_index[0]], rows_of[edge_index[1]])


def _tiny(n_items: int = 12) -> SequenceData:
    # three users; each sequence cycles through items so the next item is predictable
    seqs = [[1, 2, 3, 4, 1, 2, 3, 4, 1, 2], [5, 6, 7, 5, 6, 7, 5, 6], [2, 3, 4, 1, 2, 3, 4, 1, 2]]
    lens = np.array([len(s) for s in seqs])
    offsets = np.concatenate([[0], np.cumsum(lens)])
    rows = np.arange(3)
    splits = {"valid": Split(rows, lens - 2, np.array([[s[-2]] for s in seqs])),
              "test": Split(rows, lens - 1, np.array([[s[-1]] for s in seqs]))}
    return SequenceData(date(2020, 1, 1), "loo", n_items, np.array([0, 1, 2]), offsets,
                        np.concatenate(seqs).astype(np.int64), lens - 2, splits)


def test_prefix_windows_one_per_training_target():
    data = _tiny()
    starts, ends = prefix_windows(data, width=4)
    assert len(starts) == int((data.train_len - 1).sum())
    assert (ends - starts).max() == 4 and (ends - starts).min() == 2
    # user 0's first window is its first two events; its last ends at its last training event
    assert (starts[0], ends[0]) == (0, 2)
    assert ends[int(data.train_len[0]) - 2] == data.train_len[0]


def test_srgnn_shapes_padding_and_learning():
    data = _tiny()
    mc = method_config("srgnn", sets=["model.dim=16", "model.max_len=4"])
    model = build(mc, data.n_items)
    model.eval()
    hist, lens = torch.tensor([[1, 2, 3, 0], [5, 6, 0, 0]]), torch.tensor([3, 2])
    assert model.full_scores(hist, lens).shape == (2, data.n_items + 1)
    # right padding is never read
    padded = model.encode(torch.tensor([[1, 2, 3, 0, 0, 0]]), torch.tensor([3]))
    assert torch.allclose(model.encode(torch.tensor([[1, 2, 3]]), torch.tensor([3])), padded, atol=1e-6)
    model.train()
    _learns_the_prefixes(model, data)


def _learns_the_prefixes(model, data: SequenceData) -> None:
    """One example per prefix (SR-GNN's), and 40 full-batch Adam steps cut the loss by 3x."""
    examples = model.training_examples(data)
    assert examples.shape == (int((data.train_len - 1).sum()), 5)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = float(model.loss(examples).detach())
    for _ in range(40):
        opt.zero_grad()
        loss = model.loss(examples)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first / 3


def test_gcsan_attends_over_the_hand_built_graph_states_in_position_order():
    """GC-SAN on 3 4 3 5 (a revisit of 3): the graph layers run on the graph built by hand
    (nodes 3, 4, 5; edges 3->4, 4->3, 3->5), their states are read back per position (3's state
    twice), and the user vector is omega * attention output + (1 - omega) * last state."""
    torch.manual_seed(0)
    model = build(method_config("gcsan", sets=["model.dim=16", "model.max_len=6", "model.num_heads=2",
                                               "model.omega=0.7"]), 10).eval()
    history, lengths = torch.tensor([[3, 4, 3, 5, 0, 0]]), torch.tensor([4])
    with torch.no_grad():
        h = model.ggnn(model.item(torch.tensor([3, 4, 5])), torch.tensor([[0, 1, 0], [1, 0, 2]]))
        by_hand = h[torch.tensor([0, 1, 0, 2])]
        states, valid = model.graph_states(history, lengths)
        torch.testing.assert_close(states[0, :4], by_hand)
        assert valid.tolist() == [[True] * 4 + [False] * 2] and not states[0, 4:].any()
        attended = model.san(by_hand[None])[0, -1]
        torch.testing.assert_close(model.encode(history, lengths)[0], 0.7 * attended + 0.3 * by_hand[-1])
        # right padding is never read
        torch.testing.assert_close(model.encode(history[:, :4], lengths), model.encode(history, lengths))


def test_gcsan_learns_like_srgnn():
    data = _tiny()
    model = build(method_config("gcsan", sets=["model.dim=16", "model.max_len=4", "model.attention_dropout=0"]),
                  data.n_items)
    _learns_the_prefixes(model, data)
    with pytest.raises(ValueError, match="multiple of model.num_heads"):
        build(method_config("gcsan", sets=["model.dim=10", "model.num_heads=4"]), 5)


def test_lightgcn_needs_users_and_a_warehouse():
    mc = method_config("lightgcn")
    with pytest.raises(ValueError, match="n_users"):
        build(mc, 10, 0)
    model = build(mc, 12, 3)
    with pytest.raises(ValueError, match="warehouse"):
        model.prepare(_tiny())


# -- ml-100k -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ml(movielens_wh):
    return load(movielens_wh, latest_day(movielens_wh), "loo")


def test_session_graph_matches_one_built_by_hand_from_the_source(ml, data_dir):
    """A user's session graph from the ETL's sequences equals one built by hand from u.data."""
    import duckdb

    raw = np.loadtxt(data_dir("ml-100k") / "u.data", dtype=np.int64)
    vocab = dict(duckdb.sql(f"SELECT item_id, item_idx FROM read_parquet('{ml.side.root}/vocab/items/*/*.parquet')")
                 .fetchall())
    # users whose first K ratings have distinct timestamps (and the K+1-th a later one): their
    # order needs no tie-breaking (ml-100k has 12 such users for K = 10)
    K, checked = 10, 0
    order = np.lexsort((raw[:, 3], raw[:, 0]))
    raw = raw[order]
    for user in range(1, 944):
        rows = raw[raw[:, 0] == user]
        if len(np.unique(rows[:K + 1, 3])) < K + 1:
            continue
        items = [vocab[str(i)] for i in rows[:K, 1]]
        r = int(np.searchsorted(ml.users, duckdb.sql(
            f"SELECT user_idx FROM read_parquet('{ml.side.root}/vocab/users/*/*.parquet') WHERE user_id = '{user}'"
        ).fetchall()[0][0]))
        seq = ml.items[ml.offsets[r]:ml.offsets[r] + K]
        assert seq.tolist() == items
        node_item, edge_index, _ = session_graphs(torch.as_tensor(seq)[None], torch.tensor([K]), ml.n_items)
        assert sorted(node_item.tolist()) == sorted(set(items))
        assert _edges(edge_index, node_item) == set(zip(items[:-1], items[1:]))
        checked += 1
    assert checked >= 5


def test_lightgcn_graph_is_the_etl_user_item_table_without_held_out_events(ml):
    src, dst = training_graph(ml)
    pos = np.concatenate([np.arange(o, o + n) for o, n in zip(ml.offsets[:-1], ml.train_len)])
    rows = np.repeat(np.arange(len(ml.users)), ml.train_len)
    train_pairs = set(zip(ml.users[rows].tolist(), ml.items[pos].tolist()))
    assert set(zip(src.tolist(), dst.tolist())) == train_pairs  # ml-100k: one rating per (user, movie)
    for split in ("valid", "test"):
        sp = ml.splits[split]
        held = set(zip(ml.users[sp.rows].tolist(), sp.targets[:, 0].tolist()))
        assert not held & set(zip(src.tolist(), dst.tolist()))
    model = build(method_config("lightgcn"), ml.n_items, ml.user_vocab)
    model.prepare(ml)
    assert model.edge_index.shape == (2, 2 * len(src))  # sparse, both directions; no dense matrix


def _slice(ml: SequenceData, n: int = 300) -> SequenceData:
    return ml.take(np.arange(n))


@pytest.mark.parametrize("method,sets", [
    ("srgnn", ["model.dim=32", "model.max_len=20", "train.batch_size=256", "train.epochs=4", "train.lr=0.003"]),
    ("lightgcn", ["model.dim=32", "train.batch_size=1024", "train.epochs=20", "train.lr=0.01"]),
])
def test_smoke_training_beats_popularity(ml, tmp_path, method, sets):
    from models.trainer import train

    data = _slice(ml)
    pop = build(method_config("pop"), data.n_items)
    pop.prepare(data)
    pop_hr = evaluate(pop, data, "test").mean()[("hr", 10)]
    mc = method_config(method, sets=[*sets, "train.seed=1", "train.patience=100"])
    model = build(mc, data.n_items, data.user_vocab)
    result = train(model, data, mc, tmp_path / "models" / method / "v1", echo=lambda m: None, progress=False)
    assert result.log[-1]["loss"] < result.log[0]["loss"]
    hr = evaluate(model, data, "test").mean()[("hr", 10)]
    assert hr > pop_hr, (hr, pop_hr)
    assert (result.folder / "model.safetensors").is_file()


def test_lightgcn_bpr_negatives_avoid_the_users_training_items():
    from models.gnn import LightGCN

    model = LightGCN(50, LightGCN.Params(dim=4, num_layers=1), n_users=2)
    model._pairs = torch.tensor([[0, 1], [0, 2], [1, 3]])
    model._edge_keys = torch.sort(model._pairs[:, 0] * 51 + model._pairs[:, 1]).values
    users = torch.tensor([0] * 2000 + [1] * 2000)
    neg = model.negatives(users, users.shape)
    assert not torch.isin(neg[:2000], torch.tensor([1, 2])).any() and not (neg[2000:] == 3).any()
    assert neg.min() >= 1 and neg.max() <= 50 and len(neg.unique()) > 40  # still uniform over the rest


def test_lightgcn_same_domain_negatives_come_from_the_positives_domain():
    """On a pair's joint graph (``candidates``: the target's items 1..20 of 50), a target positive
    gets target negatives and a source positive source ones, still never a training item."""
    from models.gnn import LightGCN

    model = LightGCN(50, LightGCN.Params(dim=4, num_layers=1, same_domain_negatives=True), n_users=2)
    model._pairs = torch.tensor([[0, 1], [0, 30], [1, 2]])
    model._edge_keys = torch.sort(model._pairs[:, 0] * 51 + model._pairs[:, 1]).values
    target = torch.zeros(51, dtype=torch.bool)
    target[1:21] = True
    model._domains = (target, torch.nonzero(target).flatten(), torch.nonzero(~target).flatten()[1:])
    users = torch.tensor([0] * 2000 + [1] * 2000)
    pos = torch.tensor([1] * 1000 + [30] * 1000 + [2] * 2000)
    neg = model.negatives(users, users.shape, pos=pos)
    assert bool(target[neg[:1000]].all()) and not bool(target[neg[1000:2000]].any()) and bool(target[neg[2000:]].all())
    assert not torch.isin(neg[:2000], torch.tensor([1, 30])).any() and not (neg[2000:] == 2).any()
    assert neg.min() >= 1 and len(neg[1000:2000].unique()) > 25  # uniform over the source's 30 items less one
    assert len(model.negatives(users, users.shape).unique()) > 40  # without pos: every item
