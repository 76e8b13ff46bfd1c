"""The whole nightly DAG on a real-data slice, backfill equivalence, the regression gate, and
``airflow backfill create``.

The slice: the ml-100k ratings of 1997-11-12 .. 1997-11-15 (7,384 ratings by 103 users), written as
one Parquet log per day, read by the ``parquet`` adapter as a user's own logs would be. One
warehouse goes through the DAG (day 1 every task for real, Spark jobs as clients of a Spark
Connect server; the gate-failure test's through spark-submit; days 2
and 3 with the ETL tasks marked done after the same ETL ran in this process, so the model tasks
run as the DAG runs them), another through ``seqrep backfill``; their embedding tables must agree.
The tasks' ``seqrep`` processes are clients of a task server (``seqrep task-server``), as in
``seqrep demo``, except in the Postgres test, whose tasks are processes of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from ml_slice import CONFIG, write_config, write_daily_logs

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"
DAYS = [date(1997, 11, 12), date(1997, 11, 13), date(1997, 11, 14)]
SABOTAGE = date(1997, 11, 15)  # the fourth day: trained badly on purpose, and the planted future event
GATES = {"gate_raw", "gate_clean", "gate_features", "sasrec.regression_gate", "sasrec.gate_embeddings"}
ETL_TASKS = r"^(ingest|gate_raw|clean|gate_clean|sessionize|features|gate_features)$"
@pytest.fixture(scope="module")
def slice_logs(data_dir, tmp_path_factory):
    return write_daily_logs(data_dir("ml-100k") / "u.data", [*DAYS, SABOTAGE], tmp_path_factory.mktemp("slice") / "logs")


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory, slice_logs, task_server):
    """A throwaway SQLite Airflow (with the ``gpu`` pool), set up before anything imports airflow
    here. The DAG's method groups come from ``SEQREP_CONFIG`` at parse time: the test profile."""
    from pipelines.nightly.demo import airflow_env

    home = tmp_path_factory.mktemp("airflow")
    cfg = write_config(home / "seqrep.yaml", slice_logs)
    env = airflow_env(cfg, Path(""))
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_SEQREP_SPARK": '{"conn_type": "spark", "host": "local[2]"}', "SEQREP_RETRIES": "0",
        "SEQREP_START_DATE": "1997-01-01", "SEQREP_TASK_SERVER": task_server,
    })
    env.pop("SEQREP_WAREHOUSE")
    with pytest.MonkeyPatch.context() as mp:  # restored after this module: other tests see no SEQREP_CONFIG
        for k, v in env.items():
            if k.startswith(("AIRFLOW", "PYSPARK", "PATH", "SPARK", "SEQREP_")):
                mp.setenv(k, v)
        for cmd in (["db", "migrate"], ["pools", "set", "gpu", "1", "torch tasks"]):
            subprocess.run([sys.executable, "-m", "airflow", *cmd], env={**os.environ}, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield home


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.get_dag("seqrep_nightly")


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state).rsplit(".", 1)[-1].lower() for ti in run.get_task_instances()}


def run_day(dag, day: date, warehouse: Path, config: Path, etl_done: bool = False):
    """``dag.test`` of the run that processes ``day`` (its logical time is the next midnight)."""
    logical = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)
    conf = {"warehouse": str(warehouse), "config": str(config), "driver_memory": "1g"}
    return dag.test(logical_date=logical, run_conf=conf, mark_success_pattern=ETL_TASKS if etl_done else None)


def etl_in_process(spark, config: Path, warehouse: Path, day: date) -> None:
    """What the DAG's ETL tasks run, gates included."""
    from pipelines.etl import ingest
    from pipelines.nightly import etl
    from pipelines.core.config import load_config

    cfg = load_config(config, warehouse=warehouse)
    ingest.run(spark, cfg, day=day)
    etl.run(spark, cfg, [day])


def live_version(wh: Path, day: date) -> str:
    """The version of sasrec published for ``day`` (its publish record)."""
    return json.loads((wh / f"_manifests/stage=publish/model=sasrec/dt={day}.json").read_text())["model_version"]


def tables(wh: Path, day: date) -> dict[str, dict[str, np.ndarray]]:
    """Each published embedding table of sasrec as of ``day``: id -> vector."""
    import pyarrow.parquet as pq

    out = {}
    for kind, key in (("users", "user_id"), ("items", "item_id")):
        folder = wh / f"embeddings/{kind}/model=sasrec/dt={day}/version={live_version(wh, day)}"
        assert len(list(folder.glob("*.parquet"))) == 1, folder
        t = pq.read_table(folder)
        ids = t.column(key).to_pylist()
        assert len(ids) == len(set(ids)), f"duplicate ids in {folder}"
        vec = t.column("vector").combine_chunks()
        out[kind] = dict(zip(ids, vec.values.to_numpy().reshape(len(vec), -1)))
    return out


def assert_same_tables(a: dict, b: dict, what: str) -> None:
    """Same ids and bit-identical vectors: on CPU the same seed gives the same weights, in any
    process (README, Training), so nightly and backfill must agree exactly."""
    for kind in ("users", "items"):
        assert set(a[kind]) == set(b[kind]), f"{what}: {kind} differ"
        diff = max(float(np.abs(a[kind][k] - b[kind][k]).max()) for k in a[kind])
        assert diff == 0.0, f"{what}: {kind} vectors differ by up to {diff}"


def test_dag_files_import_cleanly_and_stay_light(airflow_home):
    dag = _dag()
    assert [t.task_id for t in dag.topological_sort()] == [
        "ingest", "gate_raw", "clean", "gate_clean", "sessionize", "features", "gate_features",
        "sasrec.train", "sasrec.evaluate", "sasrec.regression_gate", "sasrec.infer", "sasrec.gate_embeddings",
        "sasrec.publish", "report", "watcher"]
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert {t.task_id for t in dag.tasks if t.depends_on_past} == {"sessionize", "features"}
    assert {t.task_id for t in dag.tasks if t.pool == "gpu"} == {"sasrec.train", "sasrec.evaluate", "sasrec.infer"}
    # a pool caps them; the queue sends them to a GPU worker (Celery: `airflow celery worker --queues gpu`)
    assert {t.task_id for t in dag.tasks if t.queue == "gpu"} == {"sasrec.train", "sasrec.evaluate", "sasrec.infer"}
    assert {t.task_id for t in dag.tasks if t.retries == 0} >= GATES  # all of them here: SEQREP_RETRIES=0
    assert all(t.on_failure_callback for t in dag.tasks)
    assert {a.name for a in dag.get_task("sasrec.publish").outlets} == {
        "seqrep.embeddings.users.sasrec", "seqrep.embeddings.items.sasrec"}
    # No heavy import at module top level: parsing the file must not load Spark, torch or pandas.
    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
            "print(','.join(m for m in ('pyspark', 'torch', 'pandas', 'pipelines.etl.ingest') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(DAGS / "seqrep_nightly.py")], capture_output=True,
                         text=True, env={**os.environ}, check=True).stdout.strip().splitlines()[-1:]
    assert out in ([], [""]), f"heavy modules imported by the DAG file: {out}"


def test_cross_domain_pairs_and_streams_add_their_tasks_beside_the_methods(airflow_home, tmp_path):
    """A config with ``cross_domain.pairs``: the pairs' stage and gate after ``gate_features``,
    parallel to the methods, before the report; without pairs (the test above) neither. With
    ``stream.methods``: a heartbeat check per stream, from the run's start, into the report."""
    config = tmp_path / "cross.yaml"
    config.write_text(Path(os.environ["SEQREP_CONFIG"]).read_text()
                      + "\ncross_domain:\n  pairs: [{name: a_to_b, source: a, target: b}]\n  methods: [emcdr]\n"
                      + "stream:\n  methods: [sasrec]\n")
    code = ("import json, sys; from airflow.dag_processing.dagbag import DagBag; "
            "dag = DagBag(dag_folder=sys.argv[1]).get_dag('seqrep_nightly'); "
            "print(json.dumps({t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}))")
    out = subprocess.run([sys.executable, "-c", code, str(DAGS)], env={**os.environ, "SEQREP_CONFIG": str(config)},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    up = json.loads(out.stdout.strip().splitlines()[-1])
    assert up["cross_domain"] == ["gate_features"] and up["gate_cross_domain"] == ["cross_domain"]
    assert up["sasrec.train"] == ["gate_features"] and "gate_cross_domain" in up["report"]
    group = "emcdr-a_to_b"  # the pair run emcdr.a_to_b: after the pair's gate, into the report
    assert up[f"{group}.train"] == ["gate_cross_domain"] and up[f"{group}.infer"] == [f"{group}.train"]
    assert up[f"{group}.publish"] == [f"{group}.gate_embeddings"] and f"{group}.publish" in up["report"]
    assert up["stream_heartbeat_sasrec"] == [] and "stream_heartbeat_sasrec" in up["report"]


def test_a_cross_domain_pair_run_is_trained_and_published_by_the_nightly_dag(
        airflow_home, data_dir, spark, spark_connect, tmp_path, monkeypatch):
    """The pair's tasks and a pair run's task group (``cross_domain.methods: [emcdr]``) run in
    ``dag.test()`` on a slice of the Amazon cloth/sport pair (120 users, both domains), the ETL's
    first tasks marked done after the same ETL ran in this process, the cross-domain ones as
    Spark Connect clients; ``seqrep query`` then reads the published tables."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.cli import main
    from pipelines.core.config import load_config
    from pipelines.etl import ingest
    from pipelines.nightly import etl
    from pipelines.serving.query import Query

    day, logs = date(2014, 1, 1), tmp_path / "logs"
    columns: dict[str, list] = {k: [] for k in ("event_id", "user_id", "item_id", "event_type", "ts", "domain")}
    for domain, folder in (("cloth", "cloth_sport"), ("sport", "sport_cloth")):
        rows = [line.split("\t")[:2] for name in ("train.txt", "test_original.txt")
                for line in (data_dir("amazon-crossdomain") / folder / name).read_text().splitlines()]
        kept = [(user, item) for user, item in rows if int(user) < 120]  # in file order, a second apart
        for i, (user, item) in enumerate(kept):
            for k, v in zip(columns, (f"{domain}-{i}", f"u{user}", item, "rate", 1388534400 + i, domain)):
                columns[k].append(v)
    (logs / f"dt={day}").mkdir(parents=True)
    pq.write_table(pa.table(columns), logs / f"dt={day}" / "part-0.parquet")
    config = tmp_path / "pair.yaml"
    config.write_text(f"""
spark: {{shuffle_partitions: 2}}
ingest:
  source: parquet
  name: amazon
  input: {logs}/dt={{date}}
  columns: {{event_id: event_id, domain: domain}}
nightly: {{methods: []}}
cross_domain:
  pairs: [{{name: cloth_to_sport, source: cloth, target: sport}}]
  methods: [emcdr]
methods:
  lightgcn: {{model: {{dim: 16}}, train: {{epochs: 3}}}}
  emcdr: {{model: {{dim: 16, source_dim: 16}}, train: {{epochs: 5}}}}
""")
    wh = tmp_path / "wh"
    cfg = load_config(config, warehouse=wh)
    ingest.run(spark, cfg, day=day)
    etl.run(spark, cfg, [day], stages=["clean", "sessionize", "sequences", "graphs"])
    monkeypatch.setenv("SEQREP_CONFIG", str(config))
    monkeypatch.setenv("SEQREP_SPARK_REMOTE", spark_connect)
    run = run_day(_dag(), day, wh, config, etl_done=True)
    states = _states(run)
    group = "emcdr-cloth_to_sport"
    assert str(run.state).endswith("success") and states.pop("watcher") == "skipped", states
    assert {t: states[t] for t in ("cross_domain", "gate_cross_domain", f"{group}.train", f"{group}.infer",
                                   f"{group}.gate_embeddings", f"{group}.publish", "report")} == dict.fromkeys(
        ("cross_domain", "gate_cross_domain", f"{group}.train", f"{group}.infer", f"{group}.gate_embeddings",
         f"{group}.publish", "report"), "success"), states
    record = json.loads((wh / f"_manifests/stage=publish/model=emcdr.cloth_to_sport/dt={day}.json").read_text())
    assert record["users"] == 120 and record["items"] > 0
    cold = pq.read_table(wh / f"cross_domain/users/pair=cloth_to_sport/dt={day}").to_pydict()
    user = next(u for u, c in zip(cold["user_id"], cold["cold"]) if c)  # a cold-start-in-target user
    with Query(wh) as q:
        recs = q.recommend(user, "emcdr.cloth_to_sport", k=10, domain="sport")
        assert len(recs) == 10 and {r["domain"] for r in recs} == {"sport"}
    assert main(["query", "recommend", user, "--method", "emcdr.cloth_to_sport", "--domain", "sport",
                 "--warehouse", str(wh)]) == 0


def test_issue_21_methods_run_in_the_nightly_method_groups(airflow_home, slice_logs, spark, tmp_path, monkeypatch):
    """Issue 21's methods as nightly methods (``nightly.methods: [gcsan, item2vec, sasrec_social]``,
    the social graph from a nightly ``ingest.social`` file: each of the day's users befriends the
    next): each one's group (train, evaluate, regression gate, infer, embeddings gate, publish)
    succeeds in ``dag.test()`` on the slice's first day, the ETL's tasks marked done after the
    same ETL ran in this process; the published tables then answer queries."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.serving.query import Query

    users = sorted(set(pq.read_table(slice_logs / f"dt={DAYS[0]}").column("user_id").to_pylist()))
    social = tmp_path / "social" / f"dt={DAYS[0]}"
    social.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": users, "friend_id": users[1:] + users[:1]}), social / "part-0.parquet")
    methods = ("gcsan", "item2vec", "sasrec_social")
    config = tmp_path / "new-methods.yaml"
    config.write_text(CONFIG.format(logs=slice_logs, extra_nightly="", extra_train="")
                      .replace("  columns:", f"  social: {tmp_path / 'social'}/dt={{date}}\n  columns:")
                      .replace("methods: [sasrec]", f"methods: [{', '.join(methods)}]")
                      + "  gcsan: {model: {dim: 16, max_len: 20}, train: {epochs: 2, batch_size: 128}}\n"
                      + "  item2vec: {model: {dim: 16, iterations: 2}}\n"
                      + "  sasrec_social: {model: {dim: 16, max_len: 20, num_layers: 1, num_heads: 1}, train: {epochs: 2}}\n")
    wh = tmp_path / "wh"
    etl_in_process(spark, config, wh, DAYS[0])
    graph = json.loads((wh / f"_manifests/stage=graphs/dt={DAYS[0]}.json").read_text())["social"]
    assert graph["edges"] == len(users) and graph["rows_quarantined"] == 0
    monkeypatch.setenv("SEQREP_CONFIG", str(config))
    run = run_day(_dag(), DAYS[0], wh, config, etl_done=True)
    states = _states(run)
    assert str(run.state).endswith("success"), states
    steps = ("train", "evaluate", "regression_gate", "infer", "gate_embeddings", "publish")
    for method in methods:
        assert {s: states[f"{method}.{s}"] for s in steps} == dict.fromkeys(steps, "success"), states
        record = json.loads((wh / f"_manifests/stage=publish/model={method}/dt={DAYS[0]}.json").read_text())
        assert record["users"] > 0 and record["items"] > 0
        with Query(wh) as q:
            user = q.sql("SELECT min(user_id) FROM user_embeddings WHERE model = ?", [method]).column(0)[0].as_py()
            assert len(q.recommend(user, method, k=5)) == 5
    assert "sasrec.train" not in states


def test_with_default_retries_work_tasks_back_off_and_gates_and_the_watcher_never_retry(airflow_home):
    """The DAG as a deployment parses it (no ``SEQREP_RETRIES``, which the other tests here set to 0):
    a Spark or torch task that fails retries twice with exponential backoff from 1 minute; a gate's
    verdict is final, and the watcher reports once."""
    env = {k: v for k, v in os.environ.items() if k != "SEQREP_RETRIES"}
    code = ("import json, sys; from airflow.dag_processing.dagbag import DagBag; "
            "dag = DagBag(dag_folder=sys.argv[1]).get_dag('seqrep_nightly'); "
            "print(json.dumps({t.task_id: [t.retries, bool(t.retry_exponential_backoff), "
            "t.retry_delay.total_seconds(), t.max_retry_delay and t.max_retry_delay.total_seconds()] "
            "for t in dag.tasks}))")
    out = subprocess.run([sys.executable, "-c", code, str(DAGS)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    policy = json.loads(out.stdout.strip().splitlines()[-1])
    assert {t for t, (retries, *_) in policy.items() if retries == 0} == GATES | {"watcher"}, policy
    for task_id in set(policy) - GATES - {"watcher"}:
        assert policy[task_id] == [2, True, 60.0, 1800.0], (task_id, policy[task_id])


def test_a_failed_etl_gate_stops_the_night_with_default_retries_and_leaves_earlier_days(
        airflow_home, slice_logs, spark, tmp_path, monkeypatch):
    """Day 2's raw rows change more than ``gates.max_row_change`` allows under ``gates.drift:
    fail``; the DAG as deployed (default retries) runs it: the raw gate fails once (no retry),
    nothing after it runs, the night fails, and day 1's files are byte for byte as they were."""
    import hashlib

    from pipelines.cli import main

    config = tmp_path / "drift.yaml"
    config.write_text((airflow_home / "seqrep.yaml").read_text() + "gates: {drift: fail, max_row_change: 1.0001}\n")
    wh = tmp_path / "wh"
    etl_in_process(spark, config, wh, DAYS[0])

    def day_one() -> dict[str, str]:
        return {str(p.relative_to(wh)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(wh.rglob("*")) if p.is_file() and f"dt={DAYS[0]}" in str(p)}

    before = day_one()
    assert len(before) > 10
    monkeypatch.delenv("SEQREP_RETRIES")
    dag = _dag()
    assert dag.get_task("ingest").retries == 2 and dag.get_task("gate_raw").retries == 0
    run = run_day(dag, DAYS[1], wh, config)
    states = _states(run)
    assert states["ingest"] == "success" and states["gate_raw"] == "failed", states
    after_gate = {t for t in states if t not in ("ingest", "gate_raw", "report", "watcher")}
    assert {states[t] for t in after_gate} == {"upstream_failed"}, states
    assert states["report"] == "success" and states["watcher"] == "failed" and str(run.state).endswith("failed")
    failure = json.loads((wh / f"_runs/dt={DAYS[1]}/gate_raw.json").read_text())
    assert failure["try"] == 1 and f"gate raw {DAYS[1]}: FAILED" in failure["reason"], failure
    assert "row_change" in failure["reason"], failure
    assert not (wh / f"clean/events/dt={DAYS[1]}").exists()
    assert day_one() == before
    assert main(["validate", "--stage", "raw", "--date", str(DAYS[1]), "--warehouse", str(wh),
                 "--config", str(config)]) == 1  # the exit code of a failed gate


def test_airflow_backfill_create_accepts_the_dag(airflow_home):
    """``airflow backfill create`` (dry run) against the DAG in the metadata database."""
    env = {**os.environ}
    subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], env=env, check=True,
                   capture_output=True)
    out = subprocess.run([sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", "seqrep_nightly",
                          "--from-date", "2024-01-02", "--to-date", "2024-01-04", "--max-active-runs", "1",
                          "--reprocess-behavior", "completed",
                          "--dry-run"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert all(d in text for d in ("2024-01-02", "2024-01-03", "2024-01-04")), text[-2000:]


def test_nightly_runs_equal_backfill_and_a_regression_blocks_publishing(
        airflow_home, slice_logs, spark, spark_connect, tmp_path, monkeypatch):
    """Three nightly runs (the ETL tasks clients of a Spark Connect server) and a backfill of the
    same days give the same tables; a fourth night trained badly is stopped by the regression
    gate; a backfill never reads a later day."""
    from pipelines.cli import main
    from pipelines.serving.query import Query

    config = airflow_home / "seqrep.yaml"
    nightly_wh, backfill_wh = tmp_path / "nightly", tmp_path / "backfill"
    monkeypatch.setenv("SEQREP_SPARK_REMOTE", spark_connect)
    dag = _dag()
    assert {type(dag.get_task(t)).__name__ for t in ("ingest", "clean", "gate_features")} == {"BashOperator"}

    # Day 1: every task for real (each ETL task a Spark Connect client, each model task its own process).
    run = run_day(dag, DAYS[0], nightly_wh, config)
    states = _states(run)
    assert str(run.state).endswith("success") and states.pop("watcher") == "skipped", states
    assert set(states.values()) == {"success"}, states
    published = json.loads((nightly_wh / f"_manifests/stage=publish/model=sasrec/dt={DAYS[0]}.json").read_text())
    assert published["warm_start_from"] is None and published["users"] > 0
    version = live_version(nightly_wh, DAYS[0])
    for gate in ("stage=raw", "stage=clean", "stage=sessions", "stage=sequences", "stage=graphs",
                 "stage=regression/model=sasrec", f"stage=embeddings/model=sasrec/version={version}"):
        assert (nightly_wh / "_gates" / gate / f"dt={DAYS[0]}.json").is_file(), gate
    assert (nightly_wh / f"embeddings/index/model=sasrec/dt={DAYS[0]}/version={version}/items.faiss").is_file()
    report = (nightly_wh / f"reports/dt={DAYS[0]}/index.html").read_text()
    assert "sasrec" in report and "metrics.png" in report and "curves.png" in report
    assert (nightly_wh / f"reports/dt={DAYS[0]}/curves.png").stat().st_size > 1000

    # Days 2 and 3: the same ETL in this process, then the DAG's model tasks (warm starts).
    for day in DAYS[1:]:
        etl_in_process(spark, config, nightly_wh, day)
        run = run_day(dag, day, nightly_wh, config, etl_done=True)
        assert str(run.state).endswith("success"), _states(run)
        record = json.loads((nightly_wh / f"_manifests/stage=publish/model=sasrec/dt={day}.json").read_text())
        assert record["warm_start_from"] and record["full_day"] == str(DAYS[0])
    # The last night's report: the metrics beyond accuracy, and the trend of the three published nights.
    report = (nightly_wh / f"reports/dt={DAYS[-1]}/index.html").read_text()
    assert "coverage@10" in report and "Trends (the last 14 nights)" in report and "trends.png" in report
    assert all(f">{d}</td>" in report for d in DAYS) and report.count(">warm start</td>") >= 2 + 1
    assert (nightly_wh / f"reports/dt={DAYS[-1]}/trends.png").stat().st_size > 1000

    # The same three days by `seqrep backfill`, in another warehouse: the same tables.
    assert main(["backfill", "--from", str(DAYS[0]), "--to", str(DAYS[-1]), "--config", str(config),
                 "--warehouse", str(backfill_wh)]) == 0
    for day in DAYS:
        assert_same_tables(tables(nightly_wh, day), tables(backfill_wh, day), f"nightly vs backfill, {day}")

    # Day 4 trained badly: the regression gate stops it, day 3's tables stay the live ones.
    bad = write_config(tmp_path / "sabotage.yaml", slice_logs, sabotage=True)
    etl_in_process(spark, bad, nightly_wh, SABOTAGE)
    run = run_day(dag, SABOTAGE, nightly_wh, bad, etl_done=True)
    states = _states(run)
    assert states["sasrec.train"] == "success" and states["sasrec.regression_gate"] == "failed", states
    assert all(states[f"sasrec.{t}"] == "upstream_failed" for t in ("infer", "gate_embeddings", "publish")), states
    assert states["report"] == "success" and states["watcher"] == "failed" and str(run.state).endswith("failed")
    reason = json.loads((nightly_wh / f"_runs/dt={SABOTAGE}/sasrec.regression_gate.json").read_text())["reason"]
    assert "NDCG@10" in reason and str(DAYS[-1]) in reason, reason
    assert not (nightly_wh / f"embeddings/users/model=sasrec/dt={SABOTAGE}").exists()
    with Query(nightly_wh) as q:
        assert q.days("sasrec")[-1] == DAYS[-1]
        user = next(iter(tables(nightly_wh, DAYS[-1])["users"]))
        assert len(q.recommend(user, "sasrec", k=5)) == 5  # yesterday's tables answer
    assert "FAILED" in (nightly_wh / f"reports/dt={SABOTAGE}/index.html").read_text()

    # A later day lands in the backfilled warehouse, with a planted event of a new user on a new
    # item and one of an existing user; rerunning the method over days 2-3 (as for a newly added
    # method) computes what it computed before that day existed, and replaces the partitions.
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    before = {day: tables(backfill_wh, day) for day in DAYS[1:]}
    old_user = next(iter(before[DAYS[-1]]["users"]))
    future_logs = tmp_path / "future-logs"
    (future_logs / f"dt={SABOTAGE}").mkdir(parents=True)
    log = pq.read_table(slice_logs / f"dt={SABOTAGE}" / "part-0.parquet")
    t = int(log.column("ts")[0].as_py())
    planted = pa.table({"event_id": ["planted-1", "planted-2"], "user_id": ["planted-user", old_user],
                        "item_id": ["planted-item", "planted-item"], "event_type": ["rate", "rate"],
                        "rating": [5.0, 5.0], "ts": [t, t + 60]}).cast(log.schema)
    pq.write_table(pa.concat_tables([log, planted]), future_logs / f"dt={SABOTAGE}" / "part-0.parquet")
    future = tmp_path / "future.yaml"
    future.write_text(config.read_text().replace(str(slice_logs), str(future_logs)))
    etl_in_process(spark, future, backfill_wh, SABOTAGE)
    assert main(["backfill", "--from", str(DAYS[1]), "--to", str(DAYS[-1]), "--method", "sasrec",
                 "--config", str(config), "--warehouse", str(backfill_wh)]) == 0
    for day in DAYS[1:]:
        after = tables(backfill_wh, day)  # one file per partition, ids unique: replaced, not appended
        assert_same_tables(before[day], after, f"rerun of {day} with a later day present")
        assert "planted-user" not in after["users"] and "planted-item" not in after["items"]
    users = pq.read_table(backfill_wh / f"embeddings/users/model=sasrec/dt={DAYS[-1]}"
                          / f"version={live_version(backfill_wh, DAYS[-1])}")
    n = users.filter(pc.equal(users.column("user_id"), old_user)).column("n_events")[0].as_py()
    logged = sum(pc.sum(pc.equal(pq.read_table(slice_logs / f"dt={d}").column("user_id"), old_user)).as_py() or 0
                 for d in DAYS)
    assert n == logged  # the planted later event is not behind the user's vector
    assert main(["backfill", "--from", str(DAYS[0]), "--to", str(DAYS[0]), "--method", "nope",
                 "--config", str(config), "--warehouse", str(backfill_wh)]) == 2


def test_the_erasure_dag_forgets_a_user_and_its_gate_proves_it(airflow_home, slice_logs, spark, spark_connect,
                                                              tmp_path, monkeypatch):
    """``seqrep_erasure`` triggered with a file of ids (``forget`` a Spark Connect client): ``forget``
    then ``gate_erasure`` succeed, the user is in no file of the warehouse, and the audit record
    names the request."""
    import pyarrow.parquet as pq
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.core import privacy
    from pipelines.gates.erasure import scan

    config, wh = airflow_home / "seqrep.yaml", tmp_path / "wh"
    etl_in_process(spark, config, wh, DAYS[0])
    user = sorted(pq.read_table(wh / f"sessions/dt={DAYS[0]}").column("user_id").to_pylist())[0]
    assert scan(wh, {"id": user}) != []
    users = tmp_path / "request.txt"
    users.write_text(f"# DSR-1\n{user}\n")
    monkeypatch.setenv("SEQREP_SPARK_REMOTE", spark_connect)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.get_dag("seqrep_erasure")
    run = dag.test(run_conf={"user_file": str(users), "reason": "DSR-1", "warehouse": str(wh), "config": str(config)})
    states = _states(run)
    assert str(run.state).endswith("success") and states == {"forget": "success", "gate_erasure": "success"}, states
    assert scan(wh, {"id": user}) == []
    (audit,) = privacy.erasure_records(wh)
    assert audit["reason"] == "DSR-1" and audit["id_hashes"] == [privacy.id_hash(user)]
    assert json.loads(next((wh / "_gates/stage=erasure").glob(f"request={audit['request']}/*.json")).read_text())["passed"]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL 15 cluster (``tests/postgres.py``) for Airflow's metadata database."""
    import postgres

    why = postgres.available()
    if why:
        if os.environ.get("SEQREP_REQUIRE_DATA") == "1":
            pytest.fail(why)
        pytest.skip(why)
    with postgres.cluster() as url:
        yield url


def test_the_nightly_dag_runs_on_airflow_with_postgres(airflow_home, slice_logs, spark, postgres_url, tmp_path):
    """Airflow's metadata in Postgres (``airflow db migrate`` on a fresh cluster), ``airflow dags
    test`` of one night (its ETL tasks marked done after the same ETL ran in this process, as for
    days 2 and 3 above; the model tasks run): every task succeeds, as Postgres records it, and the
    night's tables are published."""
    import sqlalchemy

    wh, config = tmp_path / "wh", airflow_home / "seqrep.yaml"
    etl_in_process(spark, config, wh, DAYS[0])
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_url}
    env.pop("SEQREP_TASK_SERVER")  # the tasks as processes of their own (the other tests fork them)
    for cmd in (["db", "migrate"], ["pools", "set", "gpu", "1", "torch tasks"]):
        out = subprocess.run([sys.executable, "-m", "airflow", *cmd], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
    conf = json.dumps({"warehouse": str(wh), "config": str(config), "driver_memory": "1g"})
    out = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "seqrep_nightly",
                          (datetime.combine(DAYS[0], datetime.min.time()) + timedelta(days=1)).isoformat() + "+00:00",
                          "--conf", conf, "--mark-success-pattern", ETL_TASKS], env=env, capture_output=True, text=True,
                         timeout=1200)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as con:
        (run_state,) = con.execute(sqlalchemy.text(
            "SELECT state FROM dag_run WHERE dag_id = 'seqrep_nightly'")).one()
        states = dict(con.execute(sqlalchemy.text(
            "SELECT task_id, state FROM task_instance WHERE dag_id = 'seqrep_nightly'")).all())
    engine.dispose()
    assert run_state == "success" and states.pop("watcher") == "skipped", states
    assert set(states.values()) == {"success"} and len(states) == 14, states
    assert (wh / f"_manifests/stage=publish/model=sasrec/dt={DAYS[0]}.json").is_file()


@pytest.mark.scheduler
def test_a_backfill_through_the_scheduler_equals_seqrep_backfill(airflow_home, slice_logs, spark_connect, tmp_path):
    """Airflow for real (``make test-scheduler``): Postgres, the api-server, the scheduler and the
    dag-processor as processes (``seqrep airflow``'s, LocalExecutor), the nightly DAG unpaused and a
    2-day ``airflow backfill create`` run through the scheduler to success; its published tables
    equal those of ``seqrep backfill`` for the same days, bit for bit."""
    import postgres
    import sqlalchemy

    from pipelines.cli import main
    from pipelines.etl.processes import free_port
    from pipelines.nightly import airflow_local

    config, wh, home, port = airflow_home / "seqrep.yaml", tmp_path / "scheduled", tmp_path / "airflow", free_port()
    days = DAYS[:2]
    with postgres.cluster() as url:
        env = airflow_local.environment(home, config, wh, port)
        env.update({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url, "SEQREP_SPARK_REMOTE": spark_connect,
                    "SEQREP_RETRIES": "0", "SEQREP_START_DATE": "1997-01-01", "AIRFLOW__CORE__PARALLELISM": "2"})
        airflow_local.start(env, port)
        try:
            for cmd in (["dags", "reserialize"], ["dags", "unpause", "seqrep_nightly"],
                        # Airflow 3's backfill dates are logical dates, the start of each run's data interval:
                        # the day the run processes (unlike `dags test DATE`, whose DATE ends it)
                        ["backfill", "create", "--dag-id", "seqrep_nightly", "--from-date", str(days[0]),
                         "--to-date", str(days[-1]), "--max-active-runs", "1",
                         "--reprocess-behavior", "completed"]):
                out = subprocess.run([sys.executable, "-m", "airflow", *cmd], env=env, capture_output=True, text=True)
                assert out.returncode == 0, (cmd, out.stderr[-2000:])
            engine = sqlalchemy.create_engine(url)
            deadline, states = datetime.now() + timedelta(minutes=25), []
            while datetime.now() < deadline:
                with engine.connect() as con:
                    states = [s for (s,) in con.execute(sqlalchemy.text(
                        "SELECT state FROM dag_run WHERE dag_id = 'seqrep_nightly' AND run_type = 'backfill' "
                        "ORDER BY logical_date")).all()]  # unpausing also starts the latest scheduled run
                if len(states) == 2 and set(states) <= {"success", "failed"}:
                    break
                time.sleep(5)
            engine.dispose()
        finally:
            airflow_local.stop(home)
    assert states == ["success", "success"], (states, (home / "scheduler.log").read_text()[-3000:])
    assert main(["backfill", "--from", str(days[0]), "--to", str(days[-1]), "--config", str(config),
                 "--warehouse", str(tmp_path / "backfill")]) == 0
    for day in days:
        assert_same_tables(tables(wh, day), tables(tmp_path / "backfill", day), f"scheduler vs seqrep backfill, {day}")
