"""Methods by name, and their configuration: class defaults < ``models/configs/<name>.yaml`` <
the run's config file (``methods: {name: {...}}``) < ``--set section.key=value``.

A new method is one module (a ``SequenceModel`` subclass with ``name``, ``family`` and ``Params``)
plus one line in ``METHODS`` below, or ``register(cls)`` from code outside the package (a test,
a plugin): ``seqrep train`` and the nightly steps find it by name either way.
"""

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
from models.cross_domain import EMCDR, MixedSASRec
from models.errors import MethodError
from models.fusion import GCSAN
from models.gnn import SRGNN, LightGCN
from models.multimodal import TextSASRec
from models.multitask import MMoE
from models.rnn import LSTM, GRU4Rec
from models.skipgram import Item2Vec
from models.social import SocialSASRec
from models.transformer import BERT4Rec, SASRec

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

METHODS: dict[str, type[SequenceModel]] = {
    m.name: m for m in (MostPopular, Markov, GRU4Rec, LSTM, SASRec, BERT4Rec, SRGNN, GCSAN, LightGCN, Item2Vec,
                        TextSASRec, SASRecGAN, MMoE, MixedSASRec, EMCDR, SocialSASRec)}
#: Family of each method, for listings (``seqrep methods``): ``cls.family``.
FAMILIES: dict[str, str] = {name: cls.family for name, cls in METHODS.items()}
#: Default-config files of methods registered from outside the package (``register``).
_CONFIG_FILES: dict[str, Path | None] = {}


def register(cls: type[SequenceModel], config: str | Path | None = None) -> type[SequenceModel]:
    """Add a method (usable as a class decorator); ``config`` is its defaults YAML (none: the
    ``Params`` defaults). A name already registered is an error."""
    if not isinstance(getattr(cls, "name", None), str) or not issubclass(cls, SequenceModel):
        raise MethodError(f"{cls!r} is not a SequenceModel subclass with a name")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise MethodError(f"method {cls.name!r} is already registered ({METHODS[cls.name].__module__})")
    METHODS[cls.name] = cls
    FAMILIES[cls.name] = cls.family
    _CONFIG_FILES[cls.name] = Path(config) if config is not None else None
    return cls


def config_file(name: str) -> Path | None:
    """The defaults YAML of a method (None: its ``Params`` defaults only)."""
    if name in _CONFIG_FILES:
        return _CONFIG_FILES[name]
    path = CONFIG_DIR / f"{name}.yaml"
    return path if path.is_file() else None




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
    #: The split whose NDCG@10 early-stops training (a cross-domain method for cold users:
    #: ``cold_valid``, users apart from ``cold_test``'s).
    valid_split: Literal["valid", "cold_valid"] = "valid"
    #: Remove a user's already-seen items from the ranking (a seen target then counts as a miss).
    mask_seen: bool = True
    eval_batch_size: int = Field(512, ge=1)
    #: Stop starting epochs after this many wall-clock seconds of training and validation
    #: (0: no limit), for equal-budget comparisons.
    time_budget_s: float = Field(0.0, ge=0)


#: TrainParams fields added after versions were named, with their defaults (``MethodConfig.version``).
_LATER_TRAIN_DEFAULTS = {"valid_split": "valid"}
#: The same for model parameters (``sasrec_text``'s vector modalities, ``models/multimodal.py``).
_LATER_MODEL_DEFAULTS = {"modalities": ["text"], "vector_dims": {}, "same_domain_negatives": False}


class MethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    method: str
    model: dict[str, Any]
    train: TrainParams

    def params(self) -> ModelParams:
        return METHODS[self.method].Params.model_validate(self.model)

    def version(self, day, scope: str = "") -> str:
        """``<day>-<hash>``: the data's day and a hash of everything that shapes the model; ``scope``
        names data other than the day's sequences (a cross-domain pair's view), so its models
        never share a version with the global ones."""
        # Settings added after versions were first named enter the hash only away from their
        # default, so a model trained before they existed keeps its version.
        later = {k for k, default in _LATER_TRAIN_DEFAULTS.items() if getattr(self.train, k) == default}
        model = self.params().model_dump()
        model = {k: v for k, v in model.items() if _LATER_MODEL_DEFAULTS.get(k, object()) != v}
        tree = {"method": self.method, "model": model,
                "train": self.train.model_dump(exclude={"device", "threads", "eval_batch_size", "amp", *later})}
        blob = json.dumps({**tree, "scope": scope} if scope else tree, sort_keys=True)
        return f"{day}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


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
    tree: dict[str, Any] = {"model": {}, "train": {}}
    for _, layer in method_layers(name, overrides, sets):
        for section in ("model", "train"):
            tree[section].update(layer.get(section, {}))
    for section, schema in (("model", cls.Params), ("train", TrainParams)):
        try:
            schema.model_validate(tree[section])
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, (section, *first["loc"])))
            raise MethodError(f"method {name}: {where}: {first['msg']} (got {first.get('input')!r})") from None
    return MethodConfig(method=name, model=tree["model"], train=TrainParams.model_validate(tree["train"]))


def method_layers(name: str, overrides: dict[str, dict[str, Any]] | None = None,
                  sets: list[str] = ()) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """What each layer above the ``Params`` defaults sets, lowest first: the method's YAML, the run
    config's ``methods.<name>``, ``--set``; each (where it comes from, {"model": ..., "train": ...})."""
    get_method(name)
    layers = []
    path = config_file(name)
    if path is not None:
        tree = yaml.safe_load(path.read_text()) or {}
        layers.append((f"file {path.name}", {s: dict(tree.get(s) or {}) for s in ("model", "train")}))
    if overrides:
        for section in overrides:
            if section not in ("model", "train"):
                raise MethodError(f"methods.{name}.{section}: sections are model and train")
        layers.append((f"config methods.{name}", {s: dict(overrides.get(s) or {}) for s in ("model", "train")}))
    if sets:
        tree = {"model": {}, "train": {}}
        for item in sets:
            dotted, sep, raw = item.partition("=")
            if not sep:
                raise MethodError(f"--set {item}: expected section.key=value")
            _set(tree, dotted, raw)
        layers.append(("--set", tree))
    return layers


def method_sources(name: str, overrides: dict[str, dict[str, Any]] | None = None,
                   sets: list[str] = ()) -> dict[str, tuple[Any, str]]:
    """Every setting of the method's resolved configuration: ``{"model.dim": (value, where)}``,
    where is ``default`` (its ``Params``), ``file NAME.yaml``, ``config methods.NAME`` or ``--set``."""
    mc = method_config(name, overrides, sets)
    where = {f"{section}.{key}": source for source, layer in method_layers(name, overrides, sets)
             for section, values in layer.items() for key in values}
    values = {**{f"model.{k}": v for k, v in mc.params().model_dump(mode="json").items()},
              **{f"train.{k}": v for k, v in mc.train.model_dump(mode="json").items()}}
    return {key: (value, where.get(key, "default")) for key, value in values.items()}


def build(mc: MethodConfig, n_items: int, n_users: int = 0) -> SequenceModel:
    """A new model of the method; its initial weights depend only on ``train.seed``.

    ``n_users`` is the user vocabulary's size (the largest ``user_idx`` + 1), for methods with a
    row per user."""
    import torch

    cls = get_method(mc.method)
    torch.manual_seed(mc.train.seed)
    return cls(n_items, mc.params(), n_users)


def load_folder(mc: MethodConfig, folder: Path) -> SequenceModel:
    """The model stored in ``folder`` (``models/checkpoint.py``), built with ``mc`` and sized by its
    config.json. The config is checked against the weights' own shapes before anything is
    allocated, so a damaged or tampered folder is a ``CheckpointError``, never a huge allocation."""
    from models.checkpoint import CheckpointError, check_shapes, load_model, read_json

    try:
        meta = read_json(folder / "config.json")
        n_items, n_users = int(meta["n_items"]), int(meta.get("user_vocab", 0))
        check_shapes(lambda: build(mc, n_items, n_users), folder)
        model = build(mc, n_items, n_users)
        load_model(model, folder)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a config.json that is not what it should be
        raise CheckpointError(f"{folder}: {exc}") from None
    return model


def load_version_folder(folder: Path) -> tuple[MethodConfig, SequenceModel]:
    """A version folder's configuration (as it was trained) and model."""
    from models.checkpoint import CheckpointError, read_json

    try:
        meta = read_json(folder / "config.json")
        mc = MethodConfig(method=meta["method"], model=meta["model"], train=meta["train"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{folder}/config.json: {exc}") from None
    return mc, load_folder(mc, folder)
