"""The metrics tables: rows of a full-ranking evaluation, written per (method, day, version).

``metrics/method=M/dt=D/<version>.parquet``: method, dataset, protocol, split, metric, k, value,
users, model_version, seed (``method`` and ``dt`` are the partition keys): every user's accuracy
and the metrics beyond it.

``metric_segments/method=M/dt=D/<version>.parquet``: the same columns and ``segmentation``,
``segment``: HR, NDCG and MRR of each segment of users (``models.evaluate.segment_labels``:
history length, target popularity), ``users`` its size; the segments' values weighted by their
sizes give the overall value. A table of its own, so a query of ``metrics`` never mixes them in.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from models.evaluate import KS, EvalResult
from pipelines.core.warehouse import Warehouse


def metric_rows(result: EvalResult, *, method: str, dataset: str, protocol: str, day: date,
                version: str, seed: int) -> list[dict[str, Any]]:
    """The metrics table's rows of one evaluated split."""
    return [
        {"method": method, "dataset": dataset, "protocol": protocol, "split": result.split, "metric": m,
         "k": k, "value": v, "users": len(result.users), "model_version": version, "seed": seed, "dt": day}
        for (m, k), v in sorted(result.mean().items())
    ]


def segment_rows(result: EvalResult, *, method: str, dataset: str, protocol: str, day: date,
                 version: str, seed: int) -> list[dict[str, Any]]:
    """HR, NDCG and MRR of each segment of one evaluated split (module docstring)."""
    import numpy as np

    rows = []
    for segmentation, labels in result.segments.items():
        for segment in sorted(set(labels.tolist())):
            members = labels == segment
            for (m, k), values in sorted(result.per_user.items()):
                if m in ("hr", "ndcg", "mrr"):
                    rows.append({"method": method, "dataset": dataset, "protocol": protocol, "split": result.split,
                                 "segmentation": segmentation, "segment": segment, "metric": m, "k": k,
                                 "value": float(np.mean(values[members])), "users": int(members.sum()),
                                 "model_version": version, "seed": seed, "dt": day})
    return rows


def write_metrics(wh: Warehouse | str | Path, rows: list[dict[str, Any]], segments: bool = False) -> Path:
    """Write rows of one (method, day, version) as ``metrics/method=M/dt=D/<version>.parquet``
    (``segments``: ``segment_rows``' rows, as ``metric_segments/...``), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    wh = wh if isinstance(wh, Warehouse) else Warehouse(wh)
    first = rows[0]
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k not in ("method", "dt")} for r in rows])
    where = wh.segment_metrics_file if segments else wh.metrics_file
    return wh.write_file(where(first["method"], first["dt"], first["model_version"]),
                         lambda tmp: pq.write_table(table, tmp))


def read_metrics(wh: Warehouse, method: str, day: date, version: str) -> list[dict[str, Any]] | None:
    """The rows of one version's metrics file (None: not evaluated)."""
    import pyarrow.parquet as pq

    path = wh.metrics_file(method, day, version)
    return pq.read_table(path).to_pylist() if path.is_file() else None


#: Columns of ``format_table``: accuracy at each K, then the metrics beyond accuracy at 10.
TABLE_COLUMNS = ([(m, k) for k in KS for m in ("hr", "ndcg", "mrr")],
                 [(m, 10) for m in ("coverage", "gini", "entropy", "popularity", "novelty", "tail", "ild")])


def format_table(rows: list[dict[str, Any]]) -> str:
    """Methods as rows, HR/NDCG/MRR at each K as columns; below, the metrics beyond accuracy at 10
    (``models/metrics.py``) where the rows have them."""
    by_method: dict[str, dict[tuple[str, int], float]] = {}
    for r in rows:
        by_method.setdefault(r["method"], {})[(r["metric"], r["k"])] = r["value"]
    blocks = []
    for cols in TABLE_COLUMNS:
        if not any(c in values for values in by_method.values() for c in cols):
            continue
        labels = [f"{m.upper()}@{k}" for m, k in cols]
        w = max(10, *(len(x) + 2 for x in labels))
        head = f"{'method':<10}" + "".join(f"{x:>{w}}" for x in labels)
        lines = [head, "-" * len(head)]
        for method, values in by_method.items():
            lines.append(f"{method:<10}" + "".join(f"{values.get(c, float('nan')):>{w}.4f}" for c in cols))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def ndcg_at_10(wh: Warehouse, method: str, day: date, version: str, split: str = "test") -> float:
    """The NDCG@10 of a version on ``split`` (what the regression gate and publish compare)."""
    from pipelines.core.errors import WarehouseError

    rows = read_metrics(wh, method, day, version)
    if rows is None:
        raise WarehouseError(f"no metrics of {method} {version} ({wh.metrics_file(method, day, version)}): "
                             f"run `seqrep evaluate --method {method} --date {day}`")
    for r in rows:
        if r["split"] == split and r["metric"] == "ndcg" and r["k"] == 10:
            return float(r["value"])
    raise WarehouseError(f"{wh.metrics_file(method, day, version)} has no {split} NDCG@10 "
                         f"(the protocol has no {split} split as of {day})")
