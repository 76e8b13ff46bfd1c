"""Training: one loop for every method.

The model's training examples (``model.training_examples``: by default windows of each user's
training events) are shuffled each epoch by a generator seeded with (seed, epoch), batched, and fed
to ``model.loss``; Adam updates the weights. After each epoch the validation split is ranked in
full; the best validation NDCG@10 keeps its weights, and ``patience`` epochs without a better one
stop training; a loss that turns NaN or infinite stops it with ``TrainingDiverged``. An
``on_epoch`` hook sees each epoch's log row (``seqrep tune`` reports it to its pruner). CUDA runs
under bfloat16 autocast; CPU runs in float32 with deterministic
algorithms, so a seed gives the same model twice.

The :class:`Trainer` writes into the folder it is given (it never asks where that is): the state
after every epoch (for ``resume``), then the finished model (``models.checkpoint``). Where the
folder lives, and how it becomes a published version, is the caller's business
(``pipelines/modeling/train.py`` trains into ``<version>.partial`` and swaps it in whole).
"""

from __future__ import annotations

import copy
import json
import math
import os
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from models import distributed
from models.base import SequenceModel
from models.checkpoint import load_state, save_model, save_state, write_json
from models.data import SequenceData
from models.errors import DataError, TrainingDiverged
from models.evaluate import evaluate
from models.registry import MethodConfig, TrainParams

Echo = Callable[[str], None]
#: Called with each epoch's log row after it is validated; may raise to stop training (a tuner's pruner).
EpochHook = Callable[[dict[str, Any]], None]


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
    cuda = tp.device != "cpu" and torch.cuda.is_available()
    if distributed.world()[1] > 1:  # one GPU per process (LOCAL_RANK) under torchrun
        return distributed.device_of_rank(cuda)
    return torch.device("cuda" if cuda else "cpu")


def setup_torch(tp: TrainParams, device: torch.device) -> None:
    torch.manual_seed(tp.seed)
    if device.type == "cpu":  # the cores shared by the processes of a data-parallel run
        torch.set_num_threads(max(1, (tp.threads or os.cpu_count() or 1) // distributed.world()[1]))
        torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class _Progress:
    """Where training stands: what an epoch's state file holds, and what ``resume`` restores."""

    epoch: int = 0
    best: float = -1.0
    best_epoch: int = 0
    stale: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Fits ``model`` on ``data`` with the training parameters of ``mc`` into ``folder`` (module docstring).

    ``progress`` shows a tqdm bar (default: when stderr is a terminal)."""

    def __init__(self, model: SequenceModel, data: SequenceData, mc: MethodConfig, folder: Path, *,
                 echo: Echo = print, progress: bool | None = None, on_epoch: EpochHook | None = None):
        self.model, self.data, self.mc, self.folder = model, data, mc, Path(folder)
        if not distributed.is_main():  # the replicas of a data-parallel run: rank 0 alone writes the model
            import tempfile

            self.folder = Path(tempfile.mkdtemp(prefix=f"seqrep-rank{distributed.world()[0]}-"))
        self.tp = mc.train
        self.echo, self.on_epoch = echo, on_epoch
        self.show = sys.stderr.isatty() if progress is None else progress
        self.device = pick_device(self.tp)
        self.state = _Progress()
        self.best_state: dict[str, torch.Tensor] = {}

    # -- the whole run ------------------------------------------------------------------------------
    def run(self, *, resume: bool = False, meta: dict[str, Any] | None = None) -> TrainResult:
        """Prepare, fit (or continue a fit with ``resume``), keep the best epoch, write the model.
        ``meta`` is added to its config.json (e.g. the version name, where a warm start came from)."""
        setup_torch(self.tp, self.device)
        if self.folder.exists() and not resume:
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.model.to(self.device)
        t0 = time.perf_counter()
        self.model.prepare(self.data)
        if self.model.learned and not self.model.fits_itself:
            self.fit(resume=resume)
        else:
            self.best_state = self.model.state_dict()
        self.model.load_state_dict(self.best_state)
        seconds = time.perf_counter() - t0
        self.write(seconds, meta)
        if not distributed.is_main():
            shutil.rmtree(self.folder, ignore_errors=True)
        return TrainResult(self.folder, self.state.epoch, self.state.best_epoch, self.state.best if self.model.learned
                           else float("nan"), seconds, self.state.log)

    def fit(self, *, resume: bool = False) -> None:
        """Epochs until ``train.epochs``, early stopping or the time budget; the best weights end in
        ``best_state``."""
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.tp.lr, weight_decay=self.tp.weight_decay)
        self.rank, self.world = distributed.world()
        if self.world > 1:
            distributed.init(self.device)
        self.step = distributed.wrap(self.model, self.device) if self.world > 1 else self.model.loss
        if self.tp.valid_split not in self.data.splits:
            raise DataError(f"train.valid_split={self.tp.valid_split}: the data as of {self.data.day} has no such split "
                            f"(its splits: {', '.join(self.data.splits) or 'none'})")
        examples = self.examples()
        n_targets = self.model.count_targets(examples)
        self.best_state = copy.deepcopy(self.model.state_dict())
        if resume:
            self.restore()
        # Wall clock of training and validation, continued across a resume.
        started = time.perf_counter() - (self.state.log[-1]["elapsed_s"] if self.state.log else 0.0)
        while self.state.epoch < self.tp.epochs and self.state.stale < self.tp.patience:
            if self.tp.time_budget_s and self.state.epoch > 0 and time.perf_counter() - started >= self.tp.time_budget_s:
                self.echo(f"time budget of {self.tp.time_budget_s:.0f}s spent after epoch {self.state.epoch}")
                break
            self.state.epoch += 1
            loss, seconds = self.train_epoch(examples)
            if not math.isfinite(loss):
                raise TrainingDiverged(f"{self.mc.method}: the training loss is {loss} in epoch {self.state.epoch} "
                                       f"(train.lr={self.tp.lr:g}); a smaller learning rate usually helps")
            row = self.validate(loss, seconds, len(examples), n_targets, started)
            self.early_stopping(row)
            self.save_state()
            if self.on_epoch is not None:
                self.on_epoch(row)
        (self.folder / "best.safetensors").unlink(missing_ok=True)

    # -- the steps ------------------------------------------------------------------------------------
    def examples(self) -> torch.Tensor:
        matrix = self.model.training_examples(self.data)
        if len(matrix) == 0:
            raise DataError(f"no training examples as of {self.data.day}: every user has fewer than 2 training events")
        return matrix.to(self.device) if self.device.type == "cuda" else matrix

    def train_epoch(self, examples: torch.Tensor) -> tuple[float, float]:
        """One pass over the shuffled examples; (mean loss, seconds)."""
        from tqdm.auto import tqdm

        tp, model = self.tp, self.model
        model.train()
        order = torch.as_tensor(np.random.default_rng([tp.seed, self.state.epoch]).permutation(len(examples)),
                                device=examples.device)
        size = tp.batch_size
        if self.world > 1:  # this process's share, in batches of its share of the batch
            order, size = distributed.shard(order, self.rank, self.world), distributed.local_batch(size, self.world)
        amp = self.device.type == "cuda" and tp.amp
        t = time.perf_counter()
        total, batches = 0.0, 0
        bar = tqdm(range(0, len(order), size), desc=f"epoch {self.state.epoch}", unit="batch", leave=False,
                   disable=not self.show)
        for lo in bar:
            batch = examples[order[lo:lo + size]].to(self.device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = self.step(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
            if self.show and batches % 10 == 0:
                bar.set_postfix(loss=f"{total / batches:.4f}", samples_s=f"{lo / max(time.perf_counter() - t, 1e-9):,.0f}")
        mean = total / batches
        return (distributed.mean_over_ranks(mean) if self.world > 1 else mean), time.perf_counter() - t

    def validate(self, loss: float, seconds: float, n_examples: int, n_targets: int, started: float) -> dict[str, Any]:
        """Rank the validation split in full; the epoch's log row."""
        valid = evaluate(self.model, self.data, self.tp.valid_split, mask_seen=self.tp.mask_seen,
                         batch_size=self.tp.eval_batch_size, device=self.device).mean()
        row = {"epoch": self.state.epoch, "loss": loss, "valid_ndcg@10": valid[("ndcg", 10)],
               "valid_hr@10": valid[("hr", 10)], "seconds": round(seconds, 3),
               "windows_per_s": round(n_examples / seconds, 1), "targets_per_s": round(n_targets / seconds, 1),
               "elapsed_s": round(time.perf_counter() - started, 3)}
        self.state.log.append(row)
        return row

    def early_stopping(self, row: dict[str, Any]) -> None:
        """Keep the weights of a better validation NDCG@10; count the epochs without one."""
        from safetensors.torch import save_file

        s, ndcg = self.state, row["valid_ndcg@10"]
        if ndcg > s.best:
            s.best, s.best_epoch, s.stale = ndcg, s.epoch, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
            save_file({k: v.detach().cpu().contiguous() for k, v in self.best_state.items()},
                      str(self.folder / "best.safetensors"))
        else:
            s.stale += 1
        self.echo(f"epoch {s.epoch:>3}  loss {row['loss']:.4f}  valid NDCG@10 {ndcg:.4f}  HR@10 {row['valid_hr@10']:.4f}"
                  f"  {row['seconds']:.1f}s ({row['targets_per_s']:,.0f} targets/s){'  *' if s.stale == 0 else ''}")

    # -- state for resume, and the finished model -----------------------------------------------------
    def save_state(self) -> None:
        s = self.state
        save_state(self.folder, self.model, self.optimizer, {"epoch": s.epoch, "best": s.best,
                                                             "best_epoch": s.best_epoch, "stale": s.stale, "log": s.log})

    def restore(self) -> None:
        """Continue from the last epoch's state in the folder, if there is one."""
        meta = load_state(self.folder, self.model, self.optimizer)
        if not meta:
            return
        self.state = _Progress(meta["epoch"], meta["best"], meta["best_epoch"], meta["stale"], meta["log"])
        if (self.folder / "best.safetensors").is_file():
            from safetensors.torch import load_file

            self.best_state = load_file(str(self.folder / "best.safetensors"), device=str(self.device))
        self.echo(f"resumed {self.folder} after epoch {self.state.epoch} "
                  f"(best valid NDCG@10 {self.state.best:.4f} at epoch {self.state.best_epoch})")

    def write(self, seconds: float, meta: dict[str, Any] | None) -> None:
        """The finished model: weights, config.json, epochs.jsonl; the resume state removed."""
        save_model(self.model, self.folder)
        data, tp, device = self.data, self.tp, self.device
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        write_json(self.folder / "config.json", {
            "method": self.mc.method, "version": self.mc.version(data.day), "day": data.day, "protocol": data.protocol,
            "n_items": data.n_items, "n_users": len(data.users), "user_vocab": self.model.n_users,
            "model": self.mc.params().model_dump(), "train": tp.model_dump(), "device": str(device),
            "epochs": self.state.epoch, "best_epoch": self.state.best_epoch,
            "best_valid_ndcg@10": self.state.best if self.model.learned else float("nan"),
            "train_seconds": round(seconds, 2), "torch": torch.__version__, "peak_rss_mb": round(peak_mb, 1),
            **({"peak_gpu_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)} if device.type == "cuda" else {}),
            **(meta or {}),
        })
        (self.folder / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in self.state.log))
        for name in ("state.safetensors", "state.json"):
            (self.folder / name).unlink(missing_ok=True)


def train(model: SequenceModel, data: SequenceData, mc: MethodConfig, folder: Path, *, resume: bool = False,
          echo: Echo = print, progress: bool | None = None, meta: dict[str, Any] | None = None,
          on_epoch: EpochHook | None = None) -> TrainResult:
    """Train ``model`` on ``data`` and write the finished model into ``folder`` (``Trainer.run``)."""
    return Trainer(model, data, mc, folder, echo=echo, progress=progress, on_epoch=on_epoch).run(resume=resume, meta=meta)
