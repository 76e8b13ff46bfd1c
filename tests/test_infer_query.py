"""Batch inference into embedding tables, the item index, and the query layer (SQL and neighbours).

Real data: ml-100k through the ETL (the session's ``movielens_wh``), a small SASRec trained by the
CLI as of an earlier day and as of the last day, ``seqrep infer``, then every query path.
Unit tests: the inner-product index (exact and HNSW) against numpy, the SQL guard, fold-in.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.core.config import EmbeddingsConfig

ROOT = Path(__file__).resolve().parent.parent
from conftest import EARLY, LAST  # noqa: E402  (the `published` fixture's days)


def _version(wh: Path, day: date = LAST, prefix: date = LAST) -> str:
    """The name of the sasrec version trained as of ``prefix``."""
    return next(p.name for p in (wh / "models/sasrec").glob(f"{prefix}-*") if not p.name.endswith(".partial"))


def _table(wh: Path, kind: str, version: str, day: date = LAST):
    """A version's embedding table of a day (``embeddings/{kind}/model=sasrec/dt=D/version=V``)."""
    return pq.read_table(wh / f"embeddings/{kind}/model=sasrec" / f"dt={day}" / f"version={version}")


def _vectors(table) -> np.ndarray:
    col = table.column("vector").combine_chunks()
    return col.values.to_numpy().reshape(len(table), col.type.list_size)


def test_one_row_per_active_user_and_item_with_source_ids(published, source):
    wh, _ = published
    users, items = _table(wh, "users", _version(wh)), _table(wh, "items", _version(wh))
    src_users, src_items = source
    # Every ml-100k user and item, exactly once, under its original id.
    assert sorted(users.column("user_id").to_pylist()) == sorted(set(src_users.tolist()))
    assert sorted(items.column("item_id").to_pylist()) == sorted(set(src_items.tolist()))
    ids, counts = np.unique(src_users, return_counts=True)
    n_events = dict(zip(users.column("user_id").to_pylist(), users.column("n_events").to_pylist()))
    assert all(n_events[u] == c for u, c in zip(ids, counts))  # the ratings behind each vector
    item_ids, item_counts = np.unique(src_items, return_counts=True)
    item_events = dict(zip(items.column("item_id").to_pylist(), items.column("n_events").to_pylist()))
    assert all(item_events[i] == c for i, c in zip(item_ids, item_counts))
    assert set(users.column("dim").to_pylist()) == {16} and _vectors(users).shape == (943, 16)
    assert np.isfinite(_vectors(items)).all() and not users.column("fold_in").to_numpy().any()
    assert set(users.column("model_version").to_pylist()) == {p.name for p in (wh / "models/sasrec").glob(f"{LAST}-*")
                                                               if (p / "config.json").read_text().count('"dim": 16')}


def test_another_version_lies_beside_until_published_and_folds_in_fresh_users(published):
    """``infer --version`` of a model trained on EARLY writes its tables beside the live ones (queries
    still read the published version), folds in users active after EARLY, and replaces only its own
    partition on a rerun; ``publish --version`` makes it live, and the last day's again after."""
    wh, common = published
    from pipelines.serving.query import Query

    live, early = _version(wh), _version(wh, prefix=EARLY)
    before = _table(wh, "users", live)
    for _ in range(2):  # a rerun replaces the version's partition
        assert main(["infer", "--method", "sasrec", "--date", str(LAST), "--version", early, *common]) == 0
    after = _table(wh, "users", early)
    assert len(list((wh / "embeddings/users/model=sasrec" / f"dt={LAST}" / f"version={early}").glob("*.parquet"))) == 1
    assert after.num_rows == before.num_rows and set(after.column("model_version").to_pylist()) == {early}
    with Query(wh) as q:
        assert q.user("196", "sasrec")["model_version"] == live  # not published: not live
        assert q.sql("SELECT DISTINCT model_version FROM user_embeddings").column(0).to_pylist() == [live]
        active_after = q.sql("SELECT user_id FROM sequences GROUP BY user_id HAVING max(dt) > ?", [EARLY]).column(0)
    fold = dict(zip(after.column("user_id").to_pylist(), after.column("fold_in").to_pylist()))
    assert {u for u, f in fold.items() if f} == set(active_after.to_pylist()) and 0 < len(active_after) < len(fold)
    assert _table(wh, "items", early).num_rows < 1682  # items first seen after EARLY have no vector in it
    assert main(["publish", "--method", "sasrec", "--date", str(LAST), "--version", early, *common]) == 0
    with Query(wh) as q:
        assert q.user("196", "sasrec")["model_version"] == early
        assert len(q.recommend("196", "sasrec", k=5)) == 5  # the index of the version now live
    assert main(["publish", "--method", "sasrec", "--date", str(LAST), "--version", live, *common]) == 0
    # A day before the model's own day is refused: no embedding may come from a model that saw later data.
    assert main(["infer", "--method", "sasrec", "--date", "1997-12-01", "--version", live, *common]) == 2


def test_similar_items_equals_brute_force(published):
    wh, _ = published
    from pipelines.serving.query import Query

    items = _table(wh, "items", _version(wh))
    v, ids = _vectors(items), items.column("item_id").to_pylist()
    with Query(wh) as q:
        for item in ("50", "1", "1682", "313"):
            got = q.similar_items(item, "sasrec", k=10)
            row = ids.index(item)
            scores = v @ v[row]
            scores[row] = -np.inf
            top = np.argsort(-scores, kind="stable")[:10]
            assert [r["item_id"] for r in got] == [ids[i] for i in top]
            np.testing.assert_allclose([r["score"] for r in got], scores[top], rtol=1e-5, atol=1e-5)


def test_recommend_equals_brute_force_over_the_unseen_items_at_an_earlier_day(published, data_dir, tmp_path):
    """``recommend`` at EARLY (the model trained as of EARLY, inferred and published for EARLY, in
    a copy: the other tests query one published day) against numpy: every item of that day's
    table scored by ``<u, v_i>``, the items the user rated up to the end of EARLY in ``u.data``
    itself removed, the top 100 by score."""
    import shutil
    from datetime import datetime, timezone

    from pipelines.serving.query import Query

    src, common = published
    wh = shutil.copytree(src, tmp_path / "wh", ignore=shutil.ignore_patterns("_locks"))
    common = ["--warehouse", str(wh), *common[2:]]  # the fixture's: --warehouse W --config C
    assert main(["infer", "--method", "sasrec", "--date", str(EARLY), *common]) == 0
    assert main(["publish", "--method", "sasrec", "--date", str(EARLY), *common]) == 0
    raw = np.loadtxt(data_dir("ml-100k") / "u.data", dtype=np.int64)
    before = raw[raw[:, 3] < datetime(EARLY.year, EARLY.month, EARLY.day, tzinfo=timezone.utc).timestamp() + 86400]
    active = sorted(set(before[:, 0].tolist()))
    items = _table(wh, "items", _version(wh, prefix=EARLY), EARLY)
    v, ids = _vectors(items), np.asarray(items.column("item_id").to_pylist())
    with Query(wh) as q:
        for user in map(str, active[::len(active) // 6][:6]):
            seen = {str(i) for i in before[before[:, 0] == int(user), 1]}
            scores = v @ np.asarray(q.user(user, "sasrec", EARLY)["vector"], np.float32)
            scores[np.isin(ids, list(seen))] = -np.inf
            top = np.argsort(-scores, kind="stable")[:100]
            got = q.recommend(user, "sasrec", k=100, day=EARLY)
            assert [r["item_id"] for r in got] == ids[top].tolist(), user
            np.testing.assert_allclose([r["score"] for r in got], scores[top], rtol=1e-5, atol=1e-5)
            assert all(r["dt"] == EARLY for r in got)


def test_recommend_never_returns_a_seen_item(published, source):
    wh, _ = published
    from pipelines.serving.query import Query

    src_users, src_items = source
    with Query(wh) as q:
        for user in ("196", "1", "405", "655", "13"):
            seen = set(src_items[src_users == user].tolist())
            got = q.recommend(user, "sasrec", k=100, day=LAST)
            assert len(got) == 100 and not seen & {r["item_id"] for r in got}
        near = q.similar_users("196", "sasrec", k=5, day=LAST)
        assert len(near) == 5 and "196" not in {r["user_id"] for r in near}


def test_recommend_with_recent_events_encodes_the_history_plus_the_request(published, source, capsys):
    """``recommend(recent=...)``: with no recent event the vector is the published one (the
    model as ``infer`` ran it); with some it is the published model's encoding of the user's
    ml-100k history (in time order) followed by them, against the model run by hand, and
    neither the history nor the request's items come back; unknown items and users have the
    documented outcomes (``pipelines/serving/session.py``)."""
    import torch

    from models.registry import load_version_folder
    from pipelines.core.errors import UsageError
    from pipelines.serving.query import Query

    wh, common = published
    src_users, src_items = source
    _, model = load_version_folder(wh / "models/sasrec" / _version(wh))
    items = _table(wh, "items", _version(wh))
    idx = dict(zip(items.column("item_id").to_pylist(), items.column("item_idx").to_pylist()))
    v = _vectors(items)
    with Query(wh) as q:
        for user in ("196", "13"):
            plain, now = q.recommend(user, "sasrec", k=20), q.recommend(user, "sasrec", k=20, recent=[])
            assert [r["item_id"] for r in now] == [r["item_id"] for r in plain]
            np.testing.assert_allclose([r["score"] for r in now], [r["score"] for r in plain], rtol=1e-5, atol=1e-5)
            assert (now[0]["history"], now[0]["recent"]) == (int((src_users == user).sum()), 0)
        seq = q.sql("SELECT item_idx FROM sequences WHERE user_id = '196' ORDER BY dt DESC LIMIT 1").column(0)[0].as_py()
        recent = [r["item_id"] for r in q.recommend("196", "sasrec", k=3)]  # three unseen items, "just clicked"
        got = q.recommend("196", "sasrec", k=50, recent=[*recent, "no-such-item"])
        history = torch.as_tensor([(seq + [idx[i] for i in recent])[-model.params.max_len:]])
        with torch.inference_mode():
            u = model.eval().encode(history, torch.as_tensor([history.size(1)])).numpy()[0]
        scores = v @ u
        scores[np.isin(items.column("item_id").to_numpy(zero_copy_only=False),
                       [*src_items[src_users == "196"].tolist(), *recent])] = -np.inf
        top = np.argsort(-scores, kind="stable")[:50]
        assert [r["item_id"] for r in got] == np.asarray(items.column("item_id").to_pylist())[top].tolist()
        np.testing.assert_allclose([r["score"] for r in got], scores[top], rtol=1e-4, atol=1e-4)
        assert (got[0]["recent"], got[0]["recent_unknown"]) == (3, ["no-such-item"])
        anonymous = q.recommend("a-new-visitor", "sasrec", k=5, recent=recent)  # a session with no stored history
        assert len(anonymous) == 5 and anonymous[0]["history"] == 0 and not set(recent) & {r["item_id"] for r in anonymous}
        with pytest.raises(UsageError, match="no events the sasrec model"):
            q.recommend("a-new-visitor", "sasrec", recent=["no-such-item"])
    assert main(["query", "recommend", "196", "--method", "sasrec", "--recent", ",".join(recent), "--k", "3",
                 *common]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the title wraps in a narrow terminal
    assert f"encoded now from {(src_users == '196').sum()} stored + 3 recent events" in out


def test_the_embeddings_gate_checks_the_tables_against_the_sequences_not_the_manifest(published, tmp_path):
    """A table that agrees with infer's manifest but not with the warehouse fails: a user left out
    (the manifest's count lowered to match), two items' ids swapped, a user's event count changed."""
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc

    from pipelines.core.config import load_config
    from pipelines.core.errors import GateFailed
    from pipelines.core.warehouse import Warehouse
    from pipelines.gates.registry import run_embeddings_gate

    src, _ = published
    version = _version(src)
    wh = Warehouse(shutil.copytree(src, tmp_path / "wh", ignore=shutil.ignore_patterns("_locks")))
    cfg = load_config(warehouse=wh.root)
    assert run_embeddings_gate(cfg, "sasrec", LAST, version, wh=wh).passed

    def tamper(kind: str, change) -> str:
        folder = wh.embeddings(kind, "sasrec", LAST, version)
        part = next(folder.glob("*.parquet"))
        good = pq.read_table(part)
        pq.write_table(change(good), part)
        try:
            with pytest.raises(GateFailed) as failed:
                run_embeddings_gate(cfg, "sasrec", LAST, version, wh=wh)
            return str(failed.value)
        finally:
            pq.write_table(good, part)

    manifest = wh.manifest_path("infer", wh.infer_key("sasrec", LAST, version))
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "users": record["users"] - 1}))
    msg = tamper("users", lambda t: t.slice(1))
    assert "embeddings/users: ExpectTableRowCountToEqual" in msg, msg
    manifest.write_text(json.dumps(record))

    def swap_two_items(t):
        ids = t.column("item_id").to_pylist()
        ids[0], ids[1] = ids[1], ids[0]
        return t.set_column(t.schema.get_field_index("item_id"), "item_id", pa.array(ids, t.schema.field("item_id").type))
    msg = tamper("items", swap_two_items)
    assert "embeddings/items: ExpectColumnValuesToBeInSet(column='as_in_the_warehouse'" in msg and "2 of" in msg, msg

    def one_more_event(t):
        n = pc.add(t.column("n_events"), pa.array([1] + [0] * (len(t) - 1), t.schema.field("n_events").type))
        return t.set_column(t.schema.get_field_index("n_events"), "n_events", n)
    msg = tamper("users", one_more_event)
    assert "embeddings/users: ExpectColumnValuesToBeInSet(column='as_in_the_warehouse'" in msg and "1 of" in msg, msg
    assert run_embeddings_gate(cfg, "sasrec", LAST, version, wh=wh).passed  # restored


def test_sql_is_read_only_and_confined_to_the_warehouse(published, tmp_path):
    wh, _ = published
    from pipelines.serving.query import Query, QueryError

    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    with Query(wh) as q:
        for bad in ("DROP VIEW events", f"COPY (SELECT 1) TO '{wh}/x.csv'", "ATTACH ':memory:' AS m",
                    "SET enable_external_access = true", "INSERT INTO events SELECT * FROM events",
                    f"SELECT * FROM read_csv('{outside}')", f"SELECT * FROM '{outside}'",
                    f"SELECT * FROM read_parquet('{wh}/../*/*.parquet')",
                    "SELECT * FROM events e, read_text('/etc/hostname') t", "SELECT 1; DROP VIEW events"):
            with pytest.raises(QueryError):
                q.sql(bad)
        # The connection is read-only and sandboxed underneath the guard, too.
        import duckdb

        with pytest.raises(duckdb.Error):
            q.con.execute("DROP VIEW events")
        with pytest.raises(duckdb.Error):
            q.con.execute(f"SELECT * FROM read_csv('{outside}')")
        assert q.sql("SELECT count(*) AS n FROM events").column("n").to_pylist() == [100_000]
        # Injection through an id is a value, never SQL.
        for evil in ("196' OR '1'='1", "196; DROP VIEW events; --", "x') UNION SELECT * FROM events --"):
            with pytest.raises(QueryError, match="no sasrec embedding"):
                q.user(evil, "sasrec")
            with pytest.raises(QueryError):
                q.similar_items(evil, "sasrec")
        assert q.sql("SELECT count(*) AS n FROM user_embeddings").column("n").to_pylist() == [943]
        with pytest.raises(QueryError, match="no published embeddings of method 'gru4rec'"):
            q.recommend("196", "gru4rec")
        with pytest.raises(QueryError, match="days: 1998-04-22"):
            q.user("196", "sasrec", "1998-01-01")
    assert not (wh / "x.csv").exists()


def test_readme_query_examples_run(published, capsys):
    """Every `seqrep ...` line of the README's "Query the embedding tables" section runs."""
    _, common = published
    text = (ROOT / "README.md").read_text()
    section = text.split("## Query the embedding tables", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
                for line in block.splitlines() if line.strip().startswith("seqrep ")]
    assert len(commands) >= 6, commands
    import shlex

    for command in commands:
        argv = shlex.split(command)[1:]
        if argv[0] == "train":
            continue  # trained by the fixture with a small config (the README's default is slower)
        assert main(argv + common) == 0, command
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long titles
    assert "items similar to 50" in out and '"rank": 5' in out and "users similar to 196" in out
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    assert python, "the section shows the Python API"
    wh = common[1]
    exec(compile(python[0].replace('"warehouse"', repr(wh)), "README.md", "exec"), {})


def test_spark_reads_the_embedding_tables(published, spark):
    """At scale, Spark reads the same tables: every version's, the live one named by the publish records."""
    wh, _ = published
    df = spark.read.parquet(str(wh / "embeddings/users"))
    live = spark.read.option("multiLine", True).json(str(wh / "_manifests/stage=publish/model=*/dt=*.json")).selectExpr(
        "method AS model", "CAST(asof AS DATE) AS dt", "model_version")
    assert df.join(live, ["model", "dt", "model_version"]).where("model = 'sasrec'").count() == 943
    assert set(df.columns) >= {"user_id", "vector", "model", "dt", "version", "fold_in"}


# -- unit ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,exact_max", [(3000, 10_000), (3000, 100)])
def test_index_search_is_inner_product_top_k(n, exact_max):
    from pipelines.serving.index import build_index

    rng = np.random.default_rng(0)
    v = (rng.normal(size=(n, 16)) * rng.uniform(0.2, 3.0, size=(n, 1))).astype(np.float32)
    ids = np.arange(1, n + 1) * 7
    index = build_index(v, ids, EmbeddingsConfig(exact_max_items=exact_max, hnsw_ef_search=256))
    assert index.kind == ("flat" if n <= exact_max else "hnsw")
    q = rng.normal(size=(50, 16)).astype(np.float32)
    scores, got = index.search(q, 10)
    truth = np.argsort(-(q @ v.T), axis=1)[:, :10]
    recall = np.mean([len(set(g) & set(ids[t])) / 10 for g, t in zip(got, truth)])
    assert recall == 1.0 if index.kind == "flat" else recall >= 0.95
    np.testing.assert_allclose(scores, np.take_along_axis(q @ v.T, np.searchsorted(ids, got) , 1), rtol=1e-4, atol=1e-4)


def test_lightgcn_folds_in_from_the_history():
    import torch

    from models.gnn import LightGCN

    model = LightGCN(5, LightGCN.Params(dim=4, num_layers=1), n_users=3)
    history = torch.tensor([[1, 3, 0], [2, 0, 0]])
    items = model.item_embeddings().detach()
    got = model.fold_in(history, torch.tensor([2, 1]), torch.tensor([7, 8]))
    torch.testing.assert_close(got, torch.stack([(items[1] + items[3]) / 2, items[2]]))


def test_encode_users_splits_fold_in_rows():
    import torch

    from models.data import SequenceData
    from models.infer import encode_users, restrict_items
    from models.transformer import SASRec

    torch.manual_seed(0)
    model = SASRec(6, SASRec.Params(dim=8, max_len=4, num_layers=1, num_heads=1))
    data = SequenceData(LAST, "loo", 8, np.array([1, 2, 3]), np.array([0, 3, 5, 9]),
                        np.array([1, 2, 7, 3, 4, 5, 8, 6, 1]), np.array([3, 2, 4]))
    small, dropped = restrict_items(data, 6)  # items 7 and 8 are unknown to a model of 6 items
    assert dropped == 2 and small.items.tolist() == [1, 2, 3, 4, 5, 6, 1] and small.offsets.tolist() == [0, 2, 4, 7]
    rows = np.arange(3)
    plain = encode_users(model, small, rows)
    mixed = encode_users(model, small, rows, np.array([False, True, False]), batch_size=2)
    np.testing.assert_allclose(plain, mixed, rtol=1e-5, atol=1e-6)  # fold-in of a sequence model is encode


@pytest.mark.parametrize("layers", [1, 2])
def test_sasrec_encode_computes_the_last_position_only(layers):
    """SASRec's inference path (last layer for the last query) gives the full stack's vector."""
    import torch

    from models.transformer import SASRec

    torch.manual_seed(layers)
    model = SASRec(50, SASRec.Params(dim=16, max_len=8, num_layers=layers, num_heads=2)).eval()
    lengths = torch.tensor([1, 3, 8, 5, 2])
    history = torch.randint(1, 51, (5, 8)).masked_fill(torch.arange(8)[None] >= lengths[:, None], 0)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(history, lengths), model.hidden(history)[torch.arange(5), lengths - 1],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_encode_cuts_trailing_padding_exactly(name):
    """A batch whose longest history is shorter than max_len runs over that many positions only;
    the vectors are the full-width stack's."""
    import torch

    from models.registry import get_method

    torch.manual_seed(0)
    cls = get_method(name)
    model = cls(50, cls.Params(dim=16, max_len=10, num_layers=2)).eval()
    lengths = torch.tensor([1, 4, 6, 3])  # longest 6 < max_len 10: positions 6..9 are cut
    history = torch.randint(1, 51, (4, 10)).masked_fill(torch.arange(10)[None] >= lengths[:, None], 0)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(history, lengths), model.hidden(history)[torch.arange(4), lengths - 1],
                                   rtol=1e-5, atol=1e-5)


def test_encode_users_batches_by_length_and_keeps_row_order():
    """encode_users groups users of similar lengths into batches; each vector still lands on its row."""
    import torch

    from models.data import SequenceData
    from models.infer import encode_users
    from models.transformer import SASRec

    torch.manual_seed(0)
    model = SASRec(9, SASRec.Params(dim=8, max_len=4, num_layers=2, num_heads=2)).eval()
    lengths = np.array([5, 1, 3, 2, 4, 1])  # 5 > max_len: the last 4 events
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = np.random.default_rng(0).integers(1, 10, offsets[-1])
    data = SequenceData(LAST, "loo", 9, np.arange(6), offsets, items, lengths)
    rows = np.array([4, 0, 5, 2, 1, 3])
    got = encode_users(model, data, rows, batch_size=2)
    with torch.no_grad():
        for i, r in enumerate(rows):
            h = items[max(offsets[r], offsets[r + 1] - 4):offsets[r + 1]]
            want = model.hidden(torch.as_tensor(h)[None])[0, -1].numpy()
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-5)


def test_sasrec_compiled_encoder_gives_the_eager_vectors():
    """``compile_encode`` (what ``seqrep infer`` does from ``embeddings.compile_min_users`` users):
    SASRec's compiled path gives the eager vectors; methods without one say so."""
    import copy

    import torch
    from torch._dynamo.utils import counters

    from models.data import SequenceData
    from models.infer import encode_users
    from models.rnn import GRU4Rec
    from models.transformer import BERT4Rec, SASRec

    torch.manual_seed(0)
    model = SASRec(30, SASRec.Params(dim=16, max_len=8, num_layers=2, num_heads=2)).eval()
    twin = copy.deepcopy(model)
    assert twin.compile_encode()
    assert not BERT4Rec(30, BERT4Rec.Params(dim=16, max_len=8)).compile_encode()
    assert not GRU4Rec(30, GRU4Rec.Params(dim=16, max_len=8)).compile_encode()
    lengths = np.array([9, 1, 3, 2, 8, 5, 7, 4, 6, 2])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = np.random.default_rng(1).integers(1, 31, offsets[-1])
    data = SequenceData(LAST, "loo", 30, np.arange(10), offsets, items, lengths)
    rows = np.arange(10)
    compiled_before = counters["stats"]["unique_graphs"]
    got = encode_users(twin, data, rows, batch_size=4)
    assert counters["stats"]["unique_graphs"] > compiled_before, "nothing was compiled"
    np.testing.assert_allclose(got, encode_users(model, data, rows, batch_size=4), rtol=1e-4, atol=1e-5)
