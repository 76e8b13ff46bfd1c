"""The nightly DAG's ETL tasks, in order: what each runs (a ``seqrep`` command, without its
``--date``, warehouse and config) and what it does. The DAG makes each a Spark task; the
benchmark of per-task cost (``bench/task_cost.py``) runs the same commands."""

from __future__ import annotations

from typing import NamedTuple


class EtlTask(NamedTuple):
    task_id: str
    args: list[str]
    doc: str
    gate: bool = False  # a quality gate: never retried
    depends_on_past: bool = False  # continues the day before (open sessions, vocabularies)


ETL_TASKS = [
    EtlTask("ingest", ["ingest"],
            "Read the day's log (`ingest.input` of the config, `{date}` filled in) into raw/events/dt=D."),
    EtlTask("gate_raw", ["validate", "--stage", "raw"], "Quality gate on raw events.", gate=True),
    EtlTask("clean", ["etl", "--stages", "clean", "--no-gates"],
            "Split raw events into clean/events and quarantine/events (with a reason) for the day."),
    EtlTask("gate_clean", ["validate", "--stage", "clean"],
            "Quality gate on clean events and the quarantine accounting.", gate=True),
    EtlTask("sessionize", ["etl", "--stages", "sessionize", "--no-gates"],
            "Gap-based sessions; continues sessions open at the previous midnight.", depends_on_past=True),
    EtlTask("features", ["etl", "--stages", "sequences,graphs", "--no-gates"],
            "Vocabularies, per-user sequences as of the day, splits, item-transition and user-item graphs.",
            depends_on_past=True),
    EtlTask("gate_features", ["validate", "--stage", "sessions,sequences,graphs"],
            "Quality gate on sessions, sequences and graphs.", gate=True),
]
#: With ``cross_domain.pairs`` in the config: after ``gate_features``, beside the methods.
CROSS_DOMAIN_TASKS = [
    EtlTask("cross_domain", ["etl", "--stages", "cross_domain", "--no-gates"],
            "Each cross-domain pair's users and roles, mixed sequences and warm and cold-start splits.",
            depends_on_past=True),
    EtlTask("gate_cross_domain", ["validate", "--stage", "cross_domain"],
            "Quality gate on the cross-domain tables and a recount of their overlap figures.", gate=True),
]

