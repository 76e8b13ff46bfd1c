"""Reliability, tried as a hostile or unlucky user would: runs that commit as a whole (killed by pid
at every move of a commit, and while staging), one writer per warehouse, publish as the only way
a version goes live, bounded queries, and the row faults and file faults that once stopped a run.

One small synthetic warehouse (two days through the whole ETL, a tiny SASRec trained, inferred and
published) is shared by the module; every test that changes it works on a copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.core.config import SyntheticConfig, load_config
from pipelines.core.warehouse import Warehouse

D1, D2 = date(2024, 3, 1), date(2024, 3, 2)
SYN = SyntheticConfig(start_date=D1, days=2, events_per_day=2500, users=250, items_per_domain=120, seed=11)
SMALL = ("methods:\n  sasrec:\n    model: {dim: 8, max_len: 10, num_layers: 1, num_heads: 1}\n"
         "    train: {epochs: 1, batch_size: 64}\n")
TABLES = ("raw/events", "clean/events", "quarantine/events", "sessions", "sequences", "splits", "vocab/items",
          "vocab/users", "graphs/item_transitions", "graphs/user_item", "graphs/item_nodes", "graphs/user_nodes")


def digest(root: Path, day: date) -> dict[str, tuple]:
    """Order-free digest of every ETL table's partition of ``day`` (rows, hash of their JSON)."""
    import duckdb

    out = {}
    for table in TABLES:
        files = sorted(str(f) for f in root.glob(f"{table}/**/dt={day}/*.parquet"))
        if files:
            out[table] = duckdb.sql("SELECT count(*), sum(hash(to_json(t))) FROM read_parquet($f) t",
                                    params={"f": files}).fetchall()[0]
    return out


def cli(*args: str, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    """``seqrep`` in a child process (so it can be killed by pid at a hook point)."""
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def children(spark_connect) -> dict[str, str]:
    """The environment of the ``seqrep`` children: clients of a Spark Connect server, as the DAG's
    tasks are with one (a kill takes the client; its files are staged and renamed by the client)."""
    from pipelines.etl.spark import REMOTE_ENV

    return {**os.environ, REMOTE_ENV: spark_connect}


@pytest.fixture(scope="module")
def base(spark, tmp_path_factory):
    """Day 1 through ingest and the ETL (gates on), day 2 ingested only: the state before a run."""
    from pipelines.etl import ingest
    from pipelines.etl.synthetic_logs import write_logs
    from pipelines.nightly import etl

    root = tmp_path_factory.mktemp("rel")
    write_logs(SYN, root / "logs")
    (root / "cfg.yaml").write_text(f"warehouse: wh\ningest: {{source: synthetic, input: 'logs/dt={{date}}'}}\n{SMALL}")
    cfg = load_config(root / "cfg.yaml")
    for day in (D1, D2):
        ingest.run(spark, cfg, day=day)
    etl.run(spark, cfg, [D1])
    return root


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory):
    """The same warehouse after an uninterrupted ``seqrep etl --date D2``."""
    root = tmp_path_factory.mktemp("ref")
    shutil.copytree(base, root, dirs_exist_ok=True)
    assert main(["etl", "--date", str(D2), "--config", str(root / "cfg.yaml")]) == 0
    return root


def recover_in_a_child(root: Path, fault: str) -> subprocess.CompletedProcess:
    """``runs.recover`` (what ``seqrep doctor --repair`` and the next writer run) in a child process
    that ``SEQREP_FAULT`` kills at a point: only the kernel package is imported, so it is quick."""
    code = "import sys; from pathlib import Path; from pipelines.core.runs import recover; recover(Path(sys.argv[1]))"
    return subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True,
                          env={**os.environ, "SEQREP_FAULT": fault}, timeout=120)


@pytest.fixture(scope="module")
def published(reference, tmp_path_factory):
    """The reference warehouse with a tiny SASRec trained, inferred and published as of D2."""
    root = tmp_path_factory.mktemp("pub")
    shutil.copytree(reference, root, dirs_exist_ok=True)
    common = ["--config", str(root / "cfg.yaml"), "--date", str(D2)]
    for step in ("train", "infer", "publish"):
        assert main([step, "--method", "sasrec", *common]) == 0, step
    return root


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


# -- 6: runs commit as a whole, and a kill leaves one run's state ------------------------------------

def consistent(root: Path) -> None:
    """What a reader must see of day 2: one run's manifests only, rows accounted for, indexes known."""
    wh = Warehouse(root / "wh")
    manifests = {s: wh.read_manifest(s, f"dt={D2}") for s in ("clean", "sessionize", "sequences", "graphs")}
    assert all(manifests.values()), manifests
    assert len({m["run"] for m in manifests.values()}) == 1, "day 2's tables come from one run"
    c = manifests["clean"]
    assert c["rows_in"] == c["rows_out"] + c["rows_quarantined"] == digest(root / "wh", D2)["raw/events"][0]
    assert manifests["sessionize"]["rows_in"] == c["rows_out"] == digest(root / "wh", D2)["sessions"][0]
    assert not list((root / "wh" / "_txn").glob("*/COMMIT.json")), "nothing left half applied"


def test_a_kill_at_every_move_of_the_commit_is_finished_and_equals_the_uninterrupted_run(spark, base, reference,
                                                                                         tmp_path, children):
    """``seqrep etl --date D2`` is killed (SIGKILL by pid, from a hook) right after writing its commit
    record, then the roll-forward of that commit is killed after each of its moves in turn; every
    time, the next reader (a query) finishes it, sees one run, and the tables equal the reference."""
    from pipelines.serving.query import Query

    start = copy(base, tmp_path / "start")
    out = cli("etl", "--date", str(D2), "--config", str(start / "cfg.yaml"), env={**children, "SEQREP_FAULT": "commit:0"})
    assert out.returncode == -9, out.stderr[-2000:]  # killed by its own pid, as planned
    record = next((start / "wh/_txn").glob("*/COMMIT.json"))
    entries = json.loads(record.read_text())["entries"]
    tables = {rel.rsplit("/dt=", 1)[0] for rel, kind in entries if kind == "dir"}
    assert tables == {"clean/events", "quarantine/events", "sessions", "sequences", "splits", "vocab/items",
                      "vocab/users", "graphs/item_transitions", "graphs/user_item", "graphs/item_nodes",
                      "graphs/user_nodes"}  # every table of every stage, in one commit (with manifests, gates)
    want = digest(reference / "wh", D2)
    assert digest(start / "wh", D2) != want  # nothing moved yet
    for k in range(1, len(entries)):  # every move in turn
        run = copy(start, tmp_path / f"k{k}")
        assert recover_in_a_child(run / "wh", f"commit:{k}").returncode == -9  # killed after k moves
        with Query(run / "wh") as q:  # a reader finishes what the dead writer committed, then reads
            assert q.sql("SELECT count(*) AS n FROM events WHERE dt = ?", [D2]).column(0)[0].as_py() > 0
        consistent(run)
        assert digest(run / "wh", D2) == want, f"after a kill at move {k} of {len(entries)}"
        if k < len(entries) - 1:
            shutil.rmtree(run)
    history = [json.loads(line) for line in (run / "wh/_txn/history.jsonl").read_text().splitlines()]
    assert history[-1]["outcome"] == "finished by a reader"
    from pipelines.gates.registry import run_gate  # and every gate passes on what the reader saw

    for gate in ("raw", "clean", "sessions", "sequences", "graphs"):
        assert run_gate(spark, load_config(run / "cfg.yaml"), gate, [D2], raise_on_failure=False).passed, gate


def test_a_kill_while_staging_leaves_the_old_state_and_the_rerun_equals_the_uninterrupted_run(base, reference, tmp_path,
                                                                                             capsys, children):
    run = copy(base, tmp_path / "run")
    before = digest(run / "wh", D2)
    out = cli("etl", "--date", str(D2), "--config", str(run / "cfg.yaml"), env={**children, "SEQREP_FAULT": "stage:sequences"})
    assert out.returncode == -9
    assert digest(run / "wh", D2) == before  # clean and sessions were staged, not visible
    assert not Warehouse(run / "wh").has_partition("clean/events", D2)
    assert main(["doctor", "--config", str(run / "cfg.yaml")]) == 2
    assert "interrupted before its commit" in capsys.readouterr().out
    assert main(["etl", "--date", str(D2), "--config", str(run / "cfg.yaml")]) == 0  # rolls the dead run back, runs
    consistent(run)
    assert digest(run / "wh", D2) == digest(reference / "wh", D2)
    assert "rolled back" in (run / "wh/_txn/history.jsonl").read_text()
    assert main(["doctor", "--config", str(run / "cfg.yaml")]) == 0


# -- 7: one writer at a time -------------------------------------------------------------------------

def test_two_etl_runs_of_one_day_one_is_refused_naming_the_other(base, reference, tmp_path, children):
    """Run A is paused (a watched file) while it holds the lock, mid-run; run B of the same day is
    refused at once (exit 5) with A's pid and command; A then finishes as if alone."""
    import time

    run = copy(base, tmp_path / "run")
    release = tmp_path / "release"
    a = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "etl", "--date", str(D2), "--config",
                          str(run / "cfg.yaml")], env={**children, "SEQREP_PAUSE": f"stage:sessions={release}"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not Path(f"{release}.reached").exists():  # A has staged clean and holds the lock
            assert a.poll() is None and time.monotonic() < deadline, a.stderr.read() if a.poll() is not None else "timeout"
            time.sleep(0.2)
        b = cli("etl", "--date", str(D2), "--config", str(run / "cfg.yaml"), env=children)
        assert b.returncode == 5, b.stderr[-2000:]
        assert f"being written by another run (etl): pid {a.pid}" in b.stderr and "etl --date 2024-03-02" in b.stderr
        assert not Warehouse(run / "wh").has_partition("clean/events", D2)  # A's writes are not visible yet
    finally:
        release.touch()
        out, err = a.communicate(timeout=600)
    assert a.returncode == 0, err[-2000:]
    consistent(run)
    assert digest(run / "wh", D2) == digest(reference / "wh", D2)


def test_queries_during_infer_and_publish_never_fail_nor_mix_versions(published, tmp_path):
    """A query loop in a thread while another version is inferred and published: every answer is
    whole (k items, vectors of the version the day's record names), none fails."""
    from pipelines.serving.query import Query

    run = copy(published, tmp_path / "run")
    common = ["--config", str(run / "cfg.yaml"), "--date", str(D2)]
    live = Warehouse(run / "wh").publish_record("sasrec", D2)["model_version"]
    assert main(["train", "--method", "sasrec", *common, "--set", "train.seed=7"]) == 0
    other = next(p.name for p in (run / "wh/models/sasrec").iterdir() if p.name != live)
    seen, failures, stop = set(), [], threading.Event()

    def loop():
        with Query(run / "wh") as q:
            while not stop.is_set():
                try:
                    user = q.user("u0000001", "sasrec")
                    recs = q.recommend("u0000001", "sasrec", k=5)
                    versions = set(q.sql("SELECT DISTINCT model_version FROM user_embeddings").column(0).to_pylist())
                    assert len(recs) == 5 and len(user["vector"]) == 8 and len(versions) == 1  # never two at once
                    seen.add(user["model_version"])
                except Exception as exc:  # noqa: BLE001 (any failure is what the test counts)
                    failures.append(repr(exc))

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        assert main(["infer", "--method", "sasrec", "--version", other, *common]) == 0
        for version in [other, live] * 4:  # the live version flips while the loop queries
            assert main(["publish", "--method", "sasrec", "--version", version, *common]) == 0
    finally:
        stop.set()
        thread.join()
    assert not failures, failures[:3]
    assert seen == {live, other}, seen  # the loop saw both versions, each whole


# -- 1: publish is the only way a version goes live --------------------------------------------------

def test_inferring_another_version_leaves_the_live_one_and_a_failed_gate_is_never_live(published, tmp_path):
    from pipelines.serving.query import Query

    run = copy(published, tmp_path / "run")
    wh = Warehouse(run / "wh")
    live = wh.publish_record("sasrec", D2)["model_version"]
    common = ["--config", str(run / "cfg.yaml"), "--date", str(D2)]
    assert main(["train", "--method", "sasrec", *common, "--set", "model.dim=12"]) == 0
    assert main(["infer", "--method", "sasrec", *common, "--set", "model.dim=12"]) == 0
    with Query(wh.root) as q:  # the other dimension lies beside; queries keep the published one
        assert q.user("u0000001", "sasrec")["dim"] == 8 and len(q.recommend("u0000001", "sasrec", k=3)) == 3
        assert len(q.similar_items(q.recommend("u0000001", "sasrec", k=1)[0]["item_id"], "sasrec", k=3)) == 3
    other = next(p.name for p in wh.table("models/sasrec").iterdir() if p.name != live)
    table = wh.embeddings("users", "sasrec", D2, other)
    bad = pq.read_table(table)
    vec = bad.column("vector").combine_chunks()
    zeros = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(len(bad) * 12, np.float32)), 12)
    pq.write_table(bad.set_column(bad.schema.get_field_index("vector"), "vector", zeros), next(table.glob("*.parquet")))
    assert len(vec) == len(bad)
    assert main(["publish", "--method", "sasrec", *common, "--version", other]) == 1  # the gate refuses it
    assert wh.publish_record("sasrec", D2)["model_version"] == live
    with Query(wh.root) as q:
        assert q.user("u0000001", "sasrec")["model_version"] == live


def test_an_index_that_disagrees_with_its_tables_is_a_clear_error(published, tmp_path):
    from pipelines.serving.query import Query, QueryError

    run = copy(published, tmp_path / "run")
    wh = Warehouse(run / "wh")
    record = wh.publish_record("sasrec", D2)
    meta = wh.index_folder("sasrec", D2, record["model_version"]) / "index.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "dim": 99}))
    with Query(wh.root) as q, pytest.raises(QueryError, match="does not match its tables"):
        q.recommend("u0000001", "sasrec", k=3)
    assert main(["doctor", "--config", str(run / "cfg.yaml")]) == 2


# -- 2: bounded queries ------------------------------------------------------------------------------

def test_queries_are_bounded_with_clear_messages(published):
    from pipelines.core.config import QueryConfig
    from pipelines.serving.query import Query, QueryError

    with Query(published / "wh", limits=QueryConfig(max_rows=1000, timeout_s=2, max_k=50)) as q:
        with pytest.raises(QueryError, match="more than query.max_k"):
            q.recommend("u0000001", "sasrec", k=1_000_000_000)
        with pytest.raises(QueryError, match="more than 1,000 rows"):
            q.sql("SELECT range FROM range(20000000)")
        with pytest.raises(QueryError, match="more than 1,000 rows"):
            q.sql("SELECT range FROM range(1000000000000)")  # streamed: stops at the cap
        with pytest.raises(QueryError, match="longer than 2s"):
            q.sql("SELECT count(*) FROM range(1000000) a, range(1000000) b")
        assert q.sql("SELECT count(*) AS n FROM range(10)").column(0)[0].as_py() == 10  # still usable
    assert main(["query", "recommend", "u0000001", "--method", "sasrec", "--k", "1000000000",
                 "--warehouse", str(published / "wh")]) == 2


# -- 3, 8, 9: row faults are quarantined, file faults name the file, every file is read or reported ---

def _log(path: Path, rows: dict, **meta) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path, **meta)


def _rows(n: int, prefix: str, day: date = D2) -> dict:
    t0 = int(np.datetime64(f"{day}T10:00", "ms").astype(np.int64))
    return {"uid": [f"{prefix}{i % 7}" for i in range(n)], "sku": [f"sku{i % 5}" for i in range(n)],
            "action": ["view"] * n, "ms": [t0 + 1000 * i for i in range(n)], "price": [1.0] * n}


def _ingest(root: Path, logs: Path, **ingest) -> tuple[int, str, dict]:
    cfg = root / "own.yaml"
    cfg.write_text(json.dumps({"warehouse": str(root / "wh"), "ingest": {
        "source": "parquet", "input": str(logs), "columns": {"user_id": "uid", "item_id": "sku", "event_type": "action",
                                                             "ts": "ms", "value": "price"}, "ts_unit": "ms", **ingest}}))
    code = main(["ingest", "--config", str(cfg), "--date", str(D2), "--name", "own"])
    m = Warehouse(root / "wh").read_manifest("ingest", f"source=own/dt={D2}")
    return code, str(cfg), m


def test_every_file_of_an_input_folder_is_read_or_reported(tmp_path, capsys):
    logs = tmp_path / "logs"
    for name in ("a.parquet", "b.pq", "c.PARQUET", "_tmp/d.parquet", ".e.parquet"):
        _log(logs / name, _rows(110, name[0]))
    (logs / "notes.txt").write_text("not data")
    code, _, m = _ingest(tmp_path, logs)
    assert code == 0 and m["rows_in"] == 330  # a, b, c: case-insensitive suffixes, .pq
    skipped = {Path(s["path"]).name: s["reason"] for s in m["skipped_files"]}
    assert set(skipped) == {"d.parquet", ".e.parquet", "notes.txt"} and "hidden" in skipped["d.parquet"]
    assert "not read" in capsys.readouterr().err


def test_row_faults_are_quarantined_not_fatal(spark, tmp_path):
    """A timestamp of 2^62 ms (once: a `long overflow` that stopped the day), NaN and infinite values,
    ids of only a tab, CR/LF or Unicode spaces: each row quarantined with its reason."""
    from pipelines.nightly import etl

    rows = _rows(8, "u")
    rows["ms"][0] = 2 ** 62
    rows["price"][1], rows["price"][2] = float("nan"), float("inf")
    rows["uid"][3], rows["uid"][4], rows["sku"][5] = "\t", "\r\n", "\u00a0\u2003"
    _log(tmp_path / "logs/part-0.parquet", rows)
    code, cfg, _ = _ingest(tmp_path, tmp_path / "logs")
    assert code == 0
    etl.run(spark, load_config(cfg), [D2], ["clean"])
    q = {r["event_id"]: r["reason"] for r in pq.read_table(tmp_path / f"wh/quarantine/events/dt={D2}").to_pylist()}
    assert sorted(q.values()) == ["invalid_value", "invalid_value", "null_id", "null_id", "null_id", "parse_error"]
    assert pq.read_table(tmp_path / f"wh/clean/events/dt={D2}").num_rows == 2


def test_a_damaged_data_page_names_the_file(tmp_path, capsys):
    logs = tmp_path / "logs"
    _log(logs / "good.parquet", _rows(50, "g"))
    bad = logs / "bad.parquet"
    _log(bad, _rows(5000, "b"), compression="snappy", row_group_size=5000)
    raw = bytearray(bad.read_bytes())
    footer = int.from_bytes(raw[-8:-4], "little") + 8
    raw[400:len(raw) - footer - 100] = b"\xff" * (len(raw) - footer - 500)  # pages broken, footer intact
    bad.write_bytes(bytes(raw))
    code, _, _ = _ingest(tmp_path, logs)
    assert code == 2 and f"{bad} cannot be read" in capsys.readouterr().err
    assert not Warehouse(tmp_path / "wh").has_partition("raw/events/source=own", D2)


def test_pandas_nanosecond_times_and_an_items_file_with_its_own_names(tmp_path):
    import pandas as pd

    logs = tmp_path / "logs"
    logs.mkdir()
    frame = pd.DataFrame({"uid": ["a", "b"], "sku": ["m1", "m2"], "action": ["view", "view"], "price": [1.0, 2.0],
                          "ms": pd.to_datetime([f"{D2} 10:00:00.123456789", f"{D2} 11:00:00.000000000"], utc=True)})
    frame.to_parquet(logs / "part-0.parquet")  # pandas' default: TIMESTAMP(NANOS)
    assert str(pq.read_schema(logs / "part-0.parquet").field("ms").type) == "timestamp[ns, tz=UTC]"
    pd.DataFrame({"movieId": ["m1", "m2"], "name": ["One", "Two"]}).to_parquet(tmp_path / "items.parquet")
    code, _, m = _ingest(tmp_path, logs, items=str(tmp_path / "items.parquet"),
                         item_columns={"item_id": "movieId", "title": "name"})
    assert code == 0 and m["rows_out"] == 2 and m["items"] == 2
    raw = pq.read_table(tmp_path / f"wh/raw/events/source=own/dt={D2}").to_pylist()
    assert sorted(str(r["ts"]) for r in raw) == [f"{D2} 10:00:00.123456+00:00", f"{D2} 11:00:00+00:00"]  # µs kept
    titles = pq.read_table(tmp_path / "wh/items/source=own").column("title").to_pylist()
    assert sorted(titles) == ["One", "Two"]


def test_content_ids_cannot_collide_through_a_separator(spark):
    from pyspark.sql import functions as F

    from pipelines.etl.ingest import event_id_column

    rows = [("a\u001fb", "c", "view"), ("a", "b\u001fc", "view"), ("a", None, "view"), ("a", "\u0000", "view")]
    df = spark.createDataFrame(rows, "user_id string, item_id string, event_type string").select(
        "*", *[F.lit(None).cast(t).alias(c) for c, t in (("ts", "timestamp"), ("domain", "string"),
                                                          ("value", "double"), ("session_hint", "string"))])
    ids = [r[0] for r in df.select(event_id_column()).collect()]
    assert len(set(ids)) == 4, ids


# -- 4: the vocabulary check runs before anything is swapped ------------------------------------------

def test_rerunning_an_old_day_that_would_reindex_a_later_one_changes_nothing(base, reference, tmp_path, capsys):
    run = copy(reference, tmp_path / "run")
    vocab_before = digest(run / "wh", D1)["vocab/items"], digest(run / "wh", D2)["vocab/items"]
    extra = run / f"logs/dt={D1}/part-extra.parquet"
    t = int(np.datetime64(f"{D1}T12:00", "ms").astype(np.int64))
    pq.write_table(pa.table({"request_id": ["x-1"], "uid": ["u0000001"], "sku": ["brand-new"], "action": ["page_view"],
                             "event_time_ms": [t], "site": ["books"], "price": [1.0]}), extra)
    assert main(["ingest", "--date", str(D1), "--config", str(run / "cfg.yaml")]) == 0
    assert main(["etl", "--date", str(D1), "--config", str(run / "cfg.yaml")]) == 2
    assert "rerun the ETL from 2024-03-01 to 2024-03-02" in capsys.readouterr().err
    assert (digest(run / "wh", D1)["vocab/items"], digest(run / "wh", D2)["vocab/items"]) == vocab_before
    import duckdb

    clash = duckdb.sql("SELECT item_idx FROM read_parquet($f) GROUP BY item_idx HAVING count(*) > 1",
                       params={"f": str(run / "wh/vocab/items/*/*.parquet")}).fetchall()
    assert clash == []


# -- 8: model folders, leftovers ---------------------------------------------------------------------

def test_model_folders_are_confined_and_checked_before_any_allocation(published, tmp_path, capsys):
    run = copy(published, tmp_path / "run")
    common = ["--config", str(run / "cfg.yaml"), "--date", str(D2)]
    assert main(["infer", "--method", "sasrec", "--version", "../../../../etc", *common]) == 2
    assert "not a version name" in capsys.readouterr().err
    folder = next(p for p in (run / "wh/models/sasrec").iterdir())
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_items": 2_000_000_000}))
    assert main(["infer", "--method", "sasrec", "--version", folder.name, *common]) == 2
    assert "cannot be loaded" in (err := capsys.readouterr().err) and "config.json" in err
    (folder / "config.json").write_text(json.dumps(config))
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["infer", "--method", "sasrec", "--version", folder.name, *common]) == 2
    assert "not readable safetensors" in capsys.readouterr().err


def test_leftovers_of_dead_processes_are_cleaned_by_the_next_run(base, tmp_path):
    import socket

    run = copy(base, tmp_path / "run")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = run / "wh/_staging" / f"{socket.gethostname()}-{dead.stdout.strip()}-0123456789ab"
    (orphan / "dt=2024-03-02").mkdir(parents=True)
    assert main(["etl", "--date", str(D2), "--stages", "clean", "--config", str(run / "cfg.yaml")]) == 0
    assert not orphan.exists()


# -- 5: a range gives the rows of day-by-day runs, with ids repeated across days ----------------------

def test_a_range_equals_day_by_day_runs_with_ids_repeated_across_days_and_sessions_over_midnight(spark, tmp_path):
    """The same 50 ids on two days (once: duplicates in a range run, clean day by day); a session
    running over midnight; the whole ETL, gates on: every table of both days identical."""
    from pipelines.etl import ingest
    from pipelines.nightly import etl

    t1 = int(np.datetime64(f"{D1}T23:40", "ms").astype(np.int64))
    for day, start, ids in ((D1, t1, [f"e{i}" for i in range(80)]), (D2, t1 + 1_500_000, [f"e{i}" for i in range(30, 110)])):
        n = len(ids)
        _log(tmp_path / f"logs/dt={day}/part-0.parquet", {
            "id": ids, "uid": [f"u{i % 9}" for i in range(n)], "sku": [f"s{(i * 7) % 23}" for i in range(n)],
            "action": ["view"] * n, "ms": [start + 12_000 * i for i in range(n)], "price": [1.0] * n})
    results = {}
    for mode in ("days", "range"):
        cfg_path = tmp_path / f"{mode}.yaml"
        cfg_path.write_text(json.dumps({"warehouse": str(tmp_path / mode), "ingest": {
            "source": "parquet", "input": str(tmp_path / "logs/dt={date}"), "ts_unit": "ms",
            "columns": {"event_id": "id", "user_id": "uid", "item_id": "sku", "event_type": "action", "ts": "ms",
                        "value": "price"}}}))
        cfg = load_config(cfg_path)
        for day in (D1, D2):
            ingest.run(spark, cfg, day=day)
        for days in ([[D1], [D2]] if mode == "days" else [[D1, D2]]):
            etl.run(spark, cfg, days)
        results[mode] = {day: digest(tmp_path / mode, day) for day in (D1, D2)}
    assert results["days"] == results["range"]
    reasons = Warehouse(tmp_path / "range").read_manifest("clean", f"dt={D2}")["quarantine_by_reason"]
    assert reasons == {"duplicate": 50}  # ids 30..79 were seen the day before, in both modes
