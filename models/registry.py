"""Methods by name, and their configuration: class defaults < ``models/configs/<name>.yaml`` <
the run's config file (``methods: {name: {...}}``) < ``--set section.key=value``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.adversarial import SASRecGAN
from models.base import ModelParams, SequenceModel
from models.baselines import Markov, MostPopular
from models.gnn import SRGNN, LightGCN
from models.multimodal import TextSASRec
from models.multitask import MMoE
from models.rnn import LSTM, GRU4Rec
from models.transformer import BERT4Rec, SASRec

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

METHODS: dict[str, type[SequenceModel]] = {
    m.name: m for m in (MostPopular, Markov, GRU4Rec, LSTM, SASRec, BERT4Rec, SRGNN, LightGCN, TextSASRec, SASRecGAN,
                        MMoE)}

FAMILIES: dict[str, str] = {"pop": "baseline", "markov": "baseline", "gru4rec": "RNN", "lstm": "RNN",
                            "sasrec": "Transformer", "bert4rec": "Transformer", "srgnn": "GNN", "lightgcn": "GNN",
                            "sasrec_text": "multimodal", "sasrec_gan": "GAN", "mmoe": "multi-task"}


class TrainParams(BaseModel):
    """How a method is trained and evaluated (the same for every method)."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(32, ge=1)
    #: Upper bound on epochs; early stopping on validation NDCG@10 usually ends sooner.
    epochs: int = Field(200, ge=1)
    #: Evaluations without a better validation NDCG@10 before training stops.
    patience: int = Field(10, ge=1)
    seed: int = 42
    #: ``auto``: CUDA when present, else CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: CPU threads for torch (0: one per core).
    threads: int = Field(0, ge=0)
    #: bfloat16 autocast on CUDA (ignored on CPU, where training is float32 and deterministic).
    amp: bool = True
    #: Evaluation protocol: ``loo`` (leave-one-out) or ``temporal`` (the day's items).
    protocol: Literal["loo", "temporal"] = "loo"
    #: Remove a user's already-seen items from the ranking (a seen target then counts as a miss).
    mask_seen: bool = True
    eval_batch_size: int = Field(512, ge=1)
    #: Stop starting epochs after this many wall-clock seconds of training and validation
    #: (0: no limit), for equal-budget comparisons.
    time_budget_s: float = Field(0.0, ge=0)


class MethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    method: str
    model: dict[str, Any]
    train: TrainParams

    def params(self) -> ModelParams:
        return METHODS[self.method].Params.model_validate(self.model)

    def version(self, day) -> str:
        """``<day>-<hash>``: the data's day and a hash of everything that shapes the model."""
        blob = json.dumps({"method": self.method, "model": self.params().model_dump(),
                           "train": self.train.model_dump(exclude={"device", "threads", "eval_batch_size", "amp"})},
                          sort_keys=True)
        return f"{day}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


class MethodError(ValueError):
    """Unknown method or invalid method configuration (the message says which key)."""


def get_method(name: str) -> type[SequenceModel]:
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; `seqrep methods` lists them: {', '.join(METHODS)}")
    return METHODS[name]


def _set(tree: dict[str, Any], dotted: str, raw: str) -> None:
    section, _, key = dotted.partition(".")
    if section not in ("model", "train") or not key:
        raise MethodError(f"--set {dotted}={raw}: keys are model.<name> or train.<name>")
    tree.setdefault(section, {})[key] = yaml.safe_load(raw)


def method_config(name: str, overrides: dict[str, dict[str, Any]] | None = None, sets: list[str] = ()) -> MethodConfig:
    """The resolved configuration of a method (see the module docstring)."""
    cls = get_method(name)
    tree: dict[str, Any] = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text()) or {}
    tree = {"model": dict(tree.get("model") or {}), "train": dict(tree.get("train") or {})}
    for section, values in (overrides or {}).items():
        if section not in ("model", "train"):
            raise MethodError(f"methods.{name}.{section}: sections are model and train")
        tree[section].update(values or {})
    for item in sets:
        dotted, sep, raw = item.partition("=")
        if not sep:
            raise MethodError(f"--set {item}: expected section.key=value")
        _set(tree, dotted, raw)
    for section, schema in (("model", cls.Params), ("train", TrainParams)):
        try:
            schema.model_validate(tree[section])
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, (section, *first["loc"])))
            raise MethodError(f"method {name}: {where}: {first['msg']} (got {first.get('input')!r})") from None
    return MethodConfig(method=name, model=tree["model"], train=TrainParams.model_validate(tree["train"]))
