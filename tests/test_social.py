"""The social graph (issue 21): ingest of friends files, ``graphs/social`` and its quarantine and
gate, erasure of a user's edges, and the ``sasrec_social`` method on crafted cases."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from models.data import SequenceData
from models.errors import DataError
from models.social import SocialSASRec
from models.transformer import TransformerParams
from pipelines.cli import main
from pipelines.core.config import load_config
from pipelines.core.warehouse import Warehouse

BASE = date(2011, 5, 1)


def _lastfm_folder(tmp: Path) -> Path:
    """Five users' plays (users 1..5, user 6 never plays) and a friends file by hand."""
    src = tmp / "fm"
    src.mkdir()
    plays = ["userID\tartistID\tweight"] + [f"{u}\t{a}\t{10 * u + a}" for u in range(1, 6) for a in (51, 52, 50 + u)]
    (src / "user_artists.dat").write_text("\r\n".join(plays) + "\r\n")
    friends = ["userID\tfriendID",
               "1\t2", "2\t1",          # mutual friends, listed both ways
               "1\t3", "1\t3",          # a repeated line: one edge
               "3\t3",                  # self-loop
               "4\t6",                  # 6 has no events: not in the user vocabulary
               "9\t5",                  # 9 neither
               "5\t1", "\t2"]           # a blank user id
    (src / "user_friends.dat").write_text("\r\n".join(friends) + "\r\n")
    return src


@pytest.fixture(scope="module")
def lastfm_social(spark, tmp_path_factory):
    from conftest import all_raw_days

    from pipelines.etl import ingest
    from pipelines.nightly import etl

    tmp = tmp_path_factory.mktemp("social")
    cfg = load_config(None, warehouse=tmp / "wh")
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"synthetic_base_date": BASE})})
    manifest = ingest.run(spark, cfg, source="lastfm", input_path=_lastfm_folder(tmp))
    wh = Warehouse(cfg.warehouse)
    etl.run(spark, cfg, all_raw_days(wh), gates=False)  # the graphs gate runs in the tests below
    return wh, manifest, tmp


def _edges(wh: Warehouse) -> set[tuple[str, str]]:
    """graphs/social as (user_id, friend_id), through the user vocabulary."""
    return set(duckdb.sql(f"""
        SELECT u.user_id, f.user_id FROM read_parquet('{wh.root}/graphs/social/*/*.parquet') s
        JOIN read_parquet('{wh.root}/vocab/users/*/*.parquet') u ON u.user_idx = s.user_idx
        JOIN read_parquet('{wh.root}/vocab/users/*/*.parquet') f ON f.user_idx = s.friend_idx""").fetchall())


def test_the_social_table_of_a_five_user_friends_file_is_the_hand_built_one(spark, lastfm_social):
    from pipelines.gates.registry import run_gate

    wh, manifest, _ = lastfm_social
    assert manifest["social"]["rows_in"] == 9 and manifest["social"]["rows_out"] == 9
    assert _edges(wh) == {("1", "2"), ("2", "1"), ("1", "3"), ("5", "1")}
    (day,) = wh.partition_dates("graphs/social")
    assert day == BASE
    first = duckdb.sql(f"SELECT DISTINCT first_ts FROM read_parquet('{wh.root}/graphs/social/*/*.parquet')").fetchall()
    assert [r[0].date() for r in first] == [BASE]
    q = duckdb.sql(f"SELECT reason, user_id, friend_id FROM read_parquet('{wh.root}/quarantine/social/*/*.parquet') "
                   "ORDER BY reason").fetchall()
    assert q == [("null_id", None, "2"), ("self_loop", "3", "3"), ("unknown_friend", "4", "6"),
                 ("unknown_user", "9", "5")]
    graphs = wh.read_manifest("graphs", f"dt={BASE}")["social"]
    assert {k: graphs[k] for k in ("rows_in", "edges", "repeats", "rows_quarantined")} == \
        {"rows_in": 9, "edges": 4, "repeats": 1, "rows_quarantined": 4}
    assert graphs["quarantine_by_reason"] == {"null_id": 1, "self_loop": 1, "unknown_friend": 1, "unknown_user": 1}
    gate = run_gate(spark, load_config(None, warehouse=wh.root), "graphs", [BASE])
    assert not gate.failures and {o.frame for o in gate.outcomes} >= {"graphs/social", "graphs/social edges"}


def test_the_gate_fails_a_social_graph_with_a_self_loop_or_a_repeated_edge(spark, lastfm_social, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.gates.registry import run_gate

    wh, _, _ = lastfm_social
    copy = Warehouse(shutil.copytree(wh.root, tmp_path / "wh"))
    part = copy.partition("graphs/social", BASE)
    edges = pq.read_table(next(part.glob("*.parquet")))
    bad = pa.table({"user_idx": pa.array([2, 1], pa.int32()), "friend_idx": pa.array([2, 2], pa.int32()),
                    "first_ts": edges.column("first_ts").slice(0, 2)})
    pq.write_table(bad.cast(edges.schema), part / "part-bad.parquet")
    report = run_gate(spark, load_config(None, warehouse=copy.root), "graphs", [BASE], raise_on_failure=False)
    failed = {(o.frame, o.expectation) for o in report.outcomes if not o.success}
    assert failed == {("graphs/social", "ExpectColumnValuesToBeInSet"),
                      ("graphs/social edges", "ExpectColumnValuesToBeUnique")}


def test_a_later_day_adds_only_new_edges(spark, lastfm_social, tmp_path):
    """A nightly social file repeating yesterday's edges adds only the new ones (the union of
    the partitions is the graph); the run is idempotent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.etl import graphs

    wh, _, tmp = lastfm_social
    copy = tmp_path / "wh"
    import shutil

    shutil.copytree(wh.root, copy)
    cfg = load_config(None, warehouse=copy)
    day = date(2011, 5, 2)
    social = tmp_path / "social"
    social.mkdir()
    pq.write_table(pa.table({"user_id": ["1", "2", "4"], "friend_id": ["2", "5", "1"]}), social / "part.parquet")
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"source": "parquet", "social": str(social)})})
    from pipelines.etl import ingest

    events = tmp_path / "events"
    events.mkdir()
    pq.write_table(pa.table({"user_id": ["2"], "item_id": ["51"], "event_type": ["view"],
                             "ts": pa.array([1304294400], pa.int64())}), events / "e.parquet")
    m = ingest.run(spark, cfg, input_path=events, day=day)
    assert m["social"]["rows_out"] == 3
    from pipelines.nightly import etl

    etl.run(spark, cfg, [day], gates=True)
    for _ in range(2):  # and again: idempotent
        graphs.run(spark, cfg, [day])
        new = duckdb.sql(f"SELECT user_idx, friend_idx FROM read_parquet('{copy}/graphs/social/dt={day}/*.parquet')").fetchall()
        assert len(new) == 2, "1 -> 2 was seen on the day before"
    assert _edges(Warehouse(copy)) == {("1", "2"), ("2", "1"), ("1", "3"), ("5", "1"), ("2", "5"), ("4", "1")}


def test_forget_removes_the_users_edges_on_both_ends(lastfm_social, tmp_path, capsys):
    import shutil

    wh, _, _ = lastfm_social
    copy = shutil.copytree(wh.root, tmp_path / "wh", ignore=shutil.ignore_patterns("_locks", "_txn", "_staging"))
    assert main(["forget", "--user", "1", "--reason", "test", "--warehouse", str(copy)]) == 0
    assert _edges(Warehouse(copy)) == set(), "every edge had user 1 on one end"
    raw = duckdb.sql(f"SELECT count(*) FROM read_parquet('{copy}/raw/social/*/*/*.parquet') "
                     "WHERE user_id = '1' OR friend_id = '1'").fetchall()[0][0]
    assert raw == 0


class _Side:
    def __init__(self, users, friends):
        self.edges = (np.asarray(users), np.asarray(friends))

    def social_edges(self):
        return self.edges


def _data(side) -> SequenceData:
    # users 1, 2, 3 (user_idx), items 1..4; user 3 has friends 1 and 2, user 1 has friend 2.
    items = np.array([1, 2, 3, 3, 4, 1, 2], dtype=np.int64)
    offsets = np.array([0, 3, 5, 7])
    return SequenceData(None, "loo", 4, np.array([1, 2, 3]), offsets, items, np.array([3, 2, 1]), side=side)


def test_friend_vectors_are_the_mean_of_friends_mean_training_items():
    torch.manual_seed(0)
    model = SocialSASRec(4, TransformerParams(dim=8, max_len=4, num_layers=1, num_heads=1), n_users=4)
    model.prepare(_data(_Side([3, 3, 1], [1, 2, 2])))
    e = model.item_emb.weight.detach()
    x1, x2 = e[[1, 2, 3]].mean(0), e[[3, 4]].mean(0)  # users 1 and 2's training events
    with torch.no_grad():
        z = model.friend_vectors(torch.tensor([3, 1, 2, 7]))
    torch.testing.assert_close(z[0], model.social((x1 + x2) / 2).detach())
    torch.testing.assert_close(z[1], model.social(x2).detach())
    assert torch.equal(z[2], torch.zeros(8)) and torch.equal(z[3], torch.zeros(8)), "no friends / unknown user"
    model.eval()
    h = torch.tensor([[1, 2, 0, 0]])
    with torch.no_grad():
        plain = SocialSASRec.__mro__[1].encode(model, h, torch.tensor([2]), torch.tensor([2]))
        assert torch.equal(model.encode(h, torch.tensor([2]), torch.tensor([2])), plain), "u = h without friends"


def test_sasrec_social_trains_and_needs_a_social_graph():
    model = SocialSASRec(4, TransformerParams(dim=8, max_len=4, num_layers=1, num_heads=1), n_users=4)
    data = _data(_Side([3, 1], [1, 2]))
    with pytest.raises(DataError, match="social graph"):
        model.prepare(_data(None))
    model.prepare(data)
    ex = model.training_examples(data)
    assert ex.shape[1] == 6 and ex[:, -1].tolist() == [1, 2], "each window ends with its user_idx"
    assert model.count_targets(ex) == 3
    loss = model.loss(ex)
    loss.backward()
    assert torch.isfinite(loss) and model.social.weight.grad.abs().sum() > 0
