"""Full-ranking evaluation of a method on a split, and the metrics table.

Each evaluated user reads the last ``max_len`` events of their history (the split's
``history_len``), every item is scored, the user's seen items are masked (``mask_seen``), and
``models.metrics`` turns the target ranks into HR, NDCG and MRR at 10 and 20. Per-user values are
kept so methods and seeds can be compared paired on users.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.base import SequenceModel
from models.data import SequenceData, ragged_positions, ragged_rows
from models.metrics import mask_scores, metrics_from_ranks, target_ranks

KS = (10, 20)


@dataclass
class EvalResult:
    split: str
    users: np.ndarray  # user_idx of each evaluated row
    per_user: dict[tuple[str, int], np.ndarray]

    def mean(self) -> dict[tuple[str, int], float]:
        return {key: float(v.mean()) if len(v) else float("nan") for key, v in self.per_user.items()}


@torch.no_grad()
def evaluate(model: SequenceModel, data: SequenceData, split: str, *, mask_seen: bool = True,
             batch_size: int = 512, device: torch.device | str = "cpu") -> EvalResult:
    """HR/NDCG/MRR at ``KS`` of ``model`` on ``data.splits[split]``, full ranking."""
    if split not in data.splits:
        raise ValueError(f"no {split!r} rows in the {data.protocol} splits as of {data.day}")
    sp = data.splits[split]
    was_training = model.training
    model.eval()
    # Bound the score matrix to about 64M floats whatever the catalogue size.
    step = max(1, min(batch_size, (1 << 26) // (data.n_items + 1)))
    per_user: dict[tuple[str, int], list[np.ndarray]] = {}
    for lo in range(0, len(sp), step):
        rows, hist = sp.rows[lo:lo + step], sp.history_len[lo:lo + step]
        history, lengths = model.histories(data, rows, hist)
        history_t = torch.as_tensor(history, device=device)
        lengths_t = torch.as_tensor(lengths, device=device)
        users_t = torch.as_tensor(data.users[rows], device=device)
        scores = model.full_scores(history_t, lengths_t, users_t).float()
        if mask_seen:
            starts = data.offsets[rows]
            pos = ragged_positions(starts, starts + hist)
            r = torch.as_tensor(ragged_rows(starts, starts + hist), device=device)
            c = torch.as_tensor(data.items[pos], device=device)
        else:
            r = c = torch.zeros(0, dtype=torch.long, device=device)
        mask_scores(scores, r, c)
        ranks = target_ranks(scores, torch.as_tensor(sp.targets[lo:lo + step], device=device))
        for key, value in metrics_from_ranks(ranks.cpu(), KS).items():
            per_user.setdefault(key, []).append(value.numpy())
    model.train(was_training)
    return EvalResult(split, data.users[sp.rows], {k: np.concatenate(v) for k, v in per_user.items()})


def metric_rows(result: EvalResult, *, method: str, dataset: str, protocol: str, day: date,
                version: str, seed: int) -> list[dict[str, Any]]:
    """The metrics table's rows (``metrics/method=M/dt=D``)."""
    return [
        {"method": method, "dataset": dataset, "protocol": protocol, "split": result.split, "metric": m,
         "k": k, "value": v, "users": len(result.users), "model_version": version, "seed": seed, "dt": day}
        for (m, k), v in sorted(result.mean().items())
    ]


def write_metrics(warehouse: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows of one (method, day, version) as ``metrics/method=M/dt=D/<version>.parquet``, atomically."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.warehouse import Warehouse

    first = rows[0]
    folder = Warehouse(warehouse).table(f"metrics/method={first['method']}") / f"dt={first['dt']}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{first['model_version']}.parquet"
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k not in ("method", "dt")} for r in rows])
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def format_table(rows: list[dict[str, Any]]) -> str:
    """Methods as rows, HR/NDCG/MRR at each K as columns."""
    cols = [(m, k) for k in KS for m in ("hr", "ndcg", "mrr")]
    by_method: dict[str, dict[tuple[str, int], float]] = {}
    for r in rows:
        by_method.setdefault(r["method"], {})[(r["metric"], r["k"])] = r["value"]
    head = f"{'method':<10}" + "".join(f"{m.upper() + '@' + str(k):>10}" for m, k in cols)
    lines = [head, "-" * len(head)]
    for method, values in by_method.items():
        lines.append(f"{method:<10}" + "".join(f"{values.get(c, float('nan')):>10.4f}" for c in cols))
    return "\n".join(lines)
