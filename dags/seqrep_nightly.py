"""seqrep nightly: one day of behavior logs into the warehouse.

ingest -> gate_raw -> clean -> gate_clean -> sessionize -> gate_sessions -> sequences ->
gate_sequences -> graphs -> gate_graphs: each a Spark job submitted through the Spark provider
for the run's data interval (the UTC day it covers). A gate runs the stage's Great Expectations
suite (``seqrep validate``); when it fails, the tasks after it do not run for that day, and
earlier days' outputs stay as they were. Its results are in ``_gates/`` under the warehouse. The Spark master comes from
the Airflow connection ``seqrep_spark`` (``local[*]`` by default, a cluster by configuration).
Sessions, vocabularies and sequences continue from the previous day, so those tasks depend on
their previous run and the DAG runs one day at a time.

A run processes its data interval: the scheduled run at 2024-01-02 00:00 UTC, and
``airflow dags test seqrep_nightly 2024-01-02``, both process 2024-01-01.
"""

from __future__ import annotations

import os
from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param
from airflow.timetables.interval import CronDataIntervalTimetable

# The Spark application: a thin entry into the seqrep CLI (found without importing the package).
SPARK_APP = str(Path(find_spec("pipelines").submodule_search_locations[0]) / "spark_app.py")
DAY = "{{ data_interval_start | ds }}"
COMMON = ["--warehouse", "{{ params.warehouse }}", "--config", "{{ params.config }}"]

with DAG(
    dag_id="seqrep_nightly",
    description="Behavior logs -> clean events, sessions, sequences and graphs, one UTC day per run",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["seqrep", "etl"],
    params={
        "warehouse": Param(os.environ.get("SEQREP_WAREHOUSE", "warehouse"), type="string",
                           description="warehouse folder or URI"),
        "config": Param(os.environ.get("SEQREP_CONFIG", ""), type="string",
                        description="seqrep YAML config (ingest source and input, stage settings)"),
        "driver_memory": Param("4g", type="string", description="Spark driver memory"),
    },
    default_args={"retries": 0, "execution_timeout": timedelta(hours=6)},
) as dag:

    def spark_task(task_id: str, args: list[str], doc: str, depends_on_past: bool = False) -> SparkSubmitOperator:
        return SparkSubmitOperator(
            task_id=task_id,
            doc_md=doc,
            conn_id="seqrep_spark",
            application=SPARK_APP,
            application_args=[*args, *COMMON],
            name=f"seqrep-{task_id}-{DAY}",
            conf={"spark.driver.memory": "{{ params.driver_memory }}",
                  "spark.driver.extraJavaOptions": "-Duser.timezone=UTC -XX:MaxDirectMemorySize=1g"},
            env_vars={"MALLOC_ARENA_MAX": "2"},  # see pipelines/spark.py: bounds the JVM's resident memory
            depends_on_past=depends_on_past,
        )

    ingest = spark_task("ingest", ["ingest", "--date", DAY],
                        "Read the day's log (`ingest.input` of the config, `{date}` filled in) into raw/events/dt=D.")
    chain = [ingest]
    steps = [
        ("clean", "raw", "Split raw events into clean/events and quarantine/events (with a reason) for the day.", False),
        ("sessionize", "clean", "Gap-based sessions; continues sessions open at the previous midnight.", True),
        ("sequences", "sessions", "Vocabularies, per-user sequences as of the day, leave-one-out and temporal splits.", True),
        ("graphs", "sequences", "Item-transition and user-item edge lists with node tables for the day.", False),
    ]
    for stage, gate_before, doc, carries_state in steps:
        chain.append(spark_task(f"gate_{gate_before}", ["validate", "--stage", gate_before, "--date", DAY],
                                f"Quality gate on the {gate_before} output (Great Expectations)."))
        chain.append(spark_task(stage, ["etl", "--date", DAY, "--stages", stage, "--no-gates"], doc,
                                depends_on_past=carries_state))
    chain.append(spark_task("gate_graphs", ["validate", "--stage", "graphs", "--date", DAY],
                            "Quality gate on the graphs output (Great Expectations)."))
    for upstream, downstream in zip(chain, chain[1:]):
        upstream >> downstream
