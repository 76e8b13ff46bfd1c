"""Method comparison (``seqrep compare``): methods x seeds on one day's data, one table with paired intervals.

For each method and seed, the version trained with ``train.seed=S`` (and the command's ``--set``)
as of the day is used when it exists, else it is trained (``train_method``: the model and its
metrics rows are written as ``seqrep train`` writes them). Every run is ranked in full on the
test split, keeping each user's values. Methods that learn nothing (``pop``, ``markov``) do not
depend on a seed: one run.

The table: test HR/NDCG/MRR@10 and coverage@10 as mean ± standard deviation over seeds, and the
paired difference in NDCG@10 against ``base``: each user's value averaged over the seeds, then
the mean of the per-user differences d_u with its 95% normal interval
mean(d) ± 1.96 · sd(d) / sqrt(n). With m methods compared to the base, an interval at 95% each
lets about 0.05 · m of them exclude zero by chance; the last column says whether the
Bonferroni interval (level 1 - 0.05 / m) still excludes it.

Written atomically to ``comparisons/name=N/dt=D/``: ``comparison.parquet`` (a row per method and
figure), ``table.md`` and ``index.html`` with two plots (NDCG@10 against coverage@10; NDCG@10 per
history-length segment).
"""

from __future__ import annotations

import html
import statistics
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from statistics import NormalDist
from typing import Any, Callable

import numpy as np

from models.data import SequenceData
from models.evaluate import EvalResult
from pipelines.core.config import Config
from pipelines.core.errors import UsageError
from pipelines.core.warehouse import Warehouse

Echo = Callable[[str], None]


#: The floors every learned method is read against: they learn nothing (counts only).
FLOORS = ("pop", "markov")


def floors(warehouse: str | Path, day: date, protocol: str) -> dict[str, float]:
    """Test NDCG@10 of most-popular and Markov on the day's ``protocol`` split, fitted in memory
    (counts, no training: seconds; nothing written), what the run report reads methods against."""
    from models.evaluate import evaluate
    from models.registry import build, method_config
    from pipelines.modeling.data import load

    data = load(warehouse, day, protocol)
    if "test" not in data.splits:
        return {}
    out = {}
    for name in FLOORS:
        model = build(method_config(name), data.n_items, data.user_vocab)
        model.prepare(data)
        out[name] = evaluate(model, data, "test").mean()[("ndcg", 10)]
    return out


@dataclass
class Run:
    """One (method, seed): its test evaluation and how it trained."""

    method: str
    seed: int
    test: EvalResult
    version: str
    epochs: int = 0
    trained: bool = False


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` over seeds (the mean alone for one value)."""
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def paired(d: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the per-user differences ``d`` and its normal interval at ``level``: (mean, low, high)."""
    if len(d) < 2:
        m = float(d.mean()) if len(d) else float("nan")
        return m, m, m
    z = 1.96 if level == 0.95 else NormalDist().inv_cdf(0.5 + level / 2)  # 1.96: the tables' convention
    half = z * float(d.std(ddof=1)) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def format_paired(d: np.ndarray) -> str:
    """``+0.0123 [+0.0045, +0.0201]``: ``paired`` at 95% as the tables print it."""
    if len(d) < 2:
        return f"{d.mean():+.4f}" if len(d) else "-"
    m, lo, hi = paired(d)
    return f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def per_user(runs: list[Run], metric: tuple[str, int] = ("ndcg", 10)) -> np.ndarray:
    """Each user's value averaged over the runs (seeds); every run ranks the same users in the same order."""
    return np.mean([r.test.per_user[metric] for r in runs], 0)


def _run(cfg: Config, data: SequenceData, method: str, seed: int, sets: list[str], echo: Echo) -> Run:
    """The trained version of ``method`` with this seed (trained now if missing), ranked on test."""
    from models.evaluate import evaluate
    from models.registry import get_method
    from models.trainer import pick_device
    from pipelines.modeling.train import ModelNotFound, load_trained, train_method

    seeded = [*sets, f"train.seed={seed}"] if get_method(method).learned else list(sets)
    trained = False
    try:
        mc, model, folder = load_trained(cfg, method, data.day, seeded)
    except ModelNotFound:
        train_method(cfg, method, data.day, sets=seeded, data=data, echo=echo)
        mc, model, folder = load_trained(cfg, method, data.day, seeded)
        trained = True
    if mc.train.protocol != data.protocol:
        raise UsageError(f"{method}: train.protocol is {mc.train.protocol}, the comparison's {data.protocol}; "
                         f"use --protocol {mc.train.protocol} or --set train.protocol={data.protocol}")
    test = evaluate(model, data, "test", mask_seen=mc.train.mask_seen, batch_size=mc.train.eval_batch_size,
                    device=pick_device(mc.train))
    epochs = len((folder / "epochs.jsonl").read_text().splitlines()) if (folder / "epochs.jsonl").is_file() else 0
    echo(f"{method} seed {seed}: test NDCG@10 {test.mean()[('ndcg', 10)]:.4f} ({'trained' if trained else 'kept'} "
         f"{folder.name})")
    return Run(method, seed, test, folder.name, epochs, trained)


def table(results: dict[str, list[Run]], base: str) -> tuple[str, list[dict[str, Any]]]:
    """The markdown table (module docstring) and its rows as data."""
    ref = per_user(results[base]) if base in results else None
    m = max(1, len(results) - 1)
    bonferroni = 1 - 0.05 / m
    head = (f"| method | seeds | HR@10 | NDCG@10 | MRR@10 | coverage@10 | ΔNDCG@10 vs {base} (paired, 95% CI) | "
            f"excludes 0 at {bonferroni:.2%} (Bonferroni, m={m}) |")
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows: list[dict[str, Any]] = []
    for method, runs in results.items():
        cells = [mean_sd([r.test.mean()[(k, 10)] for r in runs]) for k in ("hr", "ndcg", "mrr", "coverage")]
        delta, strict = "-", "-"
        row: dict[str, Any] = {"method": method, "seeds": len(runs), "base": base}
        for k in ("hr", "ndcg", "mrr", "coverage"):
            values = [r.test.mean()[(k, 10)] for r in runs]
            row[f"{k}@10"], row[f"{k}@10_sd"] = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
        if ref is not None and method != base:
            d = per_user(runs) - ref
            delta = format_paired(d)
            mean, low, high = paired(d)
            _, lo, hi = paired(d, bonferroni)
            strict = "yes" if lo > 0 or hi < 0 else "no"
            row.update(delta_ndcg=mean, delta_low=low, delta_high=high, bonferroni_low=lo, bonferroni_high=hi,
                       users=len(d))
        lines.append(f"| {method} | {len(runs)} | {' | '.join(cells)} | {delta} | {strict} |")
        rows.append(row)
    return "\n".join(lines), rows


def compare(cfg: Config, methods: list[str], seeds: list[int], day: date, *, protocol: str = "loo",
            base: str | None = None, sets: list[str] = (), name: str = "default", echo: Echo = print) -> Path:
    """Train what is missing, rank every run on test, write the comparison (module docstring);
    returns its folder."""
    from pipelines.modeling.data import load

    base = base or methods[0]
    if base not in methods:
        raise UsageError(f"--base {base}: not one of the compared methods ({', '.join(methods)})")
    if len(set(methods)) != len(methods):
        raise UsageError(f"--methods {','.join(methods)}: a method is named twice")
    sets = [*sets, f"train.protocol={protocol}"]
    data = load(cfg.warehouse, day, protocol)
    echo(f"compare {', '.join(methods)} over seeds {', '.join(map(str, seeds))} on {len(data.users):,} users "
         f"as of {day} ({protocol}), against {base}")
    from models.registry import get_method

    results = {m: [_run(cfg, data, m, s, sets, echo) for s in (seeds if get_method(m).learned else seeds[:1])]
               for m in methods}
    text, rows = table(results, base)
    wh = Warehouse(cfg.warehouse)
    folder = wh.comparison_folder(name, day)
    wh.write_folder(folder, lambda out: _write(out, results, text, rows, day, protocol))
    echo(text)
    echo(f"comparison: {folder / 'index.html'}")
    return folder


def _write(out: Path, results: dict[str, list[Run]], text: str, rows: list[dict[str, Any]], day: date,
           protocol: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{**r, "dt": day, "protocol": protocol} for r in rows]),
                   out / "comparison.parquet")
    (out / "table.md").write_text(text + "\n")
    images = _plots(results, out)
    body = "".join(f"<img src='{i}' alt='{i}'>" for i in images)
    cells = [[html.escape(c.strip()) for c in line.strip().strip("|").split("|")]
             for line in text.splitlines() if not line.startswith("| ---")]
    rows = "".join("<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{c}</{'th' if i == 0 else 'td'}>" for c in r)
                   + "</tr>" for i, r in enumerate(cells))
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>seqrep compare</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th{background:#f3f3f3}td{white-space:nowrap}"
        "td:first-child{text-align:left}img{max-width:48%}</style>"
        f"</head><body><h1>Methods compared as of {day} ({protocol}, test split, full ranking)</h1>"
        f"<table>{rows}</table>{body}</body></html>\n")


def _plots(results: dict[str, list[Run]], out: Path) -> list[str]:
    """NDCG@10 against coverage@10 (one point per run), and NDCG@10 per history-length segment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method, runs in results.items():
        ax.scatter([r.test.mean()[("coverage", 10)] for r in runs], [r.test.mean()[("ndcg", 10)] for r in runs],
                   label=method)
    ax.set(xlabel="coverage@10", ylabel="test NDCG@10", title="accuracy against coverage")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "accuracy_coverage.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    segments = sorted({s for runs in results.values() for s in runs[0].test.segments.get("history", [])},
                      key=lambda s: int(s.split("-")[0].rstrip("+")))  # 0, 1-5, 6-20, 21-50, 51+
    width = 0.8 / max(1, len(results))
    for i, (method, runs) in enumerate(results.items()):
        labels, values = runs[0].test.segments.get("history"), per_user(runs)
        if labels is None:
            continue
        ax.bar([j + i * width for j in range(len(segments))],
               [float(values[labels == s].mean()) if (labels == s).any() else 0.0 for s in segments], width, label=method)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(segments))], segments)
    ax.set(xlabel="history length", ylabel="test NDCG@10", title="accuracy per segment")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "segments.png", dpi=100)
    plt.close(fig)
    return ["accuracy_coverage.png", "segments.png"]
