"""What ``seqrep train`` and ``seqrep evaluate`` do: a method, a day, the warehouse."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

from models.data import SequenceData, latest_day, load
from models.registry import MethodConfig, get_method, method_config
from pipelines.config import Config
from pipelines.warehouse import Warehouse


class ModelNotFound(LookupError):
    pass


def dataset_name(cfg: Config) -> str:
    """The config's source name, else the sources in the warehouse's raw events (e.g. ``movielens``)."""
    if cfg.ingest.name:
        return cfg.ingest.name
    sources = sorted(p.name[7:] for p in Warehouse(cfg.warehouse).table("raw/events").glob("source=*"))
    return "+".join(sources) or cfg.ingest.source


def model_folder(cfg: Config, mc: MethodConfig, day: date) -> Path:
    return Warehouse(cfg.warehouse).table(f"models/{mc.method}") / mc.version(day)


def resolve_day(cfg: Config, day: date | None) -> date:
    """The given day, or the last day with sequences (a command-line convenience, said aloud)."""
    return day if day is not None else latest_day(cfg.warehouse)


def build(mc: MethodConfig, n_items: int, n_users: int = 0):
    """A new model of the method; its initial weights depend only on ``train.seed``.

    ``n_users`` is the user vocabulary's size (the largest ``user_idx`` + 1), for methods with a
    row per user."""
    import torch

    cls = get_method(mc.method)
    torch.manual_seed(mc.train.seed)
    return cls(n_items, mc.params(), n_users)


@dataclass(frozen=True)
class WarmStart:
    """Start from the weights of ``folder`` (an earlier version) and train ``epochs`` epochs."""

    folder: Path
    epochs: int


def train_method(cfg: Config, name: str, day: date, *, sets: list[str] = (), resume: bool = False,
                 data: SequenceData | None = None, echo: Callable[[str], None] = print,
                 warm: WarmStart | None = None, evaluate: bool = True,
                 meta: dict[str, Any] | None = None) -> tuple[Any, list[dict]]:
    """Train ``name`` on the sequences as of ``day``; evaluate it on valid and test; write metrics.

    With ``warm``, the model starts from an earlier version's weights (vocabularies grown, see
    ``models.checkpoint.load_grown``) and trains ``warm.epochs`` epochs; the version folder is the
    same as a full training's (one model per method, configuration and day)."""
    from models.checkpoint import load_grown
    from models.trainer import train

    mc = method_config(name, cfg.methods.get(name), sets)
    data = data or load(cfg.warehouse, day, mc.train.protocol)
    model = build(mc, data.n_items, data.user_vocab)
    folder = model_folder(cfg, mc, day)
    fit = mc
    if warm is not None:
        grown = load_grown(model, warm.folder)
        fit = mc.model_copy(update={"train": mc.train.model_copy(update={"epochs": warm.epochs})})
    echo(f"train {name} on {dataset_name(cfg)} as of {day}: {len(data.users):,} users, {data.n_items:,} items, "
         f"{len(data.items):,} events -> {folder}"
         + (f" (warm start from {warm.folder.name}, {warm.epochs} epochs, grown: {', '.join(grown) or 'none'})"
            if warm is not None else ""))
    result = train(model, data, fit, folder, resume=resume, echo=echo, meta=meta)
    rows = evaluate_model(cfg, mc, model, data, result.folder.name) if evaluate else []
    return result, rows


def evaluate_model(cfg: Config, mc: MethodConfig, model, data: SequenceData, version: str) -> list[dict]:
    from models.evaluate import evaluate, metric_rows, write_metrics
    from models.trainer import pick_device

    device = pick_device(mc.train)
    model.to(device)
    rows: list[dict] = []
    for split in ("valid", "test"):
        if split in data.splits:
            res = evaluate(model, data, split, mask_seen=mc.train.mask_seen, batch_size=mc.train.eval_batch_size,
                           device=device)
            rows += metric_rows(res, method=mc.method, dataset=dataset_name(cfg), protocol=data.protocol,
                                day=data.day, version=version, seed=mc.train.seed)
    if rows:
        write_metrics(cfg.warehouse, rows)
    return rows


def load_trained(cfg: Config, name: str, day: date, sets: list[str] = ()):
    """The trained model of ``name`` with this configuration as of ``day``."""
    from models.checkpoint import load_model, read_json

    mc = method_config(name, cfg.methods.get(name), sets)
    folder = model_folder(cfg, mc, day)
    if not (folder / "model.safetensors").is_file():
        raise ModelNotFound(f"no trained {name} as of {day} with this configuration ({folder}); "
                            f"run `seqrep train --method {name} --date {day}{''.join(' --set ' + x for x in sets)}` first")
    meta = read_json(folder / "config.json")
    model = build(mc, int(meta["n_items"]), int(meta.get("user_vocab", 0)))
    load_model(model, folder)
    return mc, model, folder


def evaluate_methods(cfg: Config, names: list[str], day: date, *, sets: list[str] = ()) -> list[dict]:
    """Evaluate trained models of ``names`` as of ``day`` (one data load for all of them)."""
    rows: list[dict] = []
    cache: dict[str, SequenceData] = {}
    for name in names:
        mc, model, folder = load_trained(cfg, name, day, sets)
        protocol = mc.train.protocol
        if protocol not in cache:
            cache[protocol] = load(cfg.warehouse, day, protocol)
        rows += evaluate_model(cfg, mc, model, cache[protocol], folder.name)
    return rows
