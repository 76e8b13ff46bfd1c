"""Multimodal items: text features (models/text.py) and SASRec fused with them (models/multimodal.py).

Unit tests run on a tiny warehouse written here (vocab/items + items/source=S Parquet, the ETL's
layout); one real-data test runs on ml-100k.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from models.data import DataError, SequenceData
from models.multimodal import TextSASRec
from models.registry import FAMILIES, METHODS, method_config
from models.registry import build
from models.text import item_text_features, tfidf_svd
from pipelines.modeling.data import WarehouseSide, item_documents

DAY = date(2024, 1, 2)

# item_idx -> (item_id, metadata or None). Items 2 and 5 share their words; 4 has no metadata row;
# 6 has a row whose fields are all empty; 7 enters the vocabulary after DAY.
ITEMS = {
    1: ("a", dict(title="Blue Train", category="jazz", tags=["jazz", "saxophone"], text="Coltrane hard bop")),
    2: ("b", dict(title="Rock Anthem", category="rock", tags=["rock", "guitar"], text="loud guitar rock")),
    3: ("c", dict(title="Kind of Blue", category="jazz", tags=["jazz", "trumpet"], text="modal jazz trumpet")),
    4: ("d", None),
    5: ("e", dict(title="Rock Anthem", category="rock", tags=["rock", "guitar"], text="loud guitar rock")),
    6: ("f", dict(title=None, category=None, tags=None, text=None)),
    7: ("g", dict(title="Late Jazz", category="jazz", tags=["jazz"], text="late jazz")),
}


def write_warehouse(root: Path) -> Path:
    """vocab/items (two days, rows in shuffled order) and items/source=test of ``ITEMS``."""
    order = [5, 3, 1, 6, 2, 4]  # not item_idx order: features must still come out by item_idx
    for dt, idxs in ((date(2024, 1, 1), order), (date(2024, 1, 3), [7])):
        part = root / "vocab" / "items" / f"dt={dt}"
        part.mkdir(parents=True)
        pq.write_table(pa.table({"item_idx": pa.array(idxs, pa.int32()), "domain": ["m"] * len(idxs),
                                 "item_id": [ITEMS[i][0] for i in idxs]}), part / "part-0.parquet")
    rows = [{"domain": "m", "item_id": item_id, "image_url": None, **meta}
            for item_id, meta in ITEMS.values() if meta is not None]
    src = root / "items" / "source=test"
    src.mkdir(parents=True)
    schema = pa.schema([("domain", pa.string()), ("item_id", pa.string()), ("title", pa.string()),
                        ("category", pa.string()), ("tags", pa.list_(pa.string())), ("text", pa.string()),
                        ("image_url", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema), src / "part-0.parquet")
    return root


@pytest.fixture
def wh(tmp_path) -> Path:
    return write_warehouse(tmp_path / "wh")


def tiny_data(wh: Path | None, n_items: int = 6) -> SequenceData:
    """Three users over items 1..n_items (every user trains on all their events)."""
    seqs = [[1, 3, 1, 3, 1], [2, 5, 2, 5], [1, 2, 3, 5, 6, 4]]
    items = np.array([i for s in seqs for i in s], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    return SequenceData(DAY, "loo", n_items, np.arange(3), offsets, items, np.diff(offsets), {},
                        WarehouseSide(wh, DAY) if wh else None)


def text_model(n_items: int = 6, **model) -> TextSASRec:
    mc = method_config("sasrec_text", {"model": {"dim": 16, "num_heads": 2, "num_layers": 1, "max_len": 8,
                                                 "text_dim": 4, **model}})
    return build(mc, n_items)


def test_documents_join_vocab_and_metadata_by_item_idx_as_of_the_day(wh):
    docs = item_documents(wh, DAY, 6)
    assert len(docs) == 7 and docs[0] == "" and docs[4] == "" and docs[6] == ""
    assert docs[1] == "Blue Train jazz jazz saxophone Coltrane hard bop"  # title, category, tags, text
    assert docs[2] == docs[5] and docs[3].startswith("Kind of Blue")
    assert item_documents(wh, DAY, 6, ["title"])[3] == "Kind of Blue"
    with pytest.raises(ValueError, match="text fields"):
        item_documents(wh, DAY, 6, ["price"])
    with pytest.raises(DataError, match="vocab/items"):
        item_documents(wh, date(2023, 12, 31), 6)


def test_features_deterministic_zero_rows_flags_and_row_order(wh):
    f, has = item_text_features(WarehouseSide(wh, DAY), 6, dim=8, min_df=1)
    f2, has2 = item_text_features(WarehouseSide(wh, DAY), 6, dim=8, min_df=1)
    assert f.shape == (7, 8) and f.dtype == np.float32
    assert np.array_equal(f, f2) and np.array_equal(has, has2)  # fixed random_state
    assert has.tolist() == [False, True, True, True, False, True, False]
    assert not f[[0, 4, 6]].any()  # padding and items without text: zeros
    assert np.allclose(np.linalg.norm(f[has], axis=1), 1.0, atol=1e-5)
    # Row i is item_idx i: the two identical documents (items 2 and 5) share a row; jazz is closer to jazz.
    assert np.allclose(f[2], f[5])
    cos = f @ f.T
    assert cos[1, 3] > cos[1, 2] and cos[1, 3] > cos[3, 5]
    # Fewer SVD components than asked (few terms): the extra columns are zeros, the shape holds.
    g, _ = item_text_features(WarehouseSide(wh, DAY), 6, dim=64, min_df=1)
    assert g.shape == (7, 64) and not g[:, 20:].any()


def test_tfidf_svd_errors_are_clear():
    with pytest.raises(DataError, match="too few"):
        tfidf_svd(["", "only one"], 4)
    with pytest.raises(DataError, match="min_df"):
        tfidf_svd(["alpha beta", "gamma delta", ""], 4, min_df=2)  # no shared term


def test_registry_and_prepare_fill_the_buffers_from_the_warehouse(wh):
    assert METHODS["sasrec_text"] is TextSASRec and FAMILIES["sasrec_text"] == "multimodal"
    model = text_model()
    model.prepare(tiny_data(wh))
    f, has = item_text_features(WarehouseSide(wh, DAY), 6, dim=4, min_df=2)
    assert torch.equal(model.item_emb.text, torch.as_tensor(f)) and model.item_emb.has_text.tolist() == has.tolist()
    with pytest.raises(DataError, match="warehouse"):
        text_model().prepare(tiny_data(None))


@pytest.mark.parametrize("fusion", ["gate", "concat"])
def test_fused_item_vectors_shapes_gate_and_padding(wh, fusion):
    torch.manual_seed(0)
    model = text_model(fusion=fusion)
    model.prepare(tiny_data(wh))
    items = model.item_embeddings()
    assert items.shape == (7, 16) and not items[0].any()  # row 0: padding
    e = model.item_emb.weight
    has = model.item_emb.has_text
    assert torch.equal(items[~has], e[~has])  # an item without text is its ID embedding
    assert not torch.allclose(items[has], e[has])
    # inputs and outputs read the same fused vectors
    idx = torch.tensor([[1, 4, 2, 0]])
    assert torch.allclose(model.item_emb(idx)[0], items[idx[0]])
    history, lengths = torch.tensor([[1, 3, 0, 0], [2, 5, 2, 0]]), torch.tensor([2, 3])
    model.eval()
    assert model.encode(history, lengths).shape == (2, 16)
    assert model.full_scores(history, lengths).shape == (2, 7)
    if fusion == "gate":
        g = model.item_emb.gate()
        assert g.shape == (7, 16)
        assert ((g[has] > 0) & (g[has] < 1)).all() and (g[~has] == 1).all()
    else:
        with pytest.raises(ValueError, match="gate"):
            model.item_emb.gate()
    # the text projection is trained through the loss
    model.train()
    model.loss(torch.tensor([[1, 3, 1, 3, 1, 0, 0, 0, 0], [2, 5, 2, 5, 0, 0, 0, 0, 0]])).backward()
    assert model.item_emb.proj.weight.grad.abs().sum() > 0


def test_set_text_checks_shape_and_padding():
    model = text_model()
    with pytest.raises(ValueError, match="expects"):
        model.item_emb.set_content("text", np.zeros((7, 5), np.float32), np.zeros(7, bool))
    bad = np.zeros((7, 4), np.float32)
    bad[0, 0] = 1.0
    with pytest.raises(ValueError, match="padding"):
        model.item_emb.set_content("text", bad, np.zeros(7, bool))


def test_saved_model_carries_its_text_features(wh, tmp_path):
    from models.checkpoint import load_model, save_model

    model = text_model()
    model.prepare(tiny_data(wh))
    model.eval()
    save_model(model, tmp_path)
    again = text_model()  # fresh: zero text buffers, other weights
    load_model(again, tmp_path)
    again.eval()
    history, lengths = torch.tensor([[1, 3, 2]]), torch.tensor([3])
    assert torch.equal(again.item_emb.text, model.item_emb.text)
    assert torch.allclose(again.full_scores(history, lengths), model.full_scores(history, lengths))


def test_ml100k_text_features_and_a_short_run_beat_popularity(movielens_wh, tmp_path):
    import duckdb

    from pipelines.modeling.data import latest_day, load
    from models.evaluate import evaluate
    from models.trainer import train

    data = load(movielens_wh, latest_day(movielens_wh), "loo")
    f, has = item_text_features(data.side, data.n_items, 64)
    assert f.shape == (1683, 64) and int(has.sum()) == 1682 and not f[0].any()
    # Row i is the movie of item_idx i: its document starts with that movie's title.
    docs = item_documents(movielens_wh, data.day, data.n_items)
    titles = dict(duckdb.sql(
        f"SELECT v.item_idx, i.title FROM read_parquet('{movielens_wh}/vocab/items/*/*.parquet') v "
        f"JOIN read_parquet('{movielens_wh}/items/*/*.parquet') i USING (domain, item_id)").fetchall())
    assert len(titles) == 1682 and all(docs[i].startswith(t) for i, t in titles.items())

    pop = build(method_config("pop"), data.n_items)
    pop.prepare(data)
    pop_hr = evaluate(pop, data, "test").mean()[("hr", 10)]
    mc = method_config("sasrec_text", {"model": {"dim": 32, "num_layers": 1, "max_len": 50},
                                       "train": {"epochs": 3, "batch_size": 64, "lr": 0.003, "seed": 1, "device": "cpu"}})
    model = build(mc, data.n_items, data.user_vocab)
    result = train(model, data, mc, tmp_path / "wh" / "models" / "sasrec_text" / "v", echo=lambda _: None)
    assert result.log[-1]["loss"] < result.log[0]["loss"]
    hr = evaluate(model, data, "test").mean()[("hr", 10)]
    assert hr > pop_hr, (hr, pop_hr)
