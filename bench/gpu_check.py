"""Train SASRec a few epochs on CUDA and print throughput (targets/s), beside one CPU epoch.

The data is synthetic and built in memory (no warehouse, Spark or dataset needed), so the check
runs on a bare GPU machine with only torch, numpy, pydantic, pyyaml, safetensors and tqdm:
users walk Zipf-popular item chains, ``--users`` x ``--length`` events over ``--items`` items.
Run: ``bash bench/gpu_check.sh`` (defaults: 20k users x 200 events, 20k items, 3 epochs).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np



def synthetic(users: int, length: int, items: int, seed: int = 0):
    from models.data import SequenceData, Split

    rng = np.random.default_rng(seed)
    start = rng.zipf(1.2, users) % items
    steps = rng.integers(1, 4, (users, length)).cumsum(1)
    seqs = (start[:, None] + steps) % items + 1
    offsets = np.arange(users + 1, dtype=np.int64) * length
    flat = seqs.reshape(-1).astype(np.int64)
    lengths = np.full(users, length)
    data = SequenceData(date(2024, 1, 1), "loo", items, np.arange(1, users + 1), offsets, flat, lengths - 2)
    rows = np.arange(users)
    data.splits["valid"] = Split(rows, lengths - 2, flat[offsets[:-1] + length - 2][:, None])
    data.splits["test"] = Split(rows, lengths - 1, flat[offsets[:-1] + length - 1][:, None])
    return data


def run(data, device: str, epochs: int, batch: int) -> list[dict]:
    from models.registry import method_config
    from models.registry import build
    from models.trainer import train

    mc = method_config("sasrec", {"train": {"device": device, "epochs": epochs, "batch_size": batch, "patience": 100}})
    model = build(mc, data.n_items)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "models" / "sasrec" / f"{device}-check"
        result = train(model, data, mc, folder, echo=lambda m: print(f"  [{device}] {m}", flush=True), progress=False)
    return result.log


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--cpu-epochs", type=int, default=1, help="CPU epochs for the reference (0: skip)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else ""))
    data = synthetic(args.users, args.length, args.items)
    print(f"{args.users:,} users x {args.length} events, {args.items:,} items; SASRec dim 64, max_len 50, full softmax")
    rows = {}
    if torch.cuda.is_available():
        t = time.perf_counter()
        rows["cuda"] = run(data, "cuda", args.epochs, args.batch_size)
        print(f"  cuda: {time.perf_counter() - t:.1f}s in all; peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB")
    if args.cpu_epochs:
        rows["cpu"] = run(data, "cpu", args.cpu_epochs, args.batch_size)
    for device, log in rows.items():
        best = max(r["targets_per_s"] for r in log)
        print(f"{device}: {best:,.0f} targets/s (best epoch), last valid NDCG@10 {log[-1]['valid_ndcg@10']:.4f}")
    if "cuda" in rows and "cpu" in rows:
        ratio = max(r["targets_per_s"] for r in rows["cuda"]) / max(r["targets_per_s"] for r in rows["cpu"])
        print(f"cuda / cpu throughput: x{ratio:.1f}")
    if not torch.cuda.is_available():
        print("no CUDA device: only the CPU reference ran")


if __name__ == "__main__":
    main()
