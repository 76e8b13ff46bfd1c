"""A night's model steps, one method and one day at a time: what the nightly DAG's tasks run
(each as its own ``seqrep`` process) and what ``seqrep backfill`` runs day after day.

    train -> evaluate -> regression gate -> infer -> embeddings gate -> publish

- ``train``: warm start from the method's last published version (its weights, vocabularies
  grown, ``nightly.warm_epochs`` epochs on the data as of the day), or a full retrain when there is
  none, the configuration changed, or the last full one is ``nightly.full_retrain_days`` old.
- ``regression_gate``: the new version's test NDCG@10 against the last published version's; a drop
  of more than ``nightly.max_ndcg_drop`` (relative) stops the night for that method, and the last
  published tables stay the live ones.
- ``publish``: the item index, then the publish record ``_manifests/stage=publish/model=M/dt=D``,
  which names the version that is live from that day on (queries read published days). Tables
  not yet gated since inference wrote them are gated first; tables that failed are refused.

Every step reads only what exists up to its day: sequences as of D, the model trained on D,
publish records of days before D. A backfilled day therefore computes what that day's nightly
run computed, whatever later days the warehouse already holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

from pipelines.config import Config
from pipelines.warehouse import Warehouse, WarehouseError

Echo = Callable[[str], None]


class StepError(ValueError):
    """A step cannot run as asked (an earlier step's output is missing); the message says which."""


def published(cfg: Config, method: str, before: date) -> dict[str, Any] | None:
    """The publish record of ``method`` with the latest day before ``before`` (None: never published)."""
    wh = Warehouse(cfg.warehouse)
    folder = wh.manifest_path("publish", f"model={method}/x").parent
    days = sorted(d for d in (date.fromisoformat(p.stem[3:]) for p in folder.glob("dt=*.json")) if d < before)
    return wh.read_manifest("publish", f"model={method}/dt={days[-1].isoformat()}") if days else None


def _version_folder(cfg: Config, method: str, day: date) -> Path:
    from models.registry import method_config
    from models.run import model_folder

    return model_folder(cfg, method_config(method, cfg.methods.get(method)), day)


def train(cfg: Config, method: str, day: date, *, echo: Echo = print) -> dict[str, Any]:
    """Train ``method``'s version for ``day``: warm-started or fully retrained (module docstring)."""
    from models.registry import get_method
    from models.run import WarmStart, train_method

    night = cfg.nightly
    folder = _version_folder(cfg, method, day)
    last = published(cfg, method, day)
    warm, full_day, why = None, day, "first version"
    if last is not None:
        last_full = date.fromisoformat(last["full_day"])
        same_config = last["model_version"].rsplit("-", 1)[-1] == folder.name.rsplit("-", 1)[-1]
        if not night.warm_start or not getattr(get_method(method), "learned", True):
            why = "warm start off"
        elif not same_config:
            why = f"configuration changed since {last['model_version']}"
        elif (day - last_full).days >= night.full_retrain_days:
            why = f"last full retrain {last_full} is {(day - last_full).days} days old"
        else:
            warm = WarmStart(Path(cfg.warehouse) / last["model_folder"], night.warm_epochs)
            full_day, why = last_full, f"warm start from {last['model_version']}"
    echo(f"{method} {day}: {'full retrain' if warm is None else 'incremental'} ({why})")
    result, _ = train_method(cfg, method, day, echo=echo, warm=warm, evaluate=False, meta={
        "full_day": full_day.isoformat(), "warm_start_from": last["model_version"] if warm else None})
    return {"version": result.folder.name, "epochs": result.epochs, "seconds": round(result.seconds, 2),
            "warm_start": warm is not None}


def evaluate(cfg: Config, method: str, day: date) -> list[dict[str, Any]]:
    """Full-ranking metrics of the day's version on valid and test (written to ``metrics/``)."""
    from models.run import evaluate_methods

    return evaluate_methods(cfg, [method], day)


def _ndcg(cfg: Config, method: str, day: date, version: str, split: str = "test") -> float:
    import pyarrow.parquet as pq

    path = Warehouse(cfg.warehouse).table(f"metrics/method={method}") / f"dt={day.isoformat()}" / f"{version}.parquet"
    if not path.is_file():
        raise StepError(f"no metrics of {method} {version} ({path}): run `seqrep evaluate --method {method} --date {day}`")
    for r in pq.read_table(path).to_pylist():
        if r["split"] == split and r["metric"] == "ndcg" and r["k"] == 10:
            return float(r["value"])
    raise StepError(f"{path} has no {split} NDCG@10 (the protocol has no {split} split as of {day})")


def regression_gate(cfg: Config, method: str, day: date) -> dict[str, Any]:
    """Pass when the day's test NDCG@10 is at least (1 - max_ndcg_drop) x the last published one.

    Writes ``_gates/stage=regression/model=M/dt=D.json`` (and ``.md``); raises ``GateFailed``."""
    from pipelines.gates import CRITICAL, GateReport, Outcome, record_gate

    t0 = time.perf_counter()
    version = _version_folder(cfg, method, day).name
    new = _ndcg(cfg, method, day, version)
    last = published(cfg, method, day)
    drop = cfg.nightly.max_ndcg_drop
    floor = None if last is None else (1 - drop) * last["test_ndcg@10"]
    ok = floor is None or new >= floor - 1e-12  # exactly at the floor passes (whatever the float rounding)
    outcome = Outcome(
        frame=f"metrics/method={method}", expectation="NdcgAtLeastPublished",
        kwargs={"version": version, "published": last and last["model_version"], "max_drop": drop},
        severity=CRITICAL, success=ok,
        observed=(f"test NDCG@10 {new:.4f}" + ("" if floor is None else
                  f" vs floor {floor:.4f} = (1 - {drop}) x {last['test_ndcg@10']:.4f} of {last['model_version']} "
                  f"(live since {last['asof']})")))
    report = GateReport("regression", [day], [outcome], time.perf_counter() - t0)
    record_gate(cfg, report, f"model={method}")
    return {"version": version, "test_ndcg@10": new, "floor": floor}


def infer(cfg: Config, method: str, day: date, *, echo: Echo = print) -> dict[str, Any]:
    from models.infer import infer as write_tables

    return write_tables(cfg, method, day, echo=echo)


def validate_embeddings(cfg: Config, method: str, day: date, *, echo: Echo = print) -> None:
    from pipelines.gates import run_embeddings_gate

    echo(run_embeddings_gate(cfg, method, day).summary())


def publish(cfg: Config, method: str, day: date, *, echo: Echo = print) -> dict[str, Any]:
    """Build the item index of the day's tables and write the publish record (module docstring)."""
    from models.checkpoint import read_json
    from pipelines.index import publish_index

    wh = Warehouse(cfg.warehouse)
    inferred = wh.read_manifest("infer", f"model={method}/dt={day.isoformat()}")
    if inferred is None:
        raise StepError(f"no embeddings of {method} as of {day}: run `seqrep infer --method {method} --date {day}`")
    gate = wh.root / "_gates" / "stage=embeddings" / f"model={method}" / f"dt={day.isoformat()}.json"
    manifest = wh.manifest_path("infer", f"model={method}/dt={day.isoformat()}")
    if not gate.is_file() or gate.stat().st_mtime < manifest.stat().st_mtime:
        validate_embeddings(cfg, method, day, echo=echo)  # not gated since inference wrote them (e.g. by hand)
    elif '"passed": true' not in gate.read_text():
        from pipelines.gates import GateFailed

        raise GateFailed(f"the embeddings of {method} as of {day} failed their gate ({gate.with_suffix('.md')})")
    version = inferred["model_version"]
    folder = wh.table(f"models/{method}") / version
    meta = read_json(folder / "config.json")
    index = publish_index(cfg, method, day)
    record = {
        "stage": "publish", "method": method, "asof": day.isoformat(), "model_version": version,
        "model_folder": str(folder.relative_to(wh.root)), "trained_day": str(meta["day"]),
        "full_day": meta.get("full_day", str(meta["day"])), "warm_start_from": meta.get("warm_start_from"),
        "test_ndcg@10": _ndcg(cfg, method, date.fromisoformat(str(meta["day"])), version),
        "users": inferred["users"], "items": inferred["items"], "dim": inferred["dim"],
        "index": str(index.relative_to(wh.root)),
    }
    wh.write_manifest("publish", f"model={method}/dt={day.isoformat()}", record)
    echo(f"published {method} {version} as of {day}: {record['users']:,} users, {record['items']:,} items, "
         f"test NDCG@10 {record['test_ndcg@10']:.4f}")
    return record


@dataclass
class DayOutcome:
    day: date
    published: list[str]
    blocked: dict[str, str]


def run_methods(cfg: Config, day: date, methods: list[str], *, echo: Echo = print) -> DayOutcome:
    """Every step for each method of the day; a failed gate stops that method's night only."""
    from pipelines.gates import GateFailed

    outcome = DayOutcome(day, [], {})
    for method in methods:
        try:
            train(cfg, method, day, echo=echo)
            evaluate(cfg, method, day)
            regression_gate(cfg, method, day)
            infer(cfg, method, day, echo=echo)
            validate_embeddings(cfg, method, day, echo=echo)
            publish(cfg, method, day, echo=echo)
            outcome.published.append(method)
        except GateFailed as exc:
            echo(f"{method} {day}: not published: {exc}")
            outcome.blocked[method] = str(exc)
    return outcome


def backfill(cfg: Config, days: list[date], methods: list[str] | None = None, *, etl: bool = True,
             echo: Echo = print) -> list[DayOutcome]:
    """The nightly run of each day in order, without a scheduler.

    ``etl``: ingest the day's log (``ingest.input``) and run the ETL with its gates first, as the
    DAG does; without it (a method added later) the ETL's partitions must already be there.
    Each day ends with its run report."""
    from pipelines.report import write_report

    methods = list(methods or cfg.nightly.methods)
    wh = Warehouse(cfg.warehouse)
    if not etl:
        missing = [d for d in days if not wh.has_partition("sequences", d)]
        if missing:
            raise WarehouseError(f"no sequences for {', '.join(map(str, missing[:3]))}{'...' if len(missing) > 3 else ''} "
                                 f"in {wh.root}: backfill with the ETL (drop --method) or run `seqrep etl` first")
    outcomes = []
    for i, day in enumerate(days, 1):
        t0 = time.perf_counter()
        echo(f"[backfill] {day} ({i}/{len(days)})")
        if etl:
            from pipelines import etl as etl_stages
            from pipelines import ingest
            from pipelines.spark import get_spark

            spark = get_spark(cfg.spark)
            ingest.run(spark, cfg, day=day)
            etl_stages.run(spark, cfg, [day])
        outcomes.append(run_methods(cfg, day, methods, echo=echo))
        write_report(cfg, day)
        echo(f"[backfill] {day} done in {time.perf_counter() - t0:.0f}s: published {outcomes[-1].published or 'nothing'}"
             + (f", blocked {sorted(outcomes[-1].blocked)}" if outcomes[-1].blocked else ""))
    return outcomes
