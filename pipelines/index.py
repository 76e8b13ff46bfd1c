"""Nearest-neighbour index (FAISS) over a method's item vectors as of a day.

``publish_index(cfg, method, day)`` reads ``embeddings/items/model=M/dt=D`` and writes
``embeddings/index/model=M/dt=D/`` (``items.faiss`` + ``index.json``) in one swap. Search is by
inner product, the score every method ranks items with (``score(u, i) = <u, v_i>``), so one
index serves both "recommend for this user vector" and "items similar to this item".

- Up to ``embeddings.exact_max_items`` items: ``IndexFlatIP``, exact.
- Above: HNSW (``IndexHNSWFlat``) over the vectors made L2-searchable by one extra coordinate,
  ``v' = [v, sqrt(M^2 - |v|^2)]`` with ``M = max |v|`` and queries ``q' = [q, 0]``, so that
  ``|q' - v'|^2 = |q|^2 + M^2 - 2<q, v>``: the nearest in L2 is the largest inner product
  (Bachrach et al., "Speeding up the Xbox recommender system using a Euclidean transformation
  for inner-product spaces", RecSys 2014). HNSW's graph is built for a metric; inner product is not one.

Index ids are the vocabulary's ``item_idx``; scores returned are inner products either way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from pipelines.config import Config, EmbeddingsConfig
from pipelines.warehouse import Warehouse, WarehouseError

INDEX_TABLE = "embeddings/index"


@dataclass
class ItemIndex:
    """A FAISS index over item vectors, searched by inner product (see the module docstring)."""

    index: object  # faiss.Index (an IndexIDMap2 whose ids are item_idx)
    kind: str  # "flat" | "hnsw"
    max_norm: float  # M of the L2 transform (hnsw)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (inner products [Q, k], item_idx [Q, k]) of each query; id -1 where fewer exist."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self.kind == "flat":
            return self.index.search(q, k)
        extended = np.hstack([q, np.zeros((len(q), 1), np.float32)])
        dist, ids = self.index.search(extended, k)
        # |q' - v'|^2 = |q|^2 + M^2 - 2 <q, v>
        scores = ((q * q).sum(1, keepdims=True) + self.max_norm ** 2 - dist) / 2
        return scores.astype(np.float32), ids


def build_index(vectors: np.ndarray, ids: np.ndarray, cfg: EmbeddingsConfig) -> ItemIndex:
    """Exact for at most ``cfg.exact_max_items`` vectors, HNSW (L2 over the transform) above."""
    import faiss

    v = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = v.shape
    if n <= cfg.exact_max_items:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        index.add_with_ids(v, ids.astype(np.int64))
        return ItemIndex(index, "flat", 0.0)
    norms = np.linalg.norm(v, axis=1)
    max_norm = float(norms.max())
    extra = np.sqrt(np.maximum(max_norm ** 2 - norms ** 2, 0.0)).astype(np.float32)[:, None]
    hnsw = faiss.IndexHNSWFlat(dim + 1, cfg.hnsw_m)
    hnsw.hnsw.efConstruction = cfg.hnsw_ef_construction
    hnsw.hnsw.efSearch = cfg.hnsw_ef_search
    index = faiss.IndexIDMap2(hnsw)
    index.add_with_ids(np.hstack([v, extra]), ids.astype(np.int64))
    return ItemIndex(index, "hnsw", max_norm)


def index_folder(wh: Warehouse, method: str, day: date) -> Path:
    return wh.table(f"{INDEX_TABLE}/model={method}") / f"dt={day.isoformat()}"


def publish_index(cfg: Config, method: str, day: date) -> Path:
    """Build the item index of ``method`` as of ``day`` from its item table; write it atomically."""
    import faiss
    import pyarrow.parquet as pq

    wh = Warehouse(cfg.warehouse)
    table = wh.table(f"embeddings/items/model={method}") / f"dt={day.isoformat()}"
    if not table.is_dir():
        raise WarehouseError(f"no item embeddings of {method} as of {day} ({table}): run `seqrep infer` first")
    t0 = time.perf_counter()
    items = pq.read_table(table, columns=["item_idx", "vector"])
    vectors = items.column("vector").combine_chunks()
    dim = vectors.type.list_size
    v = vectors.values.to_numpy().reshape(-1, dim)
    index = build_index(v, items.column("item_idx").to_numpy(), cfg.embeddings)
    staged = wh.staging_dir()
    staged.mkdir(parents=True)
    faiss.write_index(index.index, str(staged / "items.faiss"))
    (staged / "index.json").write_text(json.dumps({
        "method": method, "asof": day.isoformat(), "kind": index.kind, "metric": "inner_product",
        "items": len(v), "dim": dim, "max_norm": index.max_norm, "hnsw_m": cfg.embeddings.hnsw_m,
        "hnsw_ef_construction": cfg.embeddings.hnsw_ef_construction, "hnsw_ef_search": cfg.embeddings.hnsw_ef_search,
        "build_seconds": round(time.perf_counter() - t0, 3),
    }, indent=2))
    target = index_folder(wh, method, day)
    wh.swap_in(staged, target)
    return target


def load_index(wh: Warehouse, method: str, day: date, ef_search: int | None = None) -> ItemIndex:
    """The published index of ``method`` as of ``day`` (FAISS's own format, never a pickle)."""
    import faiss

    folder = index_folder(wh, method, day)
    if not (folder / "items.faiss").is_file():
        raise WarehouseError(f"no item index of {method} as of {day} ({folder}): run `seqrep infer --method {method} "
                             f"--date {day}` (it publishes the index)")
    meta = json.loads((folder / "index.json").read_text())
    index = faiss.read_index(str(folder / "items.faiss"))
    if meta["kind"] == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = ef_search or meta["hnsw_ef_search"]
    return ItemIndex(index, meta["kind"], float(meta["max_norm"]))
