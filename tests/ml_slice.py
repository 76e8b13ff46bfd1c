"""ml-100k ratings as a product's daily Parquet logs: one folder ``dt=D`` per day, read by the
``parquet`` adapter as a user's own logs would be (``tests/test_dag.py``'s slice, and
``bench/scheduler.py``'s)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np


def write_daily_logs(u_data: Path, days: list[date], out: Path) -> Path:
    """The ratings of ``u_data`` (ml-100k's ``u.data``) falling on each of ``days`` (UTC), written to
    ``out/dt=D/part-0.parquet``; returns ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = np.loadtxt(u_data, dtype=np.int64)
    for day in days:
        lo = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())
        rows = raw[(raw[:, 3] >= lo) & (raw[:, 3] < lo + 86400)]
        (out / f"dt={day}").mkdir(parents=True)
        pq.write_table(pa.table({
            "event_id": [f"{u}-{i}" for u, i in rows[:, :2]], "user_id": rows[:, 0].astype(str),
            "item_id": rows[:, 1].astype(str), "event_type": ["rate"] * len(rows), "rating": rows[:, 2].astype(float),
            "ts": rows[:, 3]}), out / f"dt={day}" / "part-0.parquet")
    return out
