"""The run report of a day: ``reports/dt=D/index.html`` and its PNGs, under the warehouse.

One page per day, built from what the night wrote (nothing is recomputed): rows in and out of
every ETL stage (their manifests), every gate's result (``_gates/``), failed tasks and their
reasons (``_runs/``), the metrics of each method's version of the day beside the floors (most
popular and Markov on the same split, fitted by the report: counts, seconds; a warning names
each method that does not beat the best of them), its training curves
(``epochs.jsonl``), metrics beyond accuracy (coverage, Gini, novelty, long-tail share,
intra-list diversity), trends of the published versions over the last nights (test NDCG@10,
coverage, training time), the size of each embedding table, and the studies of ``seqrep tune``
(best trial, Optuna's history plot). Written atomically, so a report is
either the previous one or the new one; rerunning a day replaces it.
"""

from __future__ import annotations

import html
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.warehouse import Warehouse

ETL_STAGES = ("ingest", "clean", "sessionize", "sequences", "graphs")
#: Metrics beyond accuracy shown beside each method (``models/metrics.py``).
BEYOND = ("coverage", "gini", "novelty", "tail", "ild")
#: Nights the Trends section looks back over.
TREND_NIGHTS = 14


def _stage_rows(wh: Warehouse, day: date) -> list[dict[str, Any]]:
    rows = []
    for stage in ETL_STAGES:
        for path in wh.manifests(stage, day):
            m = json.loads(path.read_text())
            rows.append({"stage": stage, "partition": str(path.parent.relative_to(wh.root / layout.MANIFESTS)),
                         "rows in": m.get("rows_in"), "rows out": m.get("rows_out"),
                         "quarantined": m.get("rows_quarantined", 0),
                         "reasons": ", ".join(f"{k} {v:,}" for k, v in (m.get("quarantine_by_reason") or {}).items())})
    return rows


def _gate_rows(wh: Warehouse, day: date) -> list[dict[str, Any]]:
    rows = []
    for path in wh.gate_results(day):
        g = json.loads(path.read_text())
        failed = [o for o in g["outcomes"] if not o["success"]]
        where = path.parent.relative_to(wh.root / layout.GATES)
        rows.append({"gate": str(where), "result": "passed" if g["passed"] else "FAILED",
                     "expectations": f"{len(g['outcomes']) - len(failed)}/{len(g['outcomes'])} met",
                     "detail": "; ".join(f"{o['expectation']}: {o.get('observed') or o.get('unexpected')}"
                                         for o in failed)[:400]})
    return rows


def _metric_rows(wh: Warehouse, day: date) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = []
    for path in wh.metrics_files(day):
        method = path.parent.parent.name.split("=", 1)[1]
        table = pq.read_table(path).to_pylist()
        values = {(r["split"], r["metric"], r["k"]): r["value"] for r in table}
        cfg_path = wh.model_folder(method, path.stem) / "config.json"
        meta = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        rows.append({"method": method, "version": path.stem, "protocol": table[0]["protocol"] if table else None,
                     "pair": "/" in (table[0]["dataset"] if table else ""),
                     "training": "warm start" if meta.get("warm_start_from") else "full",
                     "epochs": meta.get("epochs"), "train s": meta.get("train_seconds"),
                     **{f"{s} {m.upper()}@10": values.get((s, m, 10)) for s in ("valid", "test")
                        for m in ("hr", "ndcg", "mrr")},
                     # beyond accuracy, same ranking pass (models/metrics.py): test split, top 10
                     **{f"{m}@10": values.get(("test", m, 10)) for m in BEYOND}})
    return rows


def _with_floors(wh: Warehouse, day: date, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The metrics rows with the best floor of their protocol beside them (not for a cross-domain
    pair's runs: their own data), and a warning for each learned method at or below it."""
    from models.errors import ModelError
    from pipelines.modeling.compare import FLOORS, floors

    found: dict[str, dict[str, float]] = {}
    warnings, out = [], []
    for row in rows:
        pair, protocol = row.pop("pair"), row["protocol"]
        if not pair and protocol and protocol not in found:
            try:
                found[protocol] = floors(wh.root, day, protocol)
            except ModelError:  # no sequences as of the day: nothing to read the methods against
                found[protocol] = {}
        best = max(found.get(protocol, {}).items(), key=lambda kv: kv[1], default=None) if not pair else None
        row["floor test NDCG@10"] = f"{best[0]} {best[1]:.4f}" if best else None
        test = row.get("test NDCG@10")
        if best and row["method"] not in FLOORS and test is not None and test <= best[1]:
            warnings.append(f"{row['method']} ({row['version']}) does not beat the best floor: test NDCG@10 "
                            f"{test:.4f} against {best[0]}'s {best[1]:.4f}")
        out.append(row)
    return out, warnings


def _table_sizes(wh: Warehouse, day: date) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = []
    for kind in ("users", "items"):
        for part in wh.embedding_partitions(kind, day):  # .../model=M/dt=D/version=V
            files = sorted(part.glob("*.parquet"))
            meta = [pq.read_metadata(f) for f in files]
            method, version = part.parent.parent.name.split("=", 1)[1], part.name.split("=", 1)[1]
            live = (wh.publish_record(method, day) or {}).get("model_version") == version
            rows.append({"table": f"embeddings/{kind}", "method": method, "version": version,
                         "rows": sum(m.num_rows for m in meta), "MB": round(sum(f.stat().st_size for f in files) / 2**20, 2),
                         "published": "yes" if live else "no"})
    return rows


def _chain(wh: Warehouse, method: str, version: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """The version's training log, preceded by those it was warm-started from back to its last
    full retrain: [(version, epochs)], oldest first."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    seen = set()
    while version and version not in seen:
        seen.add(version)
        folder = wh.model_folder(method, version)
        if not (folder / "config.json").is_file():
            break
        log = [json.loads(line) for line in (folder / "epochs.jsonl").read_text().splitlines() if line.strip()] \
            if (folder / "epochs.jsonl").is_file() else []
        out.append((version, log))
        version = json.loads((folder / "config.json").read_text()).get("warm_start_from")
    return out[::-1]


def _plot_curves(wh: Warehouse, metric_rows: list[dict[str, Any]], out: Path) -> str | None:
    """Loss and validation NDCG@10 per epoch; a warm-started version continues the curve of the
    versions it started from (dotted lines mark the nights)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves = {r["method"]: _chain(wh, r["method"], r["version"]) for r in metric_rows}
    curves = {m: c for m, c in curves.items() if any(log for _, log in c)}
    if not curves:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for method, chain in curves.items():
        x, loss, ndcg, nights = [], [], [], []
        for _, log in chain:
            nights.append(len(x) + 0.5)
            for e in log:
                x.append(len(x) + 1)
                loss.append(e["loss"])
                ndcg.append(e["valid_ndcg@10"])
        line, = ax1.plot(x, loss, marker="o", markersize=3, label=method)
        ax2.plot(x, ndcg, marker="o", markersize=3, label=method, color=line.get_color())
        for n in nights[1:]:
            for ax in (ax1, ax2):
                ax.axvline(n, color=line.get_color(), linestyle=":", alpha=0.5)
    ax1.set(title="training loss", xlabel="epoch (since the last full retrain)")
    ax2.set(title="validation NDCG@10", xlabel="epoch (since the last full retrain)")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=90)
    plt.close(fig)
    return "curves.png"


def _plot_metrics(metric_rows: list[dict[str, Any]], out: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in metric_rows if r.get("test NDCG@10") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows) + 2), 3.2))
    names = [r["method"] for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["test HR@10"] for r in rows], width=0.4, label="HR@10")
    ax.bar([i + 0.2 for i in x], [r["test NDCG@10"] for r in rows], width=0.4, label="NDCG@10")
    ax.set_xticks(list(x), names)
    ax.set(title="test metrics (full ranking)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=90)
    plt.close(fig)
    return "metrics.png"


def _html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) >= 1 else f"{v:.4f}"
        if isinstance(v, int):
            return f"{v:,}"
        return html.escape("" if v is None else str(v))

    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td class='{'FAILED' if r.get(c) == 'FAILED' else ''}'>{cell(r.get(c))}</td>"
                                    for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
         "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}th{background:#f3f3f3}"
         "td.FAILED{color:#b00;font-weight:bold}p.warn{color:#b00}img{max-width:100%}")


def _retention_section(wh: Warehouse, day: date) -> list[tuple[str, str]]:
    """What retention dropped this day (``seqrep retention``), when it ran."""
    record = wh.read_manifest("retention", f"dt={day.isoformat()}")
    if record is None:
        return []
    rows = [{"family": f, "window (days)": record["windows"].get(f"{f}_days"),
             **{k: v for k, v in d.items() if k != "paths"}} for f, d in record["dropped"].items()]
    return [("Retention", _html_table(rows) if rows else "<p>nothing past its window</p>")]


def _tuning_section(wh: Warehouse, day: date, out: Path) -> list[tuple[str, str]]:
    """The studies of ``seqrep tune`` as of ``day`` or before: their best trial and Optuna's history plot."""
    rows, images = [], []
    for path in sorted(wh.table(layout.TUNING).glob("method=*/study=*/summary.json")):
        s = json.loads(path.read_text())
        if s["day"] > day.isoformat():
            continue
        rows.append({"method": s["method"], "study": s["study"], "as of": s["day"], "trials": s["trials"],
                     **s["states"], "best valid NDCG@10": s["best_valid_ndcg@10"], "median s/trial": s["median_trial_s"],
                     "best settings": ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in s["best_params"].items())})
        if (path.parent / "history.png").is_file():
            images.append(f"tuning-{s['method']}-{s['study']}.png")
            shutil.copyfile(path.parent / "history.png", out / images[-1])
    if not rows:
        return []
    return [("Tuning", _html_table(rows) + "".join(f"<img src='{i}' alt='{i}'>" for i in images))]


def _trend_rows(wh: Warehouse, day: date) -> list[dict[str, Any]]:
    """Per method, the published versions of the last ``TREND_NIGHTS`` days up to ``day``: test
    NDCG@10 and coverage@10 of the version, its training time and kind."""
    from pipelines.modeling.metrics import read_metrics

    rows = []
    for method in wh.published_methods():
        for d in [d for d in wh.published_days(method) if d <= day][-TREND_NIGHTS:]:
            record = wh.publish_record(method, d) or {}
            version, trained = record.get("model_version"), record.get("trained_day")
            if not version or not trained:
                continue
            values = {(r["split"], r["metric"], r["k"]): r["value"]
                      for r in read_metrics(wh, method.split(".", 1)[0], date.fromisoformat(trained), version) or []}
            cfg_path = wh.model_folder(method, version) / "config.json"
            meta = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
            rows.append({"method": method, "day": d.isoformat(), "version": version,
                         "training": "warm start" if meta.get("warm_start_from") else "full",
                         "test NDCG@10": record.get("test_ndcg@10"), "coverage@10": values.get(("test", "coverage", 10)),
                         "train s": meta.get("train_seconds")})
    return rows


def _plot_trends(rows: list[dict[str, Any]], out: Path) -> str | None:
    """Test NDCG@10, coverage@10 and training seconds per night, a line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len({r["day"] for r in rows}) < 2:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        for ax, key in zip(axes, ("test NDCG@10", "coverage@10", "train s")):
            pts = [(r["day"][5:], r[key]) for r in mine if r[key] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3, label=method)
    for ax, title in zip(axes, ("test NDCG@10", "coverage@10 (test)", "training seconds")):
        ax.set(title=title, xlabel="night")
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelrotation=45)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "trends.png", dpi=90)
    plt.close(fig)
    return "trends.png"


def _trends_section(wh: Warehouse, day: date, out: Path) -> list[tuple[str, str]]:
    rows = _trend_rows(wh, day)
    if not rows:
        return []
    image = _plot_trends(rows, out)
    return [(f"Trends (the last {TREND_NIGHTS} nights)",
             (f"<img src='{image}' alt='{image}'>" if image else "") + _html_table(rows[::-1]))]


def write_report(cfg: Config, day: date) -> Path:
    """Write the report of ``day`` (module docstring); returns its ``index.html``."""
    wh = Warehouse(cfg.warehouse)
    target = wh.report_folder(day)
    wh.write_folder(target, lambda staged: _write_page(wh, day, staged))
    return target / "index.html"


def _write_page(wh: Warehouse, day: date, out: Path) -> None:
    metrics, below = _with_floors(wh, day, _metric_rows(wh, day))
    images = [p for p in (_plot_metrics(metrics, out), _plot_curves(wh, metrics, out)) if p]
    failures = wh.failure_records(day)
    sections = [
        ("Stages", _html_table(_stage_rows(wh, day))),
        ("Gates", _html_table(_gate_rows(wh, day))),
        ("Failed tasks", _html_table(failures) if failures else "<p>none</p>"),
        ("Methods", "".join(f"<p class='warn'>{html.escape(w)}</p>" for w in below) + _html_table(metrics)
         + "".join(f"<img src='{i}' alt='{i}'>" for i in images)),
        *_trends_section(wh, day, out),
        ("Embedding tables", _html_table(_table_sizes(wh, day))),
        *_retention_section(wh, day),
        *_tuning_section(wh, day, out),
    ]
    body = "".join(f"<h2>{html.escape(title)}</h2>{content}" for title, content in sections)
    (out / "index.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>seqrep {day}</title><style>{STYLE}</style></head>"
        f"<body><h1>seqrep nightly run — {day}</h1><p>warehouse: {html.escape(str(wh.root))}</p>{body}</body></html>\n")
