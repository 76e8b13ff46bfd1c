"""Nearest-neighbour index (FAISS) over a method's item vectors as of a day.

``publish_index(cfg, method, day, version)`` reads ``embeddings/items/model=M/dt=D/version=V`` and
writes ``embeddings/index/model=M/dt=D/version=V/`` (``items.faiss`` + ``index.json``) in one swap. Search is by
inner product, the score every method ranks items with (``score(u, i) = <u, v_i>``), so one
index serves both "recommend for this user vector" and "items similar to this item".

- Up to ``embeddings.exact_max_items`` items: ``IndexFlatIP``, exact.
- Above: HNSW (``IndexHNSWFlat`` with ``METRIC_INNER_PRODUCT``), approximate. The textbook
  alternative, an L2 index over vectors made equal-norm by one extra coordinate
  (``[v, sqrt(M^2 - |v|^2)]``), was measured and dropped: with item norms spread like learned ones
  (log-normal), recall@10 fell to 0.09 on 20k synthetic items, against 0.9975 for HNSW on the inner
  product directly (same M=32, efConstruction=80, efSearch=128).

Index ids are the vocabulary's ``item_idx``; scores returned are inner products.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from pipelines.core.config import Config, EmbeddingsConfig
from pipelines.core.errors import WarehouseError
from pipelines.core.warehouse import Warehouse


@dataclass
class ItemIndex:
    """A FAISS index over item vectors, searched by inner product (see the module docstring)."""

    index: object  # faiss.Index (an IndexIDMap2 whose ids are item_idx)
    kind: str  # "flat" | "hnsw"
    dim: int = 0
    items: int = 0

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (inner products [Q, k], item_idx [Q, k]) of each query; id -1 where fewer exist."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def build_index(vectors: np.ndarray, ids: np.ndarray, cfg: EmbeddingsConfig) -> ItemIndex:
    """Exact for at most ``cfg.exact_max_items`` vectors, HNSW on the inner product above."""
    import faiss

    v = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = v.shape
    if n <= cfg.exact_max_items:
        base = faiss.IndexFlatIP(dim)
        kind = "flat"
    else:
        base = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = cfg.hnsw_ef_construction
        base.hnsw.efSearch = cfg.hnsw_ef_search
        kind = "hnsw"
    index = faiss.IndexIDMap2(base)
    index.add_with_ids(v, ids.astype(np.int64))
    return ItemIndex(index, kind, dim, n)


def publish_index(cfg: Config, method: str, day: date, version: str, wh: Warehouse | None = None) -> Path:
    """Build the item index of a version of ``method`` as of ``day`` from its item table; write it
    atomically (in the run of ``wh``, when given)."""
    import faiss
    import pyarrow.parquet as pq

    wh = wh or Warehouse(cfg.warehouse)
    table = wh.embeddings("items", method, day, version)
    if not table.is_dir():
        raise WarehouseError(f"no item embeddings of {method} as of {day} ({table}): run `seqrep infer` first")
    t0 = time.perf_counter()
    items = pq.read_table(table, columns=["item_idx", "vector"])
    vectors = items.column("vector").combine_chunks()
    dim = vectors.type.list_size
    v = vectors.values.to_numpy().reshape(-1, dim)
    index = build_index(v, items.column("item_idx").to_numpy(), cfg.embeddings)
    meta = {
        "method": method, "asof": day.isoformat(), "model_version": version, "kind": index.kind, "metric": "inner_product",
        "items": len(v), "dim": dim, "hnsw_m": cfg.embeddings.hnsw_m,
        "hnsw_ef_construction": cfg.embeddings.hnsw_ef_construction, "hnsw_ef_search": cfg.embeddings.hnsw_ef_search,
        "build_seconds": round(time.perf_counter() - t0, 3),
    }

    def fill(staged: Path) -> None:
        faiss.write_index(index.index, str(staged / "items.faiss"))
        (staged / "index.json").write_text(json.dumps(meta, indent=2))

    target = wh.index_folder(method, day, version)
    wh.write_folder(target, fill)
    return target


def load_index(wh: Warehouse, method: str, day: date, version: str, ef_search: int | None = None) -> ItemIndex:
    """The index of a version of ``method`` as of ``day`` (FAISS's own format, never a pickle)."""
    import faiss

    folder = wh.index_folder(method, day, version)
    if not (folder / "items.faiss").is_file():
        raise WarehouseError(f"no item index of {method} version {version} as of {day} ({folder}): "
                             f"run `seqrep publish --method {method} --date {day}` (it builds the index)")
    meta = json.loads((folder / "index.json").read_text())
    try:
        index = faiss.read_index(str(folder / "items.faiss"))
    except RuntimeError as exc:  # FAISS reports a damaged file as a RuntimeError with C++ context
        raise WarehouseError(f"item index {folder / 'items.faiss'} cannot be read ({str(exc).splitlines()[0]}); "
                             f"rebuild it: `seqrep publish --method {method} --date {day}`") from None
    if meta["kind"] == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = ef_search or meta["hnsw_ef_search"]
    return ItemIndex(index, meta["kind"], int(meta["dim"]), int(meta["items"]))
