"""``seqrep stream``: fresh events folded into live user vectors (Spark Structured Streaming).

Real data: the session's published ml-100k SASRec (``published``, as of 1998-04-22) and event
files landed for the next day, in a product's own Parquet layout (mapped by ``ingest.columns``).
The stream runs as ``seqrep stream`` processes, killed by pid at two points of a micro-batch and
restarted; then the same files go through the nightly path (ingest, ETL, ``infer --version``)
and the two sets of vectors are compared. Unit tests: the heartbeat check, clearing absorbed
batches at the day's edge, the trigger's syntax.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import LAST, SMALL
from pipelines.cli import main

NEXT = LAST + timedelta(days=1)
CONFIG = SMALL + """ingest:
  source: parquet
  domain: movies
  columns: {user_id: uid, item_id: iid, event_type: action, ts: at, event_id: eid}
  ts_unit: ms
stream:
  trigger_s: 1
  max_files_per_trigger: 2
"""


def _ms(day: date, seconds: int) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() + seconds) * 1000


def _land(folder: Path, name: str, rows: list[tuple]) -> None:
    """One file, written aside and renamed in (a stream reads only whole files)."""
    uid, iid, action, at, eid = zip(*rows)
    table = pa.table({"uid": pa.array(uid, pa.string()), "iid": pa.array(iid, pa.string()),
                      "action": pa.array(action, pa.string()), "at": pa.array(at, pa.int64()),
                      "eid": pa.array(eid, pa.string())})
    tmp = folder.parent / f".{name}"
    pq.write_table(table, tmp)
    os.replace(tmp, folder / name)


def _files(source) -> dict[str, list[tuple]]:
    """Six files for the day after the published one: ml-100k users on items they have not rated,
    an unseen user, an item the model has never seen, and one row for each of the rules."""
    users, items = source
    rng = np.random.default_rng(0)
    known = sorted(set(items.tolist()), key=int)
    files: dict[str, list[tuple]] = {}
    n = 0
    for f in range(6):
        rows = []
        for u in ("1", "13", "196", "405", "655"):
            for _ in range(4):
                item = str(rng.choice(known))
                rows.append((u, item, "rate", _ms(NEXT, 60 * n), f"e{n}"))
                n += 1
        files[f"part-{f}.parquet"] = rows
    files["part-0.parquet"] += [("visitor-1", known[0], "rate", _ms(NEXT, 10), "v1"),
                                ("visitor-1", known[1], "rate", _ms(NEXT, 20), "v2"),
                                ("1", "no-such-item", "rate", _ms(NEXT, 30), "u1")]
    files["part-1.parquet"] += [(None, known[0], "rate", _ms(NEXT, 40), "bad-null"),
                                ("13", known[0], "teleport", _ms(NEXT, 50), "bad-type"),
                                ("13", known[2], "rate", _ms(LAST - timedelta(days=2), 0), "bad-late")]
    files["part-4.parquet"] += [files["part-0.parquet"][0]]  # the same event again, two batches later
    return files


@pytest.fixture(scope="module")
def streamed(published, source, tmp_path_factory):
    """The published warehouse copied, six files landed, and the stream run three times: killed
    (SIGKILL, by pid, through ``SEQREP_FAULT``) while staging the first micro-batch, killed again
    right after that batch's run committed (before Spark's checkpoint commits it), then to the end."""
    src, _ = published
    root = tmp_path_factory.mktemp("stream")
    wh = shutil.copytree(src, root / "wh", ignore=shutil.ignore_patterns("_locks"))
    (root / "cfg.yaml").write_text(CONFIG)
    landing = root / "landing"
    landing.mkdir()
    files = _files(source)
    for name, rows in files.items():
        _land(landing, name, rows)
    cmd = [sys.executable, "-m", "pipelines.cli", "stream", "--method", "sasrec", "--warehouse", str(wh),
           "--config", str(root / "cfg.yaml"), "--landing", str(landing), "--stop-when-idle", "3"]
    runs = []
    for fault in ("stage:live/events/model=sasrec", "commit:0", None):
        env = {k: v for k, v in os.environ.items() if k != "SEQREP_FAULT"}
        if fault:
            env["SEQREP_FAULT"] = fault
        runs.append(subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300))
    return wh, root, files, runs


def _live(wh: Path, table: str):
    return pq.read_table(wh / table / "model=sasrec").to_pandas()


def test_a_killed_stream_restarts_and_counts_every_landed_event_once(streamed):
    wh, root, files, runs = streamed
    assert [r.returncode for r in runs] == [-9, -9, 0], [r.stderr[-2000:] for r in runs]
    assert "micro-batches" in runs[2].stdout
    events, quarantine = _live(wh, "live/events"), _live(wh, "live/quarantine")
    landed = [row for rows in files.values() for row in rows]
    assert len(events) + len(quarantine) == len(landed)  # none lost, none doubled
    assert events["event_id"].is_unique
    assert dict(quarantine["reason"].value_counts()) == {"null_id": 1, "unknown_event_type": 1, "late_arrival": 1,
                                                         "duplicate": 1}
    assert quarantine.loc[quarantine["reason"] == "duplicate", "event_id"].tolist() == ["e0"]
    manifests = sorted((wh / "_manifests/stage=stream/model=sasrec").glob("batch=*.json"))
    docs = [json.loads(p.read_text()) for p in manifests]
    assert len(docs) == 3 and all(d["rows_in"] == d["rows_out"] + d["rows_quarantined"] + d["rows_erased"] for d in docs)
    assert sum(d["rows_in"] for d in docs) == len(landed)
    # The unknown item is kept as an event without an index, and left out of the user's history.
    assert events.loc[events["item_id"] == "no-such-item", "item_idx"].isna().all()
    assert docs[0]["events_on_items_unknown_to_the_model"] == 1
    beat = json.loads((wh / "live/heartbeat/model=sasrec.json").read_text())
    assert beat["state"] == "stopped" and beat["last_batch"] == 2


def test_live_vectors_equal_the_nightly_fold_in_and_queries_use_them(streamed, published):
    """The same files through ingest, ETL and ``infer --version`` (the published model, folding in
    the new day's histories) give the live vectors; queries read the live ones and say so, and a
    publish of the day clears them."""
    from pipelines.serving.query import Query

    wh, root, files, _ = streamed
    common = ["--warehouse", str(wh), "--config", str(root / "cfg.yaml")]
    with Query(wh) as q:
        version = q.live("sasrec", LAST)["model_version"]
        me = q.user("1", "sasrec")
        assert me["live"] and me["event_time"] >= datetime(NEXT.year, NEXT.month, NEXT.day, tzinfo=timezone.utc)
        assert q.user("1", "sasrec", day=LAST)["live"] is True  # the newest day is where live vectors apply
        new = q.user("visitor-1", "sasrec")
        assert new["live"] and new["user_idx"] is None
        live_items = {row[1] for rows in files.values() for row in rows if row[0] == "1"}
        got = q.recommend("1", "sasrec", k=100)
        assert all(r["live"] for r in got) and not live_items & {r["item_id"] for r in got}
        n_live = q.sql("SELECT count(*) AS n FROM user_embeddings_live").column(0)[0].as_py()
    assert n_live == 6  # five ml-100k users and the visitor

    assert main(["ingest", "--source", "parquet", "--input", str(root / "landing"), "--date", str(NEXT), *common]) == 0
    assert main(["etl", "--date", str(NEXT), "--no-gates", *common]) == 0
    assert main(["infer", "--method", "sasrec", "--date", str(NEXT), "--version", version, *common]) == 0
    batch = pq.read_table(wh / f"embeddings/users/model=sasrec/dt={NEXT}/version={version}").to_pandas()
    live = _live(wh, "embeddings/users_live")
    live = live.sort_values("batch").groupby("user_id").tail(1).set_index("user_id")
    batch = batch.set_index("user_id").loc[live.index]
    assert batch["fold_in"].all()
    np.testing.assert_allclose(np.stack(live["vector"]), np.stack(batch["vector"]), rtol=1e-4, atol=1e-5)

    assert main(["publish", "--method", "sasrec", "--date", str(NEXT), "--version", version, *common]) == 0
    assert not list((wh / "live/events/model=sasrec").glob("batch=*"))  # absorbed by the day's tables
    with Query(wh) as q:
        assert q.user("1", "sasrec")["live"] is False


# -- unit tests ------------------------------------------------------------------------------------

def test_clear_absorbed_keeps_a_batch_with_an_event_at_the_next_midnight(tmp_path):
    from pipelines.core.warehouse import Warehouse
    from pipelines.serving.live import batch_folder, clear_absorbed, day_end

    wh = Warehouse(tmp_path / "wh")
    day = date(2024, 1, 5)
    edge = day_end(day)
    for n, ts in enumerate([edge - timedelta(microseconds=1), edge, edge + timedelta(hours=3)]):
        for table in ("live/events", "live/quarantine", "embeddings/users_live"):
            folder = batch_folder(wh, table, "sasrec", n)
            folder.mkdir(parents=True)
            pq.write_table(pa.table({"ts": pa.array([ts], pa.timestamp("us", tz="UTC"))}), folder / "part-0.parquet")
    assert clear_absorbed(wh, "sasrec", day) == 1
    assert sorted(p.name for p in (wh.root / "live/events/model=sasrec").iterdir()) == ["batch=1", "batch=2"]
    assert not (wh.root / "embeddings/users_live/model=sasrec/batch=0").exists()
    assert clear_absorbed(wh, "sasrec", day + timedelta(days=1)) == 2


def test_the_heartbeat_check_fails_when_missing_old_or_stopped(tmp_path):
    from pipelines.core.warehouse import Warehouse
    from pipelines.serving.live import StreamStopped, check_heartbeat, heartbeat_path, write_heartbeat

    wh = Warehouse(tmp_path / "wh")
    check = ["stream", "--method", "sasrec", "--check", "--warehouse", str(wh.root), "--date", "2024-01-05"]
    with pytest.raises(StreamStopped, match="no heartbeat"):
        check_heartbeat(wh, "sasrec", 60)
    assert main(check) == 2  # the DAG's stream_heartbeat task fails
    write_heartbeat(wh, "sasrec", {"state": "running", "pid": 1, "host": "h", "last_batch": 4})
    assert check_heartbeat(wh, "sasrec", 60)["last_batch"] == 4
    assert main(check) == 0
    beat = json.loads(heartbeat_path(wh, "sasrec").read_text())
    heartbeat_path(wh, "sasrec").write_text(json.dumps({**beat, "unix": time.time() - 61}))
    with pytest.raises(StreamStopped, match="61s old"):
        check_heartbeat(wh, "sasrec", 60)
    write_heartbeat(wh, "sasrec", {"state": "stopped", "pid": 1, "last_batch": 4})
    with pytest.raises(StreamStopped, match="stopped"):
        check_heartbeat(wh, "sasrec", 60)


def test_live_state_orders_ties_by_event_id_and_a_rerun_replaces_its_batch():
    import pandas as pd

    from pipelines.streaming.stream import LiveState

    t = pd.Timestamp("2024-01-06", tz="UTC")
    ns = lambda x: x.value  # noqa: E731
    loaded = pd.DataFrame({"event_id": ["b", "a", "c", "d"], "user_id": ["u", "u", "u", "w"], "item_idx": [2, 1, None, 5],
                           "ts": [t, t, t + pd.Timedelta(seconds=1), t - pd.Timedelta(days=1)], "batch": [0, 0, 1, 0]})
    state = LiveState(loaded)
    # Same second: event id decides; item 0 (unknown to the model) is left out but dates the user.
    items, newest = state.since("u", ns(t))
    assert items.tolist() == [1, 2] and newest == ns(t + pd.Timedelta(seconds=1))
    assert state.since("w", ns(t))[0].tolist() == [] and state.since("nobody", 5)[0].size == 0
    assert state.users_since(ns(t)) == ["u"] and sorted(state.users_since(0)) == ["u", "w"]
    assert state.taken(["a", "c", "z"]).tolist() == [True, True, False]
    # Batch 1 is rerun after a restart: its events go, so they are neither duplicates nor history twice.
    state.drop(1)
    assert state.taken(["c"]).tolist() == [False]
    state.add(pd.DataFrame({"event_id": ["c"], "user_id": ["u"], "item_idx": [3],
                            "ts": [ns(t + pd.Timedelta(seconds=1))]}), batch=1)
    assert state.since("u", ns(t))[0].tolist() == [1, 2, 3]
    state.prune(ns(t + pd.Timedelta(seconds=1)))  # a publish of the day before t + 1s: the rest is in its tables
    assert state.since("u", 0)[0].tolist() == [3] and "w" not in state.by_user
    assert state.taken(["a", "c"]).tolist() == [False, True] and state.batches == {1}


def test_trigger_syntax():
    from pipelines.core.errors import ConfigError
    from pipelines.streaming.stream import parse_trigger

    assert (parse_trigger("2s"), parse_trigger("500ms"), parse_trigger(3)) == (2.0, 0.5, 3.0)
    with pytest.raises(ConfigError, match="seconds"):
        parse_trigger("soon")
