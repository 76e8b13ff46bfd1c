"""Model and trainer state as safetensors + JSON: nothing is ever unpickled.

A trained model is a folder ``models/<method>/<version>/``:

- ``model.safetensors``: the weights (and buffers, e.g. a baseline's counts);
- ``config.json``: method, model and training parameters, data day, vocabulary size, metrics;
- ``epochs.jsonl``: one line per epoch (loss, validation metrics, seconds).

While training, ``<version>.partial/`` also holds ``state.safetensors`` + ``state.json`` (optimizer
moments, random-generator state, epoch, best score) so ``--resume`` continues where a run stopped.
The finished folder replaces any older one in one rename.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from models.errors import ModelError


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_model(model: nn.Module, folder: Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic_write(folder / "model.safetensors", lambda p: save_file(tensors, str(p)))


class CheckpointError(ModelError):
    """A model folder's files are damaged, or do not match the configuration they are read with."""


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not readable safetensors ({exc})") from None


def stored_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in ``model.safetensors``, from its header (no tensor is read)."""
    path = folder / "model.safetensors"
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not readable safetensors ({exc})") from None


def check_shapes(build: Callable[[], nn.Module], folder: Path) -> None:
    """Build the model ``build`` makes on the meta device (no memory is allocated, however large
    its configuration says it is) and compare its parameters' shapes with the stored ones: a
    tampered or mismatched ``config.json`` is an error before any real allocation."""
    stored = stored_shapes(folder)
    try:
        with torch.device("meta"):
            model = build()
    except (RuntimeError, NotImplementedError):  # a method that cannot be built on meta: loading checks it
        return
    for name, p in model.named_parameters():
        if name not in stored:
            raise CheckpointError(f"{folder / 'model.safetensors'} has no {name} (a different method or config?)")
        if tuple(p.shape) != stored[name]:
            raise CheckpointError(f"{folder}: {name} is {stored[name]} in the weights but {tuple(p.shape)} by its "
                                  "config.json (damaged or edited?)")


def load_model(model: nn.Module, folder: Path) -> None:
    """Load weights into ``model``; buffers whose size depends on the data take the stored size."""
    tensors = _load(folder / "model.safetensors")
    own = model.state_dict()
    for key, value in tensors.items():
        if key in own and own[key].shape != value.shape:
            module_name, _, buffer = key.rpartition(".")
            module = model.get_submodule(module_name) if module_name else model
            if buffer not in module._buffers:
                raise ValueError(f"{folder / 'model.safetensors'}: {key} has shape {tuple(value.shape)}, "
                                 f"the model expects {tuple(own[key].shape)} (a different vocabulary or config?)")
            module._buffers[buffer] = value
    model.load_state_dict(tensors, strict=True)


def load_grown(model: nn.Module, folder: Path) -> list[str]:
    """Warm start: an earlier version's weights into ``model``, whose vocabularies may have grown.

    Tensors of equal shape are copied; a tensor whose first dimension grew (an embedding table or
    output bias over items or users: vocabularies are append-only, so old indexes keep their rows)
    gets the old rows, and its new rows keep their fresh initialization. Returns the grown keys.
    """
    old = _load(folder / "model.safetensors")
    own = model.state_dict()
    missing = sorted(set(own) - set(old))
    if missing:
        raise ValueError(f"{folder}: no {missing[0]} in the stored weights (a different method or config?)")
    grown = []
    with torch.no_grad():
        for key, value in old.items():
            if key not in own:
                raise ValueError(f"{folder}: {key} is not in the model (a different method or config?)")
            cur = own[key]
            if cur.shape == value.shape:
                cur.copy_(value)
            elif cur.dim() == value.dim() and cur.shape[1:] == value.shape[1:] and cur.shape[0] > value.shape[0]:
                cur[:value.shape[0]].copy_(value)
                grown.append(key)
            else:
                raise ValueError(f"{folder}: {key} has shape {tuple(value.shape)}, the model {tuple(cur.shape)}: "
                                 "only a vocabulary's rows can grow between versions")
    return grown


def write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_state(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any]) -> None:
    """Everything ``--resume`` needs: weights, optimizer tensors, RNG state, and ``meta`` (JSON)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for pid, state in opt["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(folder / "state.safetensors.tmp"))
    write_json(folder / "state.json", {**meta, "optim_scalars": scalars, "param_groups": opt["param_groups"]})
    os.replace(folder / "state.safetensors.tmp", folder / "state.safetensors")


def load_state(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore what ``save_state`` wrote; returns its ``meta`` (None when there is no state)."""
    if not (folder / "state.safetensors").is_file() or not (folder / "state.json").is_file():
        return None
    tensors = _load(folder / "state.safetensors")
    meta = read_json(folder / "state.json")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta.pop("optim_scalars").items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return meta
