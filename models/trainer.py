"""Training: one loop for every method.

The model's training examples (``model.training_examples``: by default windows of each user's
training events) are shuffled each epoch by a generator seeded with (seed, epoch), batched, and fed
to ``model.loss``; Adam updates the weights. After each epoch the validation split is ranked in full; the best validation NDCG@10
keeps its weights, and ``patience`` epochs without a better one stop training. CUDA runs under
bfloat16 autocast; CPU runs in float32 with deterministic algorithms, so a seed gives the same
model twice. A ``.partial`` folder holds the state after every epoch for ``resume``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from models.base import SequenceModel
from models.checkpoint import load_state, save_model, save_state, write_json
from models.data import SequenceData
from models.evaluate import evaluate
from models.registry import MethodConfig, TrainParams


@dataclass
class TrainResult:
    folder: Path
    epochs: int
    best_epoch: int
    best_valid_ndcg: float
    seconds: float
    log: list[dict[str, Any]] = field(default_factory=list)


def pick_device(tp: TrainParams) -> torch.device:
    if tp.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but torch sees no CUDA device")
    return torch.device("cuda" if tp.device != "cpu" and torch.cuda.is_available() else "cpu")


def setup_torch(tp: TrainParams, device: torch.device) -> None:
    torch.manual_seed(tp.seed)
    if device.type == "cpu":
        torch.set_num_threads(tp.threads or os.cpu_count() or 1)
        torch.use_deterministic_algorithms(True, warn_only=True)


def train(model: SequenceModel, data: SequenceData, mc: MethodConfig, folder: Path, *, resume: bool = False,
          echo: Callable[[str], None] = print, progress: bool | None = None,
          meta: dict[str, Any] | None = None) -> TrainResult:
    """Train ``model`` on ``data`` into ``folder`` (see the module docstring); returns the summary.

    ``folder`` is the published version folder: training writes ``<folder>.partial`` and swaps it
    in when done. ``progress`` shows a tqdm bar (default: when stderr is a terminal). ``meta`` is
    added to the version's config.json (e.g. where a warm start came from).
    """
    from pipelines.warehouse import Warehouse

    tp = mc.train
    device = pick_device(tp)
    setup_torch(tp, device)
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists() and not resume:
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    model.to(device)
    t0 = time.perf_counter()
    log: list[dict[str, Any]] = []
    model.prepare(data)
    if not getattr(model, "learned", True):
        best_state, best_epoch, best, epoch = model.state_dict(), 0, float("nan"), 0
    else:
        best_state, best_epoch, best, epoch, log = _fit(model, data, tp, partial, resume, device, echo, progress)
    model.load_state_dict(best_state)
    save_model(model, partial)
    seconds = time.perf_counter() - t0
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    if device.type == "cuda":
        peak_gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20
    write_json(partial / "config.json", {
        "method": mc.method, "version": folder.name, "day": data.day, "protocol": data.protocol,
        "n_items": data.n_items, "n_users": len(data.users), "user_vocab": model.n_users, "model": mc.params().model_dump(),
        "train": tp.model_dump(), "device": str(device), "epochs": epoch, "best_epoch": best_epoch,
        "best_valid_ndcg@10": best, "train_seconds": round(seconds, 2), "torch": torch.__version__,
        "peak_rss_mb": round(peak_mb, 1), **({"peak_gpu_mb": round(peak_gpu_mb, 1)} if device.type == "cuda" else {}),
        **(meta or {}),
    })
    (partial / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    for name in ("state.safetensors", "state.json"):
        (partial / name).unlink(missing_ok=True)
    Warehouse(folder.parents[2]).swap_in(partial, folder)  # folder = <warehouse>/models/<method>/<version>
    return TrainResult(folder, epoch, best_epoch, best, seconds, log)


def _fit(model, data, tp, partial, resume, device, echo, progress):
    from tqdm.auto import tqdm

    optimizer = torch.optim.Adam(model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay)
    matrix = model.training_examples(data)
    if len(matrix) == 0:
        raise ValueError(f"no training examples as of {data.day}: every user has fewer than 2 training events")
    if device.type == "cuda":
        matrix = matrix.to(device)
    targets_per_epoch = model.count_targets(matrix)
    epoch, best, best_epoch, stale, log = 0, -1.0, 0, 0, []
    best_state = copy.deepcopy(model.state_dict())
    meta = load_state(partial, model, optimizer) if resume else None
    if meta:
        epoch, best, best_epoch, stale, log = meta["epoch"], meta["best"], meta["best_epoch"], meta["stale"], meta["log"]
        if (partial / "best.safetensors").is_file():
            from safetensors.torch import load_file

            best_state = load_file(str(partial / "best.safetensors"), device=str(device))
        echo(f"resumed {partial} after epoch {epoch} (best valid NDCG@10 {best:.4f} at epoch {best_epoch})")
    amp = device.type == "cuda" and tp.amp
    show = sys.stderr.isatty() if progress is None else progress
    # Wall clock of training and validation, continued across a resume.
    started = time.perf_counter() - (log[-1]["elapsed_s"] if log else 0.0)
    while epoch < tp.epochs and stale < tp.patience:
        if tp.time_budget_s and epoch > 0 and time.perf_counter() - started >= tp.time_budget_s:
            echo(f"time budget of {tp.time_budget_s:.0f}s spent after epoch {epoch}")
            break
        epoch += 1
        model.train()
        order = torch.as_tensor(np.random.default_rng([tp.seed, epoch]).permutation(len(matrix)), device=matrix.device)
        t = time.perf_counter()
        total, batches = 0.0, 0
        bar = tqdm(range(0, len(order), tp.batch_size), desc=f"epoch {epoch}", unit="batch", leave=False,
                   disable=not show)
        for lo in bar:
            batch = matrix[order[lo:lo + tp.batch_size]].to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = model.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
            if show and batches % 10 == 0:
                bar.set_postfix(loss=f"{total / batches:.4f}",
                                samples_s=f"{lo / max(time.perf_counter() - t, 1e-9):,.0f}")
        seconds = time.perf_counter() - t
        valid = evaluate(model, data, "valid", mask_seen=tp.mask_seen, batch_size=tp.eval_batch_size, device=device).mean()
        ndcg = valid[("ndcg", 10)]
        row = {"epoch": epoch, "loss": total / batches, "valid_ndcg@10": ndcg, "valid_hr@10": valid[("hr", 10)],
               "seconds": round(seconds, 3), "windows_per_s": round(len(matrix) / seconds, 1),
               "targets_per_s": round(targets_per_epoch / seconds, 1),
               "elapsed_s": round(time.perf_counter() - started, 3)}
        log.append(row)
        if ndcg > best:
            best, best_epoch, stale = ndcg, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in best_state.items()}, str(partial / "best.safetensors"))
        else:
            stale += 1
        echo(f"epoch {epoch:>3}  loss {row['loss']:.4f}  valid NDCG@10 {ndcg:.4f}  HR@10 {row['valid_hr@10']:.4f}"
             f"  {seconds:.1f}s ({row['targets_per_s']:,.0f} targets/s){'  *' if stale == 0 else ''}")
        save_state(partial, model, optimizer, {"epoch": epoch, "best": best, "best_epoch": best_epoch,
                                               "stale": stale, "log": log})
    (partial / "best.safetensors").unlink(missing_ok=True)
    return best_state, best_epoch, best, epoch, log
