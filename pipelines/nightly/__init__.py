"""Orchestration: the ETL run with its gates (``etl.py``), a night's model steps (``steps.py``),
backfill, the run report, failure records of DAG tasks and the demo. The nightly DAG
(``dags/seqrep_nightly.py``) and the command line call into it."""
