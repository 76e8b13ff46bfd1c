"""A night's model steps, one method and one day at a time: what the nightly DAG's tasks run
(each as its own ``seqrep`` process) and what ``seqrep backfill`` (``backfill.py``) runs day after day.

    train -> evaluate -> regression gate -> infer -> embeddings gate -> publish

- ``train``: warm start from the method's last published version (its weights, vocabularies
  grown, ``nightly.warm_epochs`` epochs on the data as of the day), or a full retrain when there is
  none, the configuration changed, the last full one is ``nightly.full_retrain_days`` old, or users
  were erased (``seqrep forget``) since it began (within ``privacy.retrain_within_days``).
- ``regression_gate``: the new version's test NDCG@10 against the last published version's; a drop
  of more than ``nightly.max_ndcg_drop`` (relative) stops the night for that method, and the last
  published tables stay the live ones.
- ``publish``: the item index, then the publish record ``_manifests/stage=publish/model=M/dt=D``,
  which names the version that is live from that day on (queries read published days). Tables
  not yet gated since inference wrote them are gated first; tables that failed are refused.

A cross-domain pair run (``METHOD.PAIR``, ``cross_domain.methods``) takes the same steps but the
evaluation (``train`` evaluates it) and the regression gate: it is fully retrained each night on
its pair's view as of the day (runs it reads by method name first).

Every step reads only what exists up to its day: sequences as of D, the model trained on D,
publish records of days before D. A backfilled day therefore computes what that day's nightly
run computed, whatever later days the warehouse already holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from pipelines.core import privacy
from pipelines.core.config import Config
from pipelines.core.errors import GateFailed, WarehouseError
from pipelines.core.runs import transaction
from pipelines.core.warehouse import Warehouse

Echo = Callable[[str], None]


class StepError(WarehouseError, ValueError):
    """A step cannot run as asked (an earlier step's output is missing); the message says which."""


def _version_folder(cfg: Config, method: str, day: date) -> Path:
    """The folder of ``method``'s version (or a cross-domain pair run's) for ``day`` with the run's configuration."""
    from pipelines.modeling.train import trained_folder

    return trained_folder(cfg, method, day)[1]


def train(cfg: Config, method: str, day: date, *, echo: Echo = print) -> dict[str, Any]:
    """Train ``method``'s version for ``day``: warm-started or fully retrained (module docstring)."""
    from pipelines.modeling.cross_domain import train_on_pair
    from pipelines.modeling.pair_runs import parse_run
    from pipelines.modeling.train import train_method

    run = parse_run(cfg, method)
    if run is not None:  # a pair run: a full retrain on its view, evaluated as it trains (module docstring)
        echo(f"{method} {day}: full retrain on {run.scope}")
        result, _ = train_on_pair(cfg, run.method, day, run.pair, run.view, echo=echo)
        return {"version": result.folder.name, "epochs": result.epochs, "seconds": round(result.seconds, 2),
                "warm_start": False}
    warm, full_day, why = warm_start(cfg, method, day)
    echo(f"{method} {day}: {'full retrain' if warm is None else 'incremental'} ({why})")
    # When the weights' chain began (wall clock): an erasure after it forces a full retrain.
    full_at = _utcnow() if warm is None else (Warehouse(cfg.warehouse).last_published(method, day) or {}).get("full_at")
    result, _ = train_method(cfg, method, day, echo=echo, warm=warm, evaluate=False, meta={
        "full_day": full_day.isoformat(), "full_at": full_at, "warm_start_from": warm.folder.name if warm else None})
    return {"version": result.folder.name, "epochs": result.epochs, "seconds": round(result.seconds, 2),
            "warm_start": warm is not None}


def warm_start(cfg: Config, method: str, day: date):
    """(``WarmStart`` or None, the day of the last full retrain, why): the nightly policy."""
    from models.registry import get_method
    from pipelines.modeling.train import WarmStart

    night, wh = cfg.nightly, Warehouse(cfg.warehouse)
    last = wh.last_published(method, day)
    if last is None:
        return None, day, "first version"
    folder = _version_folder(cfg, method, day)
    last_full = date.fromisoformat(last["full_day"])
    if not night.warm_start or not get_method(method).learned:
        return None, day, "warm start off"
    if get_method(method).fits_itself:
        return None, day, "fitted whole each night"
    if last["model_version"].rsplit("-", 1)[-1] != folder.name.rsplit("-", 1)[-1]:
        return None, day, f"configuration changed since {last['model_version']}"
    erased = erasure_due(wh, last.get("full_at"), cfg.privacy.retrain_within_days)
    if erased:
        return None, day, f"users erased since the last full retrain (request {erased})"
    if (day - last_full).days >= night.full_retrain_days:
        return None, day, f"last full retrain {last_full} is {(day - last_full).days} days old"
    return (WarmStart(wh.root / last["model_folder"], night.warm_epochs), last_full,
            f"warm start from {last['model_version']}")


def _utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def erasure_due(wh: Warehouse, full_at: str | None, within_days: int) -> str | None:
    """The first erasure (``seqrep forget``) completed after the weights' chain began (``full_at``;
    unknown: any erasure) whose retrain deadline has come; None when there is none."""
    today = datetime.now(timezone.utc).date()
    for record in privacy.erasure_records(wh.root):
        if (full_at is None or record["completed"] > full_at) and \
                date.fromisoformat(record["completed"][:10]) + timedelta(days=within_days) <= today:
            return record["request"]
    return None


def evaluate(cfg: Config, method: str, day: date) -> list[dict[str, Any]]:
    """Full-ranking metrics of the day's version on valid and test (written to ``metrics/``)."""
    from pipelines.modeling.train import evaluate_methods

    return evaluate_methods(cfg, [method], day)


def regression_gate(cfg: Config, method: str, day: date) -> dict[str, Any]:
    """The regression gate of the day's version (``pipelines/gates/regression.py``)."""
    from pipelines.gates.regression import run_regression_gate

    with transaction(Warehouse(cfg.warehouse), f"model={method}") as wh:
        return run_regression_gate(cfg, method, day, wh=wh)


def infer(cfg: Config, method: str, day: date, *, echo: Echo = print) -> dict[str, Any]:
    """The day's user and item embedding tables (``pipelines/modeling/infer.py``)."""
    from pipelines.modeling.infer import infer as write_tables

    return write_tables(cfg, method, day, echo=echo)


def validate_embeddings(cfg: Config, method: str, day: date, version: str | None = None, *, echo: Echo = print,
                        wh: Warehouse | None = None) -> None:
    """The embeddings gate on a version's tables of the day (default: the run's configuration's)."""
    from pipelines.gates.registry import run_embeddings_gate

    version = version or _version_folder(cfg, method, day).name
    with transaction(wh or Warehouse(cfg.warehouse), f"model={method}") as wh:
        echo(run_embeddings_gate(cfg, method, day, version, wh=wh).summary())


def publish(cfg: Config, method: str, day: date, version: str | None = None, *, echo: Echo = print) -> dict[str, Any]:
    """Make a version's tables of the day the live ones (default: the version of the run's
    configuration; ``seqrep infer --version`` writes others): gate them if they are not gated
    since inference wrote them, build their item index, and write the publish record, the one
    pointer queries follow, all in one run. Then the live batches of a stream (``seqrep stream``)
    whose events the day's tables now hold are removed (``serving.live.clear_absorbed``)."""
    from pipelines.serving.live import clear_absorbed

    with transaction(Warehouse(cfg.warehouse), f"model={method}") as wh:
        record = _publish(cfg, method, day, version or _version_folder(cfg, method, day).name, wh, echo)
    cleared = clear_absorbed(Warehouse(cfg.warehouse), method, day)
    if cleared:
        echo(f"cleared {cleared} live batch(es) of the {method} stream: their events are in the tables of {day}")
    return record


def _publish(cfg: Config, method: str, day: date, version: str, wh: Warehouse, echo: Echo) -> dict[str, Any]:
    from models.checkpoint import read_json
    from pipelines.gates.registry import embeddings_partition
    from pipelines.modeling.metrics import ndcg_at_10
    from pipelines.serving.index import publish_index

    inferred = wh.read_manifest("infer", wh.infer_key(method, day, version))
    if inferred is None:
        raise StepError(f"no embeddings of {method} version {version} as of {day}: "
                        f"run `seqrep infer --method {method} --date {day}` first")
    result = wh.read_gate_result("embeddings", day, embeddings_partition(method, version))
    if result is None or result.get("context", {}).get("infer_run") != inferred.get("run"):
        validate_embeddings(cfg, method, day, version, echo=echo, wh=wh)  # not gated since inference wrote them
    elif not result["passed"]:
        gate = wh.gate_result_path("embeddings", day, embeddings_partition(method, version))
        raise GateFailed(f"the embeddings of {method} {version} as of {day} failed their gate ({gate.with_suffix('.md')})")
    folder = wh.model_folder(method, version)
    meta = read_json(folder / "config.json")
    index = publish_index(cfg, method, day, version, wh)
    record = {
        "stage": "publish", "method": method, "asof": day.isoformat(), "model_version": version,
        "model_folder": str(folder.relative_to(wh.root)), "trained_day": str(meta["day"]),
        "full_day": meta.get("full_day", str(meta["day"])), "full_at": meta.get("full_at"),
        "warm_start_from": meta.get("warm_start_from"),
        # Metrics are kept under the method (a pair run's too: its dataset names the pair).
        "test_ndcg@10": ndcg_at_10(wh, folder.parent.name, date.fromisoformat(str(meta["day"])), version),
        "users": inferred["users"], "items": inferred["items"], "dim": inferred["dim"],
        "index": str(index.relative_to(wh.root)),
    }
    wh.write_publish_record(method, day, record)
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
    from pipelines.modeling.pair_runs import parse_run

    outcome = DayOutcome(day, [], {})
    for method in methods:
        try:
            train(cfg, method, day, echo=echo)
            if parse_run(cfg, method) is None:  # a pair run is evaluated as it trains, without a regression gate
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
