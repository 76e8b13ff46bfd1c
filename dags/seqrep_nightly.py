"""seqrep nightly: one UTC day of behavior logs into published user and item embeddings.

ETL, each task a Spark job (``pipelines/nightly/etl_tasks.py``): submitted through the Spark
provider (master from the Airflow connection ``seqrep_spark``: ``local[*]`` by default, a cluster by
configuration), or, when ``SEQREP_SPARK_REMOTE`` names a Spark Connect server
(``seqrep spark-server start``), a ``seqrep`` process that is its client (no JVM start per task)::

    ingest -> gate_raw -> clean -> gate_clean -> sessionize -> features -> gate_features

``features`` writes sequences and graphs; ``gate_features`` validates sessions, sequences and
graphs (Great Expectations, results in ``_gates/``). With ``cross_domain.pairs`` in the config,
``gate_features -> cross_domain -> gate_cross_domain`` assembles the cross-domain pairs beside the methods. Then one task group per method of the
config's ``nightly.methods``, each task its own ``seqrep`` process (``pipelines/nightly/steps.py``), the
torch ones in the ``gpu`` pool and the ``gpu`` queue (``SEQREP_GPU_QUEUE`` names another): a Celery
worker started with ``--queues gpu`` takes them, CUDA when it has it, CPU otherwise; executors
without queues (Local, ``dag.test()``) ignore it::

    train -> evaluate -> regression_gate -> infer -> gate_embeddings -> publish

and, after ``gate_cross_domain``, one per pair and method of ``cross_domain.methods`` (group
``METHOD-PAIR``, published as ``METHOD.PAIR``: a full retrain on the pair's view each night,
evaluated as it trains)::

    train -> infer -> gate_embeddings -> publish

a ``stream_heartbeat_<method>`` task per method of ``stream.methods`` (the stream itself is a
long-running service, README "Real time"; the task fails when its heartbeat says it stopped),
and ``report`` (the day's HTML page, whatever happened; ``watcher`` then fails the run if any
task failed, since ``report`` succeeding would otherwise make it a success). A failed gate stops what follows it for
that day (a regression stops one method: the last published tables stay live); earlier days'
outputs stay as they were. Spark and torch tasks retry with exponential backoff, gates do not; a
task that fails for good leaves its reason in ``_runs/dt=D/<task>.json``.

A run processes its data interval: the scheduled run at 2024-01-02 00:00 UTC and ``airflow dags
test seqrep_nightly 2024-01-02`` process 2024-01-01; ``airflow backfill create --from-date
2024-01-01`` takes logical dates (interval starts), so its first run processes 2024-01-01. Sessions, vocabularies, sequences and warm starts continue from the day
before, so runs go one day at a time (``max_active_runs=1``; give backfills
``--max-active-runs 1``).

The methods are read when the file is parsed, from the config file named by ``SEQREP_CONFIG``
(``sasrec`` without one); the run's ``config`` parameter gives every task its settings.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Asset, Param, TaskGroup, task
from airflow.timetables.interval import CronDataIntervalTimetable

from pipelines.core.config import load_config  # light: pydantic and yaml
from pipelines.modeling.pair_runs import run_names  # light: names from the config
from pipelines.nightly.etl_tasks import CROSS_DOMAIN_TASKS, ETL_TASKS, EtlTask
from pipelines.nightly.failures import REASON_ENV, record_failure

# The Spark application: a thin entry into the seqrep CLI (found without importing the package).
SPARK_APP = str(Path(find_spec("pipelines").submodule_search_locations[0]) / "spark_app.py")
DAY = "{{ data_interval_start | ds }}"
COMMON = ["--warehouse", "{{ params.warehouse }}", "--config", "{{ params.config }}"]
REASON = "{{ params.warehouse }}/_runs/dt=" + DAY + "/{{ ti.task_id }}.reason"
RETRIES = int(os.environ.get("SEQREP_RETRIES", "2"))
RETRY = {"retries": RETRIES, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True,
         "max_retry_delay": timedelta(minutes=30)}
NO_RETRY = {"retries": 0}
CONFIG = load_config(os.environ.get("SEQREP_CONFIG") or None)
METHODS = list(CONFIG.nightly.methods)
WAREHOUSE = os.environ.get("SEQREP_WAREHOUSE", "warehouse")
# A Spark Connect server (`seqrep spark-server start`): the ETL tasks are its clients, with no
# JVM of their own; without one each is a spark-submit on the `seqrep_spark` connection's master.
REMOTE = os.environ.get("SEQREP_SPARK_REMOTE")
# The first day a run may process: backfills of older logs need it earlier (catchup stays off).
#: The Celery queue of the torch tasks (train, evaluate, infer): only the GPU worker reads it.
GPU_QUEUE = os.environ.get("SEQREP_GPU_QUEUE", "gpu")
START = pendulum.parse(os.environ.get("SEQREP_START_DATE", "2020-01-01"), tz="UTC")

with DAG(
    dag_id="seqrep_nightly",
    description="Behavior logs -> sequences and graphs -> trained, evaluated, published embeddings; one UTC day per run",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    tags=["seqrep", "etl", "models"],
    params={
        "warehouse": Param(WAREHOUSE, type="string", description="warehouse folder or URI"),
        "config": Param(os.environ.get("SEQREP_CONFIG", ""), type="string",
                        description="seqrep YAML config (ingest source and input, stage and method settings)"),
        "driver_memory": Param("4g", type="string", description="Spark driver memory"),
    },
    default_args={"execution_timeout": timedelta(hours=6), "on_failure_callback": record_failure},
) as dag:

    def spark_task(t: EtlTask) -> SparkSubmitOperator | BashOperator:
        """A Spark job: a Spark Connect client when the workers have a server, else a spark-submit."""
        if REMOTE:
            return seqrep_task(t.task_id, " ".join(t.args), t.doc, gate=t.gate, depends_on_past=t.depends_on_past,
                               env={"SPARK_REMOTE": REMOTE, "MALLOC_ARENA_MAX": "2"})
        return SparkSubmitOperator(
            task_id=t.task_id,
            doc_md=t.doc,
            conn_id="seqrep_spark",
            application=SPARK_APP,
            application_args=[*t.args, "--date", DAY, *COMMON],
            name=f"seqrep-{t.task_id}-{DAY}",
            conf={"spark.driver.memory": "{{ params.driver_memory }}",
                  "spark.driver.extraJavaOptions": "-Duser.timezone=UTC -XX:MaxDirectMemorySize=1g"},
            # MALLOC_ARENA_MAX: see pipelines/etl/spark.py (bounds the JVM's resident memory).
            env_vars={"MALLOC_ARENA_MAX": "2", REASON_ENV: REASON},
            depends_on_past=t.depends_on_past,
            **(NO_RETRY if t.gate else RETRY),
        )

    def seqrep_task(task_id: str, command: str, doc: str, *, gate: bool = False, gpu: bool = False,
                    env: dict[str, str] | None = None, **kwargs) -> BashOperator:
        """A ``seqrep`` process; paths reach it through the environment, never the command line."""
        return BashOperator(
            task_id=task_id, doc_md=doc,
            bash_command=f"{sys.executable} -m pipelines.cli {command} --date {DAY}",
            env={"SEQREP_WAREHOUSE": "{{ params.warehouse }}", "SEQREP_CONFIG": "{{ params.config }}",
                 REASON_ENV: REASON, **(env or {})},
            append_env=True,
            pool="gpu" if gpu else "default_pool", **({"queue": GPU_QUEUE} if gpu else {}),
            **(NO_RETRY if gate else RETRY), **kwargs,
        )

    etl = [spark_task(t) for t in ETL_TASKS]
    for upstream, downstream in zip(etl, etl[1:]):
        upstream >> downstream

    report = seqrep_task("report", "report", "The day's run report (HTML and PNGs) under reports/dt=D.",
                         trigger_rule="all_done")
    def outlets(name: str) -> list[Asset]:
        """The Assets a publish task updates: the method's (or pair run's) user and item tables."""
        return [Asset(name=f"seqrep.embeddings.{kind}.{name}", group="seqrep",
                      uri=f"file://{Path(WAREHOUSE).resolve()}/embeddings/{kind}/model={name}")
                for kind in ("users", "items")]

    def publishing(name: str) -> list[BashOperator]:
        """infer -> gate_embeddings -> publish of a method or a pair run."""
        return [
            seqrep_task("infer", f"infer --method {name}", "User and item embedding tables as of the day.", gpu=True),
            seqrep_task("gate_embeddings", f"validate --stage embeddings --method {name}",
                        "Quality gate on the embedding tables.", gate=True),
            seqrep_task("publish", f"publish --method {name}",
                        "Item index and the publish record: the day's tables become the live ones.",
                        outlets=outlets(name)),
        ]

    def chain(upstream, steps: list) -> None:
        for a, b in zip([upstream, *steps], [*steps, report]):
            a >> b

    if CONFIG.cross_domain.pairs:
        cross = [spark_task(t) for t in CROSS_DOMAIN_TASKS]
        etl[-1] >> cross[0] >> cross[1] >> report
        for name in run_names(CONFIG):
            with TaskGroup(group_id=name.replace(".", "-"), tooltip=f"{name}: train on the pair, infer, gate, publish"):
                steps = [seqrep_task("train", f"train --method {name}",
                                     "A full retrain on the pair's view as of the day (runs it reads first), "
                                     "evaluated on the warm and cold-start splits.", gpu=True),
                         *publishing(name)]
            chain(cross[1], steps)
    for method in METHODS:
        with TaskGroup(group_id=method, tooltip=f"{method}: train, evaluate, gate, infer, publish"):
            steps = [
                seqrep_task("train", f"train --method {method} --incremental",
                            "Warm start from the last published version (or a full retrain), on data as of the day.",
                            gpu=True),
                seqrep_task("evaluate", f"evaluate --method {method}", "Full-ranking metrics on valid and test.", gpu=True),
                seqrep_task("regression_gate", f"validate --stage regression --method {method}",
                            "No publish when test NDCG@10 drops more than nightly.max_ndcg_drop.", gate=True),
                *publishing(method),
            ]
        chain(etl[-1], steps)
    if not METHODS:
        etl[-1] >> report
    for method in CONFIG.stream.methods:  # a stream is a service beside the DAG: check that it is alive
        seqrep_task(f"stream_heartbeat_{method}", f"stream --method {method} --check",
                    f"Fails when the {method} stream (`seqrep stream`, a service) has stopped: its heartbeat is "
                    "missing, older than stream.heartbeat_max_age_s, or says stopped.", gate=True) >> report
    if CONFIG.retention.any:  # after everything that reads old days, before the report lists it
        retention = seqrep_task("retention", "retention", "Drop partitions older than retention.<family>_days.",
                                trigger_rule="all_done")
        for t in report.upstream_list:
            t >> retention
        retention >> report

    @task(task_id="watcher", trigger_rule="one_failed", retries=0,
          doc_md="Fails the run when any task failed: `report` runs whatever happened and is a leaf, "
                 "so without this a failed night would end as a successful run.")
    def watcher() -> None:
        raise RuntimeError("a task of this run failed; its reason is in _runs/dt=<day>/ and the run report")

    dag.tasks >> watcher()
