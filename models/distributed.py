"""Data-parallel training over processes: PyTorch ``DistributedDataParallel`` around a model's loss.

Under ``torchrun --nproc_per_node N`` (what ``seqrep train --nproc N`` starts), each of the N
processes holds a replica of the model (the same initial weights: the same seed), takes every
N-th example of each epoch's shuffled order (the order is the same everywhere: seeded by
(seed, epoch)), and trains on batches of ``ceil(batch_size / N)`` examples; DDP averages the
gradients across the processes after each backward pass (gloo on CPU, NCCL on CUDA), so every
replica takes the same Adam step, as one process with the whole batch would (up to the rounding
of sums in another order). Validation runs on every replica (same weights, same numbers, so
every process takes the same early-stopping decision without a message); only rank 0 writes.

Reference: Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training",
VLDB 2020.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor, nn


def world() -> tuple[int, int]:
    """(rank, number of processes): (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return world()[0] == 0


def device_of_rank(cuda: bool) -> torch.device:
    """Each process's device: its own GPU (``LOCAL_RANK``) with CUDA, else the CPU."""
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}") if cuda else torch.device("cpu")


def init(device: torch.device) -> None:
    """Join the process group torchrun describes (once per process)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


class LossOf(nn.Module):
    """``model.loss`` as a module's forward, so DDP sees the pass whose gradients it averages."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Tensor) -> Tensor:
        return self.model.loss(batch)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(LossOf(model), device_ids=[device] if device.type == "cuda" else None)


def shard(order: Tensor, rank: int, size: int) -> Tensor:
    """This process's share of an epoch's order: every ``size``-th example from ``rank`` (the
    order cut to a multiple of ``size``, so every process runs the same number of steps)."""
    return order[: len(order) - len(order) % size][rank::size]


def local_batch(batch_size: int, size: int) -> int:
    return max(1, math.ceil(batch_size / size))


def mean_over_ranks(value: float) -> float:
    """The mean of ``value`` over the processes (the epoch's loss, for the log)."""
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()
