"""``seqrep forget`` on the ml-100k warehouse: a user erased from every table, record and
embedding table, the stages' accounting still balanced, an audit record, no-op reruns, later
ingests that drop the user, and kills in the middle that leave the old warehouse or the new."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.core import privacy
from pipelines.gates.erasure import scan

LAST = date(1998, 4, 22)
SMALL = "methods:\n  sasrec:\n    model: {dim: 16, num_layers: 1}\n    train: {epochs: 1, seed: 3}\n"


def _copy(movielens_wh: Path, to: Path) -> Path:
    return shutil.copytree(movielens_wh, to / "wh", ignore=shutil.ignore_patterns("models", "metrics", "embeddings",
                                                                                  "_staging", "_txn", "_locks"))


@pytest.fixture(scope="module")
def published(movielens_wh, tmp_path_factory):
    """A copy of the session's ml-100k warehouse with a small SASRec trained, inferred and
    published as of the last day."""
    tmp = tmp_path_factory.mktemp("forget")
    wh = _copy(movielens_wh, tmp)
    (tmp / "small.yaml").write_text(SMALL)
    common = ["--warehouse", str(wh), "--config", str(tmp / "small.yaml")]
    for step in ("train", "infer", "publish"):
        assert main([step, "--method", "sasrec", "--date", str(LAST), *common]) == 0
    return wh, common


def _days_of(wh: Path, user: str) -> list[date]:
    return [r[0] for r in duckdb.sql(
        f"SELECT DISTINCT dt FROM read_parquet('{wh}/sessions/*/*.parquet', hive_partitioning = true) "
        "WHERE user_id = $u ORDER BY dt", params={"u": user}).fetchall()]


def _user_with_days(wh: Path, n: int, skip: set[str] = frozenset()) -> str:
    """A user active on exactly ``n`` days."""
    rows = duckdb.sql(f"SELECT user_id FROM read_parquet('{wh}/sessions/*/*.parquet', hive_partitioning = true) "
                      f"GROUP BY user_id HAVING count(DISTINCT dt) = {n} ORDER BY user_id").fetchall()
    return next(u for (u,) in rows if u not in skip)


def _rows(wh: Path, table: str) -> int:
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{wh}/{table}/**/*.parquet')").fetchall()[0][0]


def test_a_forgotten_user_is_nowhere_and_stays_gone(published, data_dir, capsys):
    wh, common = published
    user = _user_with_days(wh, 3)
    days = _days_of(wh, user)
    ratings = np.loadtxt(data_dir("ml-100k") / "u.data", dtype=np.int64)
    n = int((ratings[:, 0] == int(user)).sum())
    before = {t: _rows(wh, t) for t in ("raw/events", "clean/events", "sessions")}
    idx = duckdb.sql(f"SELECT user_idx FROM read_parquet('{wh}/vocab/users/*/*.parquet') WHERE user_id = $u",
                     params={"u": user}).fetchall()[0][0]
    assert scan(wh, {"id": user}) != []  # the scan finds the user before

    assert main(["forget", "--user", user, "--reason", "ticket 1", *common]) == 0
    assert "gate erasure" in capsys.readouterr().out and scan(wh, {"id": user}) == []
    assert {t: before[t] - _rows(wh, t) for t in before} == dict.fromkeys(before, n)
    # the index is a tombstone: no other user's index moved, and it is in no table any more
    vocab = duckdb.sql(f"SELECT user_idx, user_id FROM read_parquet('{wh}/vocab/users/*/*.parquet') "
                       "WHERE user_idx = $i", params={"i": idx}).fetchall()
    assert vocab == [(idx, f"~erased:{idx}")]
    for table in ("sequences", "splits", "graphs/user_item", "graphs/user_nodes"):
        assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{wh}/{table}/*/*.parquet') WHERE user_idx = $i",
                          params={"i": idx}).fetchall()[0][0] == 0, table
    # the audit record: a hash of the id, what was rewritten; never the id
    (audit,) = privacy.erasure_records(wh)
    assert audit["id_hashes"] == [privacy.id_hash(user)] and audit["reason"] == "ticket 1"
    assert audit["rows_removed"]["raw/events/source=movielens"] == n and audit["rows_removed"]["embeddings/users"] == 1
    assert audit["partitions_rewritten"] >= 4 * len(days) and audit["bytes_written"] > 0
    # every stage's accounting balances on the rewritten days (the gates recount from the tables)
    for stage in ("clean", "sessions", "sequences", "graphs"):
        assert main(["validate", "--stage", stage, "--from", str(days[0]), "--to", str(days[-1]), *common]) == 0, stage
    clean = json.loads((wh / f"_manifests/stage=clean/dt={days[0]}.json").read_text())
    assert clean["rows_in"] == clean["rows_out"] + clean["rows_quarantined"] and clean["erased"][0]["rows"]["raw"] > 0
    # queries: the user is unknown
    capsys.readouterr()
    assert main(["query", "user", user, "--method", "sasrec", *common]) == 2
    assert "has no sasrec embedding" in capsys.readouterr().err
    # a rerun finds nothing and writes nothing
    assert main(["forget", "--user", user, "--reason", "ticket 1 again", *common]) == 0
    assert "nothing written" in capsys.readouterr().out and len(privacy.erasure_records(wh)) == 1
    # the log ingested again (a backfill of old days): the user's rows are dropped at ingest
    assert main(["ingest", "--source", "movielens", "--input", str(data_dir("ml-100k")), *common]) == 0
    manifest = json.loads((wh / "_manifests/stage=ingest/source=movielens.json").read_text())
    assert manifest["rows_erased"] == n and manifest["rows_in"] == 100_000
    assert main(["etl", "--date", str(days[0]), "--no-gates", *common]) == 0
    assert scan(wh, {"id": user}) == []
    # and the next nightly train of the method is a full retrain
    from pipelines.core.config import load_config
    from pipelines.nightly.steps import warm_start

    from pipelines.nightly.forget import audit as audit_trail

    cfg = load_config(common[3], warehouse=wh)
    warm, _, why = warm_start(cfg, "sasrec", date(1998, 4, 23))
    assert warm is None and audit["request"] in why
    assert audit_trail(cfg)[0]["retrained"] == {"sasrec": None}  # the retrain is still to come


@pytest.fixture(scope="module")
def children(spark_connect) -> dict[str, str]:
    from pipelines.etl.spark import REMOTE_ENV

    return {**os.environ, REMOTE_ENV: spark_connect}


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_a_kill_in_the_middle_leaves_the_old_or_the_new_warehouse_and_a_rerun_completes(
        movielens_wh, children, tmp_path):
    from pipelines.core.runs import settle

    wh = _copy(movielens_wh, tmp_path)
    common = ["--warehouse", str(wh)]
    first = _user_with_days(wh, 2)
    second = _user_with_days(wh, 2, skip={first})
    raw = _rows(wh, "raw/events")

    # killed while staging the sessions: nothing visible, the request recorded as pending
    out = _cli("forget", "--user", first, "--reason", "r1", *common, env={**children, "SEQREP_FAULT": "stage:sessions"})
    assert out.returncode == -9, out.stderr[-2000:]
    assert _rows(wh, "raw/events") == raw and scan(wh, {"id": first}) != [] and privacy.erasure_records(wh) == []
    (pending,) = list((wh / "_privacy/requests").glob("*.json"))
    out = _cli("forget", "--user", first, "--reason", "r1", *common, env=children)
    assert out.returncode == 0, out.stderr[-2000:]
    assert scan(wh, {"id": first}) == [] and [r["request"] for r in privacy.erasure_records(wh)] == [pending.stem]
    assert not pending.exists()

    # killed in the middle of the commit: the next reader finishes it, the rerun has nothing to do
    raw = _rows(wh, "raw/events")
    out = _cli("forget", "--user", second, "--reason", "r2", *common, env={**children, "SEQREP_FAULT": "commit:3"})
    assert out.returncode == -9, out.stderr[-2000:]
    settle(wh)
    assert scan(wh, {"id": second}) == [] and _rows(wh, "raw/events") < raw and len(privacy.erasure_records(wh)) == 2
    out = _cli("forget", "--user", second, "--reason", "r2", *common, env=children)
    assert out.returncode == 0 and "nothing written" in out.stdout, out.stderr[-2000:]
    assert list((wh / "_privacy/requests").glob("*.json")) == []
