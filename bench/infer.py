"""Inference benchmark: users/s of batch encoding against this machine's FLOP limit, and item-index latency.

Part 1, user encoding. The ml-100k users' histories (the last ``max_len`` events of each, from the
warehouse) replicated to ``--users`` users, encoded by ``models.infer.encode_users`` (the code
``seqrep infer`` runs: batches of ``embeddings.batch_size``, inference mode) with SASRec and
GRU4Rec at their default sizes (untrained weights: speed does not depend on them). The
reference is this machine's fp32 matmul rate, measured in the same process (torch, square
matrices, all cores), divided by the FLOPs of the model's *full* forward per user:

- SASRec, per layer and position: Q/K/V/output projections ``8 d^2``, feed-forward
  ``4 d f``, attention ``4 L d`` (scores and weighted sum over L keys), so
  ``n_layers * L * (8 d^2 + 4 d f + 4 L d)`` (about 11.1 MFLOP at d 64, f 256, L 50, 2 layers);
- GRU4Rec: ``L * 6 (d h + h^2)`` for the gates plus ``2 h d`` for the output projection.

``limit = matmul FLOP/s / full-forward FLOPs per user``, with the matmul rate of the same precision
(``--precisions fp32,bf16``: bf16 is autocast, on AMX/AVX-512 BF16 CPUs much faster for matmuls).
This machine is shared and its speed drifts, so the matmul rate is measured again right before
each timed chunk, and each chunk's share of the limit uses its own reference; the table gives
medians over the chunks. Our encoders compute less than the full forward (SASRec's last layer
only for the last position, GRU4Rec's projection only there, and both only over the longest
history of a batch of similar lengths), so the ratio can exceed 100%: the "computed" column
gives the FLOPs our path performs, averaged over the users' history lengths.

Part 2, item index (``pipelines/index.py``): ``--items`` synthetic item vectors (Gaussian
directions, log-normal norms, dim 64), the exact inner-product index and the HNSW index;
``--queries`` single-vector queries one at a time (like a service): latency p50/p99 and
recall@10 of HNSW against exact search.

``--record NAME`` also writes the raw results, one file per part that ran (``bench/results.py``):
``bench/results/NAME-users.json`` (every row's FLOPs, per-chunk matmul rates and users/s, seconds,
warm-up) and ``bench/results/NAME-index.json`` (every index's build seconds, per-query latencies and
recall); ``table`` renders either part's table again from its figures (``figures["part"]``, for
``bench/check.py``), and the rows printed while the benchmark runs are the same functions' rows.

Run (after ``seqrep ingest --source movielens`` and ``seqrep etl --all`` into wh-ml):
    python bench/infer.py --warehouse wh-ml --users 1000000 --items 1000000 --chunks 5
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def matmul_flops(dtype: str = "fp32", repeats: int = 7, n: int = 2048) -> float:
    """Median GFLOP/s of an n x n x n matmul in ``dtype`` (all of torch's threads)."""
    import torch

    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    a @ b
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        rates.append(2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def model_flops(method: str, p, L: int | None = None) -> tuple[float, float]:
    """(full forward, what our encode computes) FLOPs per user over ``L`` positions (default
    ``max_len``; see the docstring)."""
    d, L = p.dim, p.max_len if L is None else L
    if method == "sasrec":
        f = d * p.ff_mult
        per_position = 8 * d * d + 4 * d * f + 4 * L * d
        full = p.num_layers * L * per_position
        # Last layer: K and V projections for every position, the rest for the one query.
        needed = (p.num_layers - 1) * L * per_position + L * 4 * d * d + (4 * d * d + 4 * d * f + 4 * L * d)
        return full, needed
    h = p.hidden_size
    gates = L * 6 * (d * h + h * h) * p.num_layers
    return gates + L * 2 * h * d, gates + 2 * h * d


USERS_HEAD = ("| method | encoder | precision | MFLOP/user full | MFLOP/user computed | limit users/s | "
              "users/s (median) | chunks | all users/s | of limit (median) | chunks of limit | GFLOP/s done | "
              "warm-up s |\n"
              "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: |")
INDEX_HEAD = ("| index | build s | p50 ms | p99 ms | mean ms | recall@10 vs exact |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: |")


def users_row(r: dict) -> str:
    """One row of the user-encoding table from its figures (``encode_rates``): each chunk's limit is
    its matmul rate over the full forward's FLOPs; medians over the chunks."""
    limits = [g * 1e9 / r["flops_full"] for g in r["chunk_matmul_gflops"]]
    rates = r["chunk_users_per_s"]
    shares = [x / lim for x, lim in zip(rates, limits)]
    rate = statistics.median(rates)
    return (f"| {r['method']} | {r['encoder']} | {r['precision']} | {r['flops_full'] / 1e6:.2f} | "
            f"{r['flops_computed'] / 1e6:.2f} | {statistics.median(limits):,.0f} | {rate:,.0f} | "
            f"{', '.join(f'{x:,.0f}' for x in rates)} | {r['users'] / r['seconds']:,.0f} | "
            f"{statistics.median(shares):.0%} | {', '.join(f'{x:.0%}' for x in shares)} | "
            f"{rate * r['flops_computed'] / 1e9:.0f} | {r['warmup_s']:.1f} |")


def index_row(r: dict) -> str:
    """One row of the item-index table from its figures (``bench_index``): latency percentiles over the queries."""
    lat = r["latency_ms"]
    return (f"| {r['index']} | {r['build_s']:.1f} | {np.percentile(lat, 50):.3f} | {np.percentile(lat, 99):.3f} | "
            f"{np.mean(lat):.3f} | {r['recall@10']:.4f} |")


def table(figures: dict) -> str:
    """The markdown table of one part, ``figures["part"]``: "users" (``bench_users``) or "index" (``bench_index``)."""
    head, row = (USERS_HEAD, users_row) if figures["part"] == "users" else (INDEX_HEAD, index_row)
    return "\n".join([head, *map(row, figures["rows"])])


def encode_rates(model, data, rows: np.ndarray, args: argparse.Namespace, precision: str, device) -> dict:
    """Time ``encode_users`` over ``rows`` in ``args.chunks`` chunks, the matmul rate measured before each:
    the figures of one row of the user-encoding table (with the warm-up, compiling included)."""
    from models.infer import encode_users

    chunk = -(-args.users // args.chunks)
    bf16 = precision == "bf16"
    t = time.perf_counter()  # the compiled encoder compiles here
    encode_users(model, data, rows[:4 * args.batch], batch_size=args.batch, device=str(device), bf16=bf16)
    warm = time.perf_counter() - t
    rates, gflops, spent = [], [], 0.0
    for lo in range(0, args.users, chunk):
        gflops.append(matmul_flops(precision, repeats=3))
        t = time.perf_counter()
        out = encode_users(model, data, rows[lo:lo + chunk], batch_size=args.batch, device=str(device), bf16=bf16)
        spent += time.perf_counter() - t
        rates.append(len(out) / (time.perf_counter() - t))
    assert np.isfinite(out).all()
    return {"chunk_matmul_gflops": gflops, "chunk_users_per_s": rates, "users": args.users, "seconds": spent,
            "warmup_s": warm}


def bench_users(args: argparse.Namespace) -> dict:
    """Part 1; prints its table row by row and returns its figures (``table``)."""
    import torch

    from pipelines.modeling.data import load
    from models.registry import method_config
    from models.registry import build
    from pipelines.modeling.train import resolve_day
    from models.trainer import pick_device
    from pipelines.core.config import load_config

    cfg = load_config(None, warehouse=args.warehouse)
    data = load(cfg.warehouse, resolve_day(cfg, None), "loo")
    rows = np.arange(args.users) % len(data.users)
    chunk = -(-args.users // args.chunks)
    print(f"\n## user encoding: {len(data.users):,} ml-100k users replicated to {args.users:,}, "
          f"batch {args.batch}, torch threads {torch.get_num_threads()}; median of the {args.chunks} chunks "
          f"of {chunk:,} users, each against the matmul rate measured just before it")
    print(USERS_HEAD)
    figures = {"part": "users", "base_users": len(data.users), "users": args.users, "chunks": args.chunks,
               "batch": args.batch, "torch_threads": torch.get_num_threads(), "rows": []}
    for method, compiled, precision in itertools.product(args.methods.split(","), args.encoders.split(","),
                                                         args.precisions.split(",")):
        mc = method_config(method)
        device = pick_device(mc.train)
        model = build(mc, data.n_items, data.user_vocab).to(device).eval()
        if compiled == "compiled" and not model.compile_encode():
            continue  # no compiled path: the eager row is what seqrep infer runs
        p = mc.params()
        lengths = np.minimum(data.lengths[rows], p.max_len)
        needed = float(np.mean([model_flops(method, p, int(L))[1] for L in lengths[:len(data.users)]]))
        row = {"method": method, "encoder": compiled, "precision": precision,
               "flops_full": model_flops(method, p)[0], "flops_computed": needed,
               **encode_rates(model, data, rows, args, precision, device)}
        figures["rows"].append(row)
        print(users_row(row), flush=True)
    return figures


def bench_index(args: argparse.Namespace) -> dict:
    """Part 2; prints its table row by row and returns its figures (``table``)."""
    import faiss

    from pipelines.core.config import EmbeddingsConfig
    from pipelines.serving.index import build_index

    rng = np.random.default_rng(0)
    n, dim = args.items, 64
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v *= (np.exp(rng.normal(0, 0.5, size=(n, 1))) / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(1, n + 1)
    queries = rng.normal(size=(args.queries, dim)).astype(np.float32)
    cfg = EmbeddingsConfig()
    print(f"\n## item index: {n:,} synthetic items, dim {dim}, {args.queries:,} single queries, top 10, "
          f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    print(INDEX_HEAD)
    figures = {"part": "index", "items": n, "dim": dim, "queries": args.queries, "faiss": faiss.__version__,
               "threads": faiss.omp_get_max_threads(), "rows": []}
    truth = None
    hnsw = f"HNSW M={cfg.hnsw_m} efC={cfg.hnsw_ef_construction} efS={cfg.hnsw_ef_search}"
    for kind, exact_max in (("exact (IndexFlatIP)", n), (hnsw, 1)):
        t = time.perf_counter()
        index = build_index(v, ids, cfg.model_copy(update={"exact_max_items": exact_max}))
        build = time.perf_counter() - t
        index.search(queries[:10], 10)
        lat, found = [], []
        for q in queries:
            t = time.perf_counter()
            _, got = index.search(q[None, :], 10)
            lat.append((time.perf_counter() - t) * 1e3)
            found.append(got[0])
        found = np.array(found)
        if truth is None:
            truth = found
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
        figures["rows"].append({"index": kind, "build_s": build, "latency_ms": lat, "recall@10": recall})
        print(index_row(figures["rows"][-1]), flush=True)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", help="ml-100k warehouse (part 1; omit with --users 0)")
    ap.add_argument("--methods", default="sasrec,gru4rec")
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--chunks", type=int, default=5, help="the users are encoded in this many timed chunks")
    ap.add_argument("--batch", type=int, default=256, help="users per forward pass (embeddings.batch_size)")
    ap.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16 (autocast)")
    ap.add_argument("--encoders", default="eager,compiled",
                    help="eager and/or compiled (torch.compile, methods with a compiled path; what seqrep infer "
                         "runs from embeddings.compile_min_users users)")
    ap.add_argument("--items", type=int, default=1_000_000, help="synthetic items of part 2 (0: skip)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--record", metavar="NAME",
                    help="write the raw results to bench/results/NAME-users.json and NAME-index.json")
    args = ap.parse_args()
    gflops = {p: matmul_flops(p) for p in args.precisions.split(",")}
    print("matmul, median of 7, 2048^3: " + ", ".join(f"{p} {g:.1f} GFLOP/s" for p, g in gflops.items()))
    parts = []
    if args.users:
        if not args.warehouse:
            raise SystemExit("--warehouse is needed for the user-encoding part (or --users 0)")
        parts.append(bench_users(args))
    if args.items:
        parts.append(bench_index(args))
    if args.record:
        from results import record  # bench/results.py (the script's folder is on the path)

        for figures in parts:
            record(f"{args.record}-{figures['part']}", {**figures, "matmul_gflops": gflops}, table(figures))


if __name__ == "__main__":
    main()
