"""Item vectors from the user's own encoders: checked at ingest, read as of a day, fused by
``sasrec_text`` (``models/multimodal.py``) and run through the CLI on synthetic logs.

The ingest cases write crafted items files; the side read a crafted warehouse (vocab/items and
items/source=S Parquet, the ETL's layout); the fusion runs on a SideData in memory.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from models.data import DataError, SequenceData
from models.registry import build, method_config
from pipelines.core.config import load_config
from pipelines.etl import ingest
from pipelines.etl.ingest import InputError
from pipelines.modeling.data import item_vectors

D = date(2024, 3, 1)
T0 = 1709251200000  # 2024-03-01 00:00:00 UTC in ms
MAPPING = {"user_id": "uid", "item_id": "sku", "event_type": "action", "ts": "t"}
NAN, INF = float("nan"), float("inf")


def _items_file(path: Path, ids: list[str], vecs: list | None, column: str = "emb",
                typ: pa.DataType = pa.list_(pa.float32())) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = {"sku": pa.array(ids, pa.string()), "name": pa.array([f"T{i}" for i in ids], pa.string())}
    if vecs is not None:
        cols[column] = pa.array(vecs, typ)
    pq.write_table(pa.table(cols), path)
    return path


def _ingest(spark, cfg, tmp_path: Path, files: dict[str, tuple[list[str], list | None]], **over):
    """Ingest a two-event log with the items files ``files`` (file name -> ids, vectors)."""
    logs = tmp_path / "logs" / "a.parquet"
    logs.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"uid": ["u", "u"], "sku": ["i1", "i2"], "action": ["view", "view"],
                             "t": [T0 + 1000, T0 + 2000]}), logs)
    for name, (ids, vecs) in files.items():
        _items_file(tmp_path / "items" / name, ids, vecs)
    cfg = cfg.with_overrides(ingest={"source": "parquet", "columns": MAPPING, "ts_unit": "ms",
                                     "items": str(tmp_path / "items"), "item_vectors": ["image_vec"],
                                     "item_columns": {"item_id": "sku", "title": "name", "image_vec": "emb"}, **over})
    return cfg, ingest.run(spark, cfg, input_path=logs.parent, domain="shop")


def test_vectors_reach_the_items_table_and_nulls_are_counted_in_the_manifest(spark, cfg, tmp_path):
    files = {"a.parquet": (["i1", "i2", "i3"], [[1, 0, 0, 0], None, [0.5, 0.5, 0, 0]]),
             "b.parquet": (["i4", "i5"], [None, [0, 0, 0, 2]])}
    cfg, m = _ingest(spark, cfg, tmp_path, files)
    assert m["items"] == 5 and m["item_vectors"] == {"image_vec": {"dim": 4, "rows": 5, "missing": 2}}
    table = pq.read_table(Path(cfg.warehouse) / "items" / "source=parquet")
    assert table.schema.field("image_vec").type == pa.list_(pa.float32())  # Spark's array<float>
    got = dict(zip(table.column("item_id").to_pylist(), table.column("image_vec").to_pylist()))
    assert got == {"i1": [1, 0, 0, 0], "i2": None, "i3": [0.5, 0.5, 0, 0], "i4": None, "i5": [0, 0, 0, 2]}


@pytest.mark.parametrize("case, files, message", [
    ("wrong size in one row", {"a.parquet": (["i1", "i2"], [[1, 2, 3, 4], [1, 2, 3, 4]]),
                               "b.parquet": (["i3", "i4"], [[1, 2, 3, 4], [1, 2, 3]])},
     r"column 'emb' \(item vector 'image_vec'\): .*b.parquet row 1 \(item_id 'i4'\) has 3 numbers, "
     r"but the vector of .*a.parquet row 0 \(item_id 'i1'\) has 4"),
    ("NaN", {"a.parquet": (["i1", "i2"], [[1, 2], [1, NAN]])}, r"'emb'.*a.parquet row 1 \(item_id 'i2'\) holds nan"),
    ("infinity", {"a.parquet": (["i1", "i2"], [[INF, 2], None])}, r"a.parquet row 0 \(item_id 'i1'\) holds inf"),
    ("a null number", {"a.parquet": (["i1"], [[1.0, None]])}, r"row 0 \(item_id 'i1'\) holds None"),
    ("an empty vector", {"a.parquet": (["i1", "i2"], [[1.0], []])}, r"row 1 \(item_id 'i2'\) is an empty vector"),
    ("column missing in one file", {"a.parquet": (["i1"], [[1.0, 2.0]]), "b.parquet": (["i2"], None)},
     r"b.parquet has no column 'emb' \(mapped from 'image_vec'\)"),
])
def test_bad_vectors_are_input_errors_naming_file_column_and_item(spark, cfg, tmp_path, case, files, message):
    with pytest.raises(InputError, match=message):
        _ingest(spark, cfg, tmp_path, files)


def test_other_vector_faults_are_clear(spark, cfg, tmp_path):
    _items_file(tmp_path / "strings" / "items.parquet", ["i1"], ["not a vector"], typ=pa.string())
    with pytest.raises(InputError, match="'emb'.* has type string; expected a list of numbers"):
        _ingest(spark, cfg, tmp_path / "s", {}, items=str(tmp_path / "strings"))
    with pytest.raises(InputError, match=r"lists \['image_vec'\], but this input carries no item vectors"):
        _ingest(spark, cfg, tmp_path / "n", {"a.parquet": (["i1"], [[1.0]])}, items=None)
    with pytest.raises(ValueError, match="item vector name 'title'"):
        load_config(warehouse=tmp_path / "wh").with_overrides(ingest={"item_vectors": ["title"]})


def test_fixed_size_lists_of_integers_are_vectors_too(spark, cfg, tmp_path):
    ids = ["i1", "i2"]
    _items_file(tmp_path / "fixed" / "items.parquet", ids, [[1, 2, 3], None], typ=pa.list_(pa.int16(), 3))
    cfg, m = _ingest(spark, cfg, tmp_path / "f", {}, items=str(tmp_path / "fixed"))
    assert m["item_vectors"]["image_vec"] == {"dim": 3, "rows": 2, "missing": 1}


# -- the side read: vocab/items as of the day joined to items/source=* ---------------------------

DAY = date(2024, 1, 2)


def _warehouse(root: Path, b_dim: int = 2) -> Path:
    """Items x1..x5 in the vocabulary as of DAY (x6 after it). Source a: x1's vector, x2's null;
    source b: x1 (a comes first), x2 (a has none), x3, x6; source c: x4, without the column."""
    for dt, rows in ((date(2024, 1, 1), ["x1", "x2", "x3", "x4", "x5"]), (date(2024, 1, 3), ["x6"])):
        part = root / "vocab" / "items" / f"dt={dt}"
        part.mkdir(parents=True)
        first = 1 if dt.day == 1 else 6
        pq.write_table(pa.table({"item_idx": pa.array(range(first, first + len(rows)), pa.int32()),
                                 "domain": ["m"] * len(rows), "item_id": rows}), part / "part-0.parquet")

    def source(name: str, ids: list[str], vecs: list | None) -> None:
        folder = root / "items" / f"source={name}"
        folder.mkdir(parents=True)
        cols = {"domain": ["m"] * len(ids), "item_id": ids}
        if vecs is not None:
            cols["image_vec"] = pa.array(vecs, pa.list_(pa.float32()))
        pq.write_table(pa.table(cols), folder / "part-0.parquet")

    source("a", ["x1", "x2"], [[1.0, 0.0], None])
    source("b", ["x1", "x2", "x3", "x6"], [[9.0, 9.0], [0.0, 1.0], [0.5, 0.5] + [0.0] * (b_dim - 2), [3.0, 3.0]])
    source("c", ["x4"], None)
    return root


def test_side_read_takes_the_first_source_with_a_vector_as_of_the_day(tmp_path):
    x, has = item_vectors(_warehouse(tmp_path / "wh"), DAY, 5, "image_vec")
    assert x.dtype == np.float32 and x.shape == (6, 2)
    assert has.tolist() == [False, True, True, True, False, False]
    assert x.tolist() == [[0, 0], [1, 0], [0, 1], [0.5, 0.5], [0, 0], [0, 0]]  # a's x1 over b's; b's x2 where a has none
    with pytest.raises(DataError, match="no vector column 'video_vec'"):
        item_vectors(tmp_path / "wh", DAY, 5, "video_vec")


def test_side_read_refuses_two_lengths_across_sources(tmp_path):
    with pytest.raises(DataError, match=r"lengths \[2, 3\] across sources"):
        item_vectors(_warehouse(tmp_path / "wh", b_dim=3), DAY, 5, "image_vec")


# -- the fusion ------------------------------------------------------------------------------------

class MemorySide:
    """A SideData in memory: vectors of items 1..6 by category (1-3: A, 4-6: B); item 3 has none."""

    def __init__(self, dim: int = 4):
        a, b = np.eye(dim, dtype=np.float32)[0], np.eye(dim, dtype=np.float32)[1]
        self.x = np.stack([np.zeros(dim, np.float32), a, a, np.zeros(dim, np.float32), b, b, b * 3])
        self.has = np.array([False, True, True, False, True, True, True])

    def item_vectors(self, n_items: int, column: str) -> tuple[np.ndarray, np.ndarray]:
        assert column == "image_vec"
        return self.x[: n_items + 1].copy(), self.has[: n_items + 1].copy()


def _data(side) -> SequenceData:
    """Users over items 1, 2, 4, 5: items 3 and 6 are never trained on."""
    seqs = [[1, 2, 1, 2, 1], [4, 5, 4, 5], [1, 2, 4, 5]]
    items = np.array([i for s in seqs for i in s], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    return SequenceData(DAY, "loo", 6, np.arange(3), offsets, items, np.diff(offsets), {}, side)


def _model(**model):
    mc = method_config("sasrec_text", {"model": {"dim": 8, "num_heads": 2, "num_layers": 1, "max_len": 6,
                                                 "modalities": ["image_vec"], "vector_dims": {"image_vec": 4}, **model}})
    return build(mc, 6)


def test_never_trained_items_get_a_vector_from_their_content():
    torch.manual_seed(0)
    model = _model()
    model.prepare(_data(MemorySide()))
    x, has = model.item_emb.content("image_vec")
    assert torch.allclose(x[6], x[5]) and has.tolist() == [False, True, True, False, True, True, True]  # unit norm
    optim = torch.optim.Adam(model.parameters(), lr=0.01)
    examples = model.training_examples(_data(MemorySide()))
    for _ in range(30):
        optim.zero_grad()
        model.loss(examples).backward()
        optim.step()
    model.eval()
    v, e = model.item_embeddings().detach(), model.item_emb.weight.detach()
    g = model.item_emb.gates().detach()  # [7, 2, 8]: the ID's share, the vector's
    assert torch.allclose(g.sum(1), torch.ones(7, 8)) and (g[[0, 3], 1] == 0).all()
    assert torch.equal(v[3], e[3]) and not v[0].any()  # no vector: the ID embedding; padding: zeros
    content = model.item_emb.proj_image_vec(x[6])
    assert content.norm() > 0 and (g[6, 1] > 0).all()  # item 6, never trained, has its content's share
    assert torch.allclose(v[6], g[6, 0] * e[6] + g[6, 1] * content, atol=1e-6)


def test_two_modalities_share_one_softmax_gate(tmp_path):
    from test_multimodal import tiny_data, write_warehouse  # the text warehouse, items 1..6

    wh = write_warehouse(tmp_path / "wh")
    vectors = tmp_path / "wh" / "items" / "source=vec"
    vectors.mkdir()
    pq.write_table(pa.table({"domain": ["m", "m"], "item_id": ["a", "d"],
                             "image_vec": pa.array([[1.0, 0, 0, 0], [0, 2.0, 0, 0]], pa.list_(pa.float32()))}),
                   vectors / "part-0.parquet")
    model = _model(modalities=["text", "image_vec"], text_dim=4)
    model.prepare(tiny_data(wh))
    g = model.item_emb.gates().detach()
    assert g.shape == (7, 3, 8) and torch.allclose(g.sum(1), torch.ones(7, 8))
    has_text, has_vec = model.item_emb.has_text, model.item_emb.has_image_vec
    assert has_vec.tolist() == [False, True, False, False, True, False, False]
    assert (g[~has_text, 1] == 0).all() and (g[~has_vec, 2] == 0).all() and (g[1, 1:] > 0).all()


def test_vector_sizes_are_checked_against_the_data_and_the_config():
    with pytest.raises(DataError, match="has 4 numbers per item in the warehouse, but model.vector_dims.image_vec is 5"):
        _model(vector_dims={"image_vec": 5}).prepare(_data(MemorySide()))
    with pytest.raises(DataError, match="warehouse side"):
        _model().prepare(_data(None))
    with pytest.raises(Exception, match="vector_dims must give the size"):
        method_config("sasrec_text", {"model": {"modalities": ["text", "image_vec"]}}).params()


def test_saved_model_carries_its_vectors(tmp_path):
    from models.checkpoint import save_model, write_json
    from models.registry import load_folder

    model = _model()
    model.prepare(_data(MemorySide()))
    model.eval()
    save_model(model, tmp_path)
    write_json(tmp_path / "config.json", {"n_items": 6})
    again = load_folder(method_config("sasrec_text", {"model": {
        "dim": 8, "num_heads": 2, "num_layers": 1, "max_len": 6, "modalities": ["image_vec"],
        "vector_dims": {"image_vec": 4}}}), tmp_path)
    again.eval()
    history, lengths = torch.tensor([[1, 2, 4]]), torch.tensor([3])
    assert torch.equal(again.item_emb.x_image_vec, model.item_emb.x_image_vec)
    assert torch.allclose(again.full_scores(history, lengths), model.full_scores(history, lengths))


# -- the CLI on synthetic logs with vectors --------------------------------------------------------

TINY = {
    "ingest": {"source": "synthetic", "item_vectors": ["image_vec"]},
    "spark": {"shuffle_partitions": 2},
    "synthetic": {"days": 2, "events_per_day": 3000, "users": 150, "items_per_domain": 120,
                  "item_vector_dim": 8, "item_vector_missing": 0.2},
    "methods": {"sasrec_text": {"model": {"dim": 16, "num_layers": 1, "max_len": 20, "modalities": ["image_vec"],
                                          "vector_dims": {"image_vec": 8}},
                                "train": {"epochs": 2, "seed": 3}}},
}


def test_train_evaluate_infer_publish_with_vectors_through_the_cli(tmp_path):
    from pipelines.cli import main
    from pipelines.core.warehouse import Warehouse

    config = tmp_path / "vectors.yaml"
    config.write_text(json.dumps({**TINY, "warehouse": str(tmp_path / "wh")}))
    common = ["--config", str(config)]
    assert main(["generate", "--out", str(tmp_path / "logs"), *common]) == 0
    assert main(["ingest", "--input", str(tmp_path / "logs"), *common]) == 0
    wh = Warehouse(tmp_path / "wh")
    vec = wh.read_manifest("ingest", "source=synthetic")["item_vectors"]["image_vec"]
    assert vec["dim"] == 8 and vec["rows"] == 240 and 0 < vec["missing"] < 240
    assert main(["etl", "--all", *common]) == 0
    day = wh.partition_dates("sequences")[-1]
    for step in ("train", "evaluate", "infer", "publish"):
        assert main([step, "--method", "sasrec_text", "--date", str(day), *common]) == 0, step
    record = json.loads((tmp_path / f"wh/_manifests/stage=publish/model=sasrec_text/dt={day}.json").read_text())
    assert record["items"] > 0 and record["dim"] == 16
