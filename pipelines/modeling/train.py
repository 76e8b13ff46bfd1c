"""What ``seqrep train`` and ``seqrep evaluate`` do: a method, a day, the warehouse.

A method's version as of a day is ``models/<method>/<day>-<hash>`` (the hash covers every setting
that shapes the model, ``MethodConfig.version``). The trainer (``models.trainer``) fits the model
into the version's work folder ``<version>.partial`` (kept across a crash for ``--resume``),
which is then swapped in whole; metrics rows of valid and test go to ``metrics/``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any, Callable

from models.data import SequenceData
from models.registry import MethodConfig, build, load_folder as registry_load_folder, method_config
from pipelines.core.config import Config
from pipelines.core.errors import WarehouseError
from pipelines.core.runs import transaction
from pipelines.core.warehouse import Warehouse
from pipelines.modeling.data import latest_day, load
from pipelines.modeling.metrics import metric_rows, segment_rows, write_metrics

Echo = Callable[[str], None]


class ModelNotFound(WarehouseError, LookupError):
    """No trained model of the method with this configuration (or version) in the warehouse."""


def dataset_name(cfg: Config, scope: str = "") -> str:
    """The config's source name, else the sources in the warehouse's raw events (e.g. ``movielens``);
    with a data ``scope``, ``<name>/<scope>``."""
    name = cfg.ingest.name or "+".join(Warehouse(cfg.warehouse).raw_sources()) or cfg.ingest.source
    return f"{name}/{scope}" if scope else name


def resolve_day(cfg: Config, day: date | None) -> date:
    """The given day, or the last day with sequences (a command-line convenience, said aloud)."""
    return day if day is not None else latest_day(cfg.warehouse)


def version_folder(cfg: Config, mc: MethodConfig, day: date, scope: str = "") -> Path:
    """Where the version of ``mc`` trained as of ``day`` (on ``scope``'s data) lives."""
    return Warehouse(cfg.warehouse).model_folder(mc.method, mc.version(day, scope))



@dataclass(frozen=True)
class WarmStart:
    """Start from the weights of ``folder`` (an earlier version) and train ``epochs`` epochs."""

    folder: Path
    epochs: int


def train_method(cfg: Config, name: str, day: date, *, sets: list[str] = (), resume: bool = False,
                 data: SequenceData | None = None, echo: Echo = print, warm: WarmStart | None = None,
                 evaluate: bool = True, meta: dict[str, Any] | None = None, scope: str = "") -> tuple[Any, list[dict]]:
    """Train ``name`` on the sequences as of ``day``; evaluate it on every split; write metrics.

    ``data`` with a ``scope`` is other data than the day's sequences (a cross-domain pair's view,
    ``pipelines.modeling.cross_domain.train_on_pair``): the version and the metrics' dataset name it.

    With ``warm``, the model starts from an earlier version's weights (vocabularies grown, see
    ``models.checkpoint.load_grown``) and trains ``warm.epochs`` epochs; the version folder is the
    same as a full training's (one model per method, configuration and day)."""
    from models.checkpoint import load_grown
    from models.trainer import train

    mc = method_config(name, cfg.methods.get(name), sets)
    data = data or load(cfg.warehouse, day, mc.train.protocol)
    model = build(mc, data.n_items, data.user_vocab)
    version = mc.version(day, scope)
    folder = Warehouse(cfg.warehouse).model_folder(name, version)
    fit, note = mc, ""
    if warm is not None:
        grown = load_grown(model, warm.folder)
        fit = mc.model_copy(update={"train": mc.train.model_copy(update={"epochs": warm.epochs})})
        note = f" (warm start from {warm.folder.name}, {warm.epochs} epochs, grown: {', '.join(grown) or 'none'})"
    echo(f"train {name} on {dataset_name(cfg, scope)} as of {day}: {len(data.users):,} users, {data.n_items:,} items, "
         f"{len(data.items):,} events -> {folder}{note}")
    from models import distributed

    if not distributed.is_main():  # a replica of a data-parallel run (models/distributed.py): rank 0 writes
        result = train(model, data, fit, folder, echo=lambda _: None, progress=False)
        return replace(result, folder=folder), []
    with transaction(Warehouse(cfg.warehouse), f"model={name}") as wh:  # the version and its metrics together
        workdir = wh.model_workdir(name, version)
        result = train(model, data, fit, workdir, resume=resume, echo=echo, meta={"version": version, **({"scope": scope} if scope else {}), **(meta or {})})
        wh.swap_in(workdir, folder)
        rows = evaluate_model(wh, cfg, mc, model, data, version, scope) if evaluate else []
    return replace(result, folder=folder), rows


def evaluate_model(wh: Warehouse, cfg: Config, mc: MethodConfig, model, data: SequenceData, version: str,
                   scope: str = "") -> list[dict]:
    """Full-ranking metrics of ``model`` on every split of ``data`` (valid and test; a pair's
    cold_valid and cold_test too), written to ``metrics/``."""
    from models.evaluate import evaluate
    from models.trainer import pick_device

    device = pick_device(mc.train)
    model.to(device)
    rows: list[dict] = []
    segments: list[dict] = []
    for split in ("valid", "test", "cold_valid", "cold_test"):
        if split in data.splits:
            res = evaluate(model, data, split, mask_seen=mc.train.mask_seen, batch_size=mc.train.eval_batch_size,
                           device=device)
            keys = dict(method=mc.method, dataset=dataset_name(cfg, scope), protocol=data.protocol, day=data.day,
                        version=version, seed=mc.train.seed)
            rows += metric_rows(res, **keys)
            segments += segment_rows(res, **keys)
    if rows:
        write_metrics(wh, rows)
        write_metrics(wh, segments, segments=True)
    return rows


def load_folder(mc: MethodConfig, folder: Path):
    """The model stored in ``folder`` (``models.registry.load_folder``); a damaged folder is a
    ``WarehouseError`` naming it."""
    from models.checkpoint import CheckpointError

    try:
        return registry_load_folder(mc, folder)
    except CheckpointError as exc:
        raise WarehouseError(f"model folder {folder} cannot be loaded: {exc}") from None


def trained_folder(cfg: Config, name: str, day: date, sets: list[str] = ()) -> tuple[MethodConfig, Path]:
    """(configuration, version folder) of ``name`` with this configuration as of ``day``; ``name``
    is a method or a cross-domain pair run's published name (``METHOD.PAIR``)."""
    from pipelines.modeling.pair_runs import parse_run, run_folder

    run = parse_run(cfg, name)
    if run is not None:
        return run_folder(cfg, run, day, list(sets))
    mc = method_config(name, cfg.methods.get(name), sets)
    return mc, version_folder(cfg, mc, day)


def load_trained(cfg: Config, name: str, day: date, sets: list[str] = ()):
    """The trained model of ``name`` (``trained_folder``) as of ``day``: (config, model, folder)."""
    mc, folder = trained_folder(cfg, name, day, sets)
    if not (folder / "model.safetensors").is_file():
        raise ModelNotFound(f"no trained {name} as of {day} with this configuration ({folder}); "
                            f"run `seqrep train --method {name} --date {day}{''.join(' --set ' + x for x in sets)}` first")
    return mc, load_folder(mc, folder), folder


def load_version(cfg: Config, method: str, version: str):
    """The model stored as ``models/<method>/<version>`` with the configuration it was trained
    with: (config, model, folder)."""
    from models.checkpoint import read_json
    from models.registry import get_method

    get_method(method)
    wh = Warehouse(cfg.warehouse)
    folder = wh.model_folder(method, version)
    if not (folder / "model.safetensors").is_file():
        raise ModelNotFound(f"no trained {method} version {version!r} in {folder.parent}; "
                            f"versions: {', '.join(wh.model_versions(method)) or 'none'}")
    meta = read_json(folder / "config.json")
    mc = MethodConfig(method=method, model=meta["model"], train=meta["train"])
    return mc, load_folder(mc, folder), folder


def evaluate_methods(cfg: Config, names: list[str], day: date, *, sets: list[str] = ()) -> list[dict]:
    """Evaluate trained models of ``names`` as of ``day`` (one data load per protocol)."""
    rows: list[dict] = []
    cache: dict[str, SequenceData] = {}
    for name in names:
        mc, model, folder = load_trained(cfg, name, day, sets)
        protocol = mc.train.protocol
        if protocol not in cache:
            cache[protocol] = load(cfg.warehouse, day, protocol)
        with transaction(Warehouse(cfg.warehouse), f"model={name}") as wh:
            rows += evaluate_model(wh, cfg, mc, model, cache[protocol], folder.name)
    return rows
