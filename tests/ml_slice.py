"""ml-100k ratings as a product's daily Parquet logs: one folder ``dt=D`` per day, read by the
``parquet`` adapter as a user's own logs would be (``tests/test_dag.py``'s slice, and
``bench/scheduler.py``'s), and the test profile that runs the nightly DAG on it."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

CONFIG = """
spark: {{shuffle_partitions: 2}}
ingest:
  source: parquet
  name: ml100k
  input: {logs}/dt={{date}}
  columns: {{event_id: event_id, value: rating}}
nightly: {{methods: [sasrec], warm_epochs: 1{extra_nightly}}}
methods:
  sasrec:
    model: {{dim: 16, max_len: 20, num_layers: 1, num_heads: 1}}
    train: {{epochs: 3, batch_size: 64{extra_train}}}
"""


def write_config(path: Path, logs: Path, *, sabotage: bool = False) -> Path:
    """The test profile; ``sabotage`` trains from scratch with a learning rate that leaves the
    model at its random initialization, so its NDCG@10 collapses."""
    path.write_text(CONFIG.format(logs=logs, extra_nightly=", full_retrain_days: 1" if sabotage else "",
                                  extra_train=", lr: 1.0e-12" if sabotage else ""))
    return path


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
