"""Readable reasons for failed nightly tasks (the DAG's failure callback; kept light: no
pyspark, torch or GX, since the DAG file imports it when it is parsed).

A ``seqrep`` process that stops on an error writes its one-line message to the file named by
``SEQREP_REASON_FILE`` (the DAG sets it per task). When a task fails for good (retries spent),
the callback writes ``_runs/dt=D/<task_id>.json`` under the warehouse: the task, the try, that
reason (or the exception Airflow saw) and where the log is. The run report lists them.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.core.warehouse import Warehouse, replace_file

REASON_ENV = "SEQREP_REASON_FILE"


def reason_file(warehouse: str, day: str, task_id: str) -> Path:
    """``_runs/dt=D/<task>.reason`` under the warehouse (the DAG templates the same path)."""
    return Warehouse(warehouse).reason_file(day, task_id)


def write_reason(message: str) -> None:
    """Called by the CLI on an error: one line, for the failure callback to pick up."""
    path = os.environ.get(REASON_ENV)
    if path:
        replace_file(Path(path), lambda tmp: tmp.write_text(message.strip() + "\n"))


def clear_reason() -> None:
    """Called by the CLI as it starts, so a reason never outlives the try that wrote it."""
    path = os.environ.get(REASON_ENV)
    if path:
        Path(path).unlink(missing_ok=True)


def record_failure(context: dict[str, Any]) -> None:
    """Airflow ``on_failure_callback``: write the failed task's reason under the warehouse."""
    ti = context["ti"]
    warehouse = context["params"]["warehouse"]
    day = context["data_interval_start"].date().isoformat()
    reason_path = reason_file(warehouse, day, ti.task_id)
    reason = reason_path.read_text().strip() if reason_path.is_file() else str(context.get("exception") or "unknown")
    Warehouse(warehouse).write_json(reason_path.with_suffix(".json"), {
        "task": ti.task_id, "day": day, "try": getattr(ti, "try_number", None), "reason": reason,
        "log_url": getattr(ti, "log_url", None), "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
