"""Vocabularies, sequences, splits and graphs on crafted sessions."""

from __future__ import annotations

from datetime import date

import pytest
from conftest import events_df

from pipelines.etl import graphs, sequences, sessionize
from pipelines.etl.spark import write_daily
from pipelines.core.warehouse import Warehouse, WarehouseError

D1, D2, D3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)

EVENTS = [
    {"user_id": "u1", "item_id": "A", "ts": "2024-01-01 10:00:00", "event_id": "1"},
    {"user_id": "u1", "item_id": "B", "ts": "2024-01-01 10:01:00", "event_id": "2"},
    {"user_id": "u1", "item_id": "B", "ts": "2024-01-01 10:02:00", "event_id": "3", "event_type": "cart"},
    {"user_id": "u2", "item_id": "B", "ts": "2024-01-01 11:00:00", "event_id": "4"},
    {"user_id": "u1", "item_id": "C", "ts": "2024-01-02 09:00:00", "event_id": "5", "event_type": "buy"},
    {"user_id": "u3", "item_id": "D", "ts": "2024-01-02 09:00:00", "event_id": "6"},
    {"user_id": "u3", "item_id": "A", "ts": "2024-01-02 09:00:00", "event_id": "7"},
]


def _etl(spark, cfg, rows, days, step_days=False):
    wh = Warehouse(cfg.warehouse)
    write_daily(events_df(spark, rows), wh, "clean/events", days)
    for chunk in ([[d] for d in days] if step_days else [days]):
        sessionize.run(spark, cfg, chunk)
        sequences.run(spark, cfg, chunk)
        graphs.run(spark, cfg, chunk)
    return wh


def _table(spark, wh, name, d):
    return spark.read.parquet(str(wh.partition(name, d)))


def test_vocabulary_is_append_only_in_order_of_first_appearance(spark, cfg):
    wh = _etl(spark, cfg, EVENTS, [D1, D2, D3])
    items = {(r.dt, r.item_id): r.item_idx for r in spark.read.parquet(str(wh.table("vocab/items"))).collect()}
    assert items == {(D1, "A"): 1, (D1, "B"): 2, (D2, "C"): 3, (D2, "D"): 4}, "D before A? no: A is known; ties by event id"
    users = {r.user_id: r.user_idx for r in spark.read.parquet(str(wh.table("vocab/users"))).collect()}
    assert users == {"u1": 1, "u2": 2, "u3": 3}
    assert _table(spark, wh, "vocab/items", D3).count() == 0


def test_a_day_holds_its_active_users_full_histories(spark, cfg):
    wh = _etl(spark, cfg, EVENTS, [D1, D2, D3])
    s2 = {r.user_id: r for r in _table(spark, wh, "sequences", D2).collect()}
    assert set(s2) == {"u1", "u3"}, "u2 was not active on day 2"
    assert s2["u1"].item_idx == [1, 2, 2, 3] and s2["u1"].event_type == ["view", "view", "cart", "buy"]
    assert (s2["u1"].length, s2["u1"].n_events, s2["u1"].n_new) == (4, 4, 1)
    assert s2["u3"].item_idx == [4, 1], "equal times: ordered by event id"
    assert _table(spark, wh, "sequences", D3).count() == 0


def test_sequences_as_of_a_day_with_duckdb(spark, cfg):
    import duckdb

    from pipelines.core.sqlfiles import duckdb_sql

    wh = _etl(spark, cfg, EVENTS, [D1, D2, D3])
    con = duckdb.connect()
    con.execute(f"CREATE VIEW sequences AS SELECT * FROM read_parquet('{wh.table('sequences')}/*/*.parquet', hive_partitioning=true)")
    rows = con.execute(duckdb_sql("sequences_asof"), {"asof": D3}).fetchall()
    cols = [d[0] for d in con.description]
    asof = {r[cols.index("user_id")]: r for r in rows}
    assert set(asof) == {"u1", "u2", "u3"}
    assert list(asof["u2"][cols.index("item_idx")]) == [2] and asof["u2"][cols.index("dt")] == D1


def test_max_length_keeps_the_latest_events_and_counts_all(spark, cfg):
    cfg = cfg.with_overrides(sequences={"max_length": 3})
    wh = _etl(spark, cfg, EVENTS, [D1, D2])
    u1 = [r for r in _table(spark, wh, "sequences", D2).collect() if r.user_id == "u1"][0]
    assert u1.item_idx == [2, 2, 3] and u1.length == 3 and u1.n_events == 4


def test_splits(spark, cfg):
    wh = _etl(spark, cfg, EVENTS, [D1, D2])
    rows = {(r.user_idx, r.protocol, r.split): (r.history_len, r.target_idx) for r in _table(spark, wh, "splits", D2).collect()}
    assert rows[(1, "loo", "test")] == (3, [3]) and rows[(1, "loo", "valid")] == (2, [2])
    assert rows[(1, "temporal", "test")] == (3, [3]) and rows[(1, "temporal", "valid")] == (2, [2])
    assert (2, "loo", "test") not in rows, "one event: nothing to hold out"
    assert (3, "temporal", "test") not in rows, "no history before the day"


def test_range_equals_day_by_day(spark, cfg, tmp_path):
    a = _etl(spark, cfg.with_overrides(warehouse=tmp_path / "a"), EVENTS, [D1, D2, D3])
    b = _etl(spark, cfg.with_overrides(warehouse=tmp_path / "b"), EVENTS, [D1, D2, D3], step_days=True)
    for stage in ("sessionize", "sequences", "graphs"):
        for d in (D1, D2, D3):
            ma, mb = (w.read_manifest(stage, f"dt={d}") for w in (a, b))
            assert ma["outputs"] == mb["outputs"], (stage, d)


def test_sequences_refuse_to_start_without_the_previous_day(spark, cfg):
    wh = Warehouse(cfg.warehouse)
    write_daily(events_df(spark, EVENTS), wh, "clean/events", [D1, D2])
    sessionize.run(spark, cfg, [D1, D2])
    with pytest.raises(WarehouseError, match="sequences of 2024-01-01 are missing"):
        sequences.run(spark, cfg, [D2])


def test_graph_edges_weights_and_midnight(spark, cfg):
    rows = EVENTS + [{"user_id": "u2", "item_id": "C", "ts": "2024-01-01 23:59:00", "event_id": "8"},
                     {"user_id": "u2", "item_id": "A", "ts": "2024-01-02 00:01:00", "event_id": "9", "event_type": "buy"}]
    wh = _etl(spark, cfg, rows, [D1, D2])
    t1 = {(r.src_idx, r.dst_idx): (r["count"], r.weight) for r in _table(spark, wh, "graphs/item_transitions", D1).collect()}
    # u1: A->B (view), B->B (self-loop, dropped); u2: B -> C is 12h59m apart: not a transition.
    assert t1 == {(1, 2): (1, 1.0)}
    t2 = {(r.src_idx, r.dst_idx): (r["count"], r.weight) for r in _table(spark, wh, "graphs/item_transitions", D2).collect()}
    c = 3
    assert t2[(c, 1)] == (1, 5.0), "C (day 1) -> A (day 2) in one session across midnight, weighted as a buy"
    ui = {(r.user_idx, r.item_idx): (r["count"], r.weight) for r in _table(spark, wh, "graphs/user_item", D1).collect()}
    assert ui[(1, 2)] == (2, 4.0), "u1-B: a view (1) and a cart (3)"
    nodes = {r.item_id: r for r in _table(spark, wh, "graphs/item_nodes", D1).collect()}
    assert nodes["B"].events == 3 and nodes["B"].users == 2 and nodes["A"].out_degree == 1


def test_self_loops_can_be_kept(spark, cfg):
    cfg = cfg.with_overrides(graphs={"drop_self_loops": False})
    wh = _etl(spark, cfg, EVENTS[:3], [D1])
    t1 = {(r.src_idx, r.dst_idx) for r in _table(spark, wh, "graphs/item_transitions", D1).collect()}
    assert t1 == {(1, 2), (2, 2)}
