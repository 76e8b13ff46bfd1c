"""seqrep erasure: a batch of erasure requests (GDPR art. 17, CCPA) through ``seqrep forget``.

Triggered on demand with the file of user ids (one per line, as the product knows them) and the
request's reference::

    airflow dags trigger seqrep_erasure --conf '{"user_file": "/requests/2024-05-01.txt", "reason": "DSR-1234"}'

Tasks (``pipelines/nightly/forget.py``)::

    forget -> gate_erasure

``forget`` rewrites every partition holding the users in one run and writes the audit record;
``gate_erasure`` scans the committed warehouse: neither an id nor its pseudonym may be anywhere
(exit 1, the run fails, when one is). The next nightly run fully retrains every method. One run
at a time, and none beside the nightly run's writers: ``forget`` takes the ETL's and every
method's writer locks; while the nightly run holds one it exits 5 (busy) and retries every 10
minutes (and a nightly task that finds ``forget`` writing does the same).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

from pipelines.nightly.failures import REASON_ENV, record_failure

WAREHOUSE = os.environ.get("SEQREP_WAREHOUSE", "warehouse")
# A Spark Connect server (`seqrep spark-server start`): forget is its client, as the nightly ETL tasks are.
REMOTE = os.environ.get("SEQREP_SPARK_REMOTE")
FORGET = f"{sys.executable} -m pipelines.cli forget --user-file \"$SEQREP_USER_FILE\""

with DAG(
    dag_id="seqrep_erasure",
    description="Erase users from every table, embedding table and record of the warehouse, then prove it",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2020, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["seqrep", "privacy"],
    params={
        "user_file": Param(type="string", description="a file of the users' ids, one per line"),
        "reason": Param(type="string", minLength=1, description="the request's reference (kept in the audit record)"),
        "warehouse": Param(WAREHOUSE, type="string", description="warehouse folder"),
        "config": Param(os.environ.get("SEQREP_CONFIG", ""), type="string", description="seqrep YAML config"),
    },
    default_args={"execution_timeout": timedelta(hours=6), "on_failure_callback": record_failure, "retries": 0},
) as dag:
    # Values reach the command through the environment, never spliced into the shell line.
    env = {"SEQREP_WAREHOUSE": "{{ params.warehouse }}", "SEQREP_CONFIG": "{{ params.config }}",
           "SEQREP_USER_FILE": "{{ params.user_file }}", "SEQREP_REASON": "{{ params.reason }}",
           REASON_ENV: "{{ params.warehouse }}/_runs/dt={{ data_interval_start | ds }}/{{ ti.task_id }}.reason",
           **({"SPARK_REMOTE": REMOTE, "MALLOC_ARENA_MAX": "2"} if REMOTE else {})}
    forget = BashOperator(task_id="forget", bash_command=f"{FORGET} --reason \"$SEQREP_REASON\" --no-gate",
                          env=env, append_env=True, retries=6, retry_delay=timedelta(minutes=10),
                          doc_md="Rewrite every partition holding the users, one run; the audit record.")
    gate = BashOperator(task_id="gate_erasure", bash_command=f"{FORGET} --verify", env=env, append_env=True,
                        doc_md="Scan the warehouse: neither an id nor its pseudonym anywhere.")
    forget >> gate
