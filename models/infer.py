"""Batch inference: the user and item embedding tables of a trained method as of a day.

``infer(cfg, method, day)`` loads the model trained for ``day`` (or a named version trained on an
earlier day), encodes every user with a sequence as of ``day`` from the last ``max_len`` events of
their whole history, and writes two partitions, each atomically (staged, then swapped in):

- ``embeddings/users/model=M/dt=D``: ``user_id``, ``user_idx``, ``vector`` (float32[dim]),
  ``dim``, ``method``, ``model_version``, ``asof``, ``n_events`` (the user's events up to D),
  ``fold_in`` (the user has events after the model's training day: the vector comes from the
  current model without retraining, from the user's fresh history);
- ``embeddings/items/model=M/dt=D``: ``domain``, ``item_id``, ``item_idx``, ``vector``, ``dim``,
  ``method``, ``model_version``, ``asof``, ``n_events`` (the item's events up to D), every item
  of the model's vocabulary.

Indexes come from the append-only vocabularies, so a user's vectors of two days are comparable.
Items first seen after the model's day have no row (the model has no vector for them) and are
left out of fresh histories; both counts are in the manifest (``_manifests/stage=infer``).
Encoding is batched (``embeddings.batch_size`` users per forward pass, users of similar history
lengths together), under ``torch.inference_mode``, on CUDA when present.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, Callable

import numpy as np

from models.data import SequenceData, create_views, load
from pipelines.config import Config
from pipelines.sqlfiles import duckdb_sql
from pipelines.warehouse import Warehouse

USER_TABLE = "embeddings/users"
ITEM_TABLE = "embeddings/items"


class InferError(ValueError):
    """The method cannot be inferred as asked (a baseline, no such version, a version from the future)."""


def load_version(cfg: Config, method: str, version: str):
    """The model stored as ``models/<method>/<version>`` with the configuration it was trained with."""
    from models.checkpoint import load_model, read_json
    from models.registry import MethodConfig, get_method
    from models.run import ModelNotFound, build

    get_method(method)
    folder = Warehouse(cfg.warehouse).table(f"models/{method}") / version
    if not (folder / "model.safetensors").is_file():
        have = sorted(p.name for p in folder.parent.glob("*") if (p / "model.safetensors").is_file())
        raise ModelNotFound(f"no trained {method} version {version!r} in {folder.parent}; "
                            f"versions: {', '.join(have) or 'none'}")
    meta = read_json(folder / "config.json")
    mc = MethodConfig(method=method, model=meta["model"], train=meta["train"])
    model = build(mc, int(meta["n_items"]), int(meta.get("user_vocab", 0)))
    load_model(model, folder)
    return mc, model, folder


def restrict_items(data: SequenceData, n_items: int) -> tuple[SequenceData, int]:
    """``data`` without events on items above ``n_items`` (unknown to a model trained earlier),
    and how many events were removed."""
    keep = data.items <= n_items
    dropped = int((~keep).sum())
    if dropped == 0:
        return data, 0
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    offsets = kept_before[data.offsets]
    codes = None if data.event_codes is None else data.event_codes[keep]
    return replace(data, n_items=n_items, items=data.items[keep], offsets=offsets,
                   train_len=np.diff(offsets), splits={}, event_codes=codes), dropped


def encode_users(model, data: SequenceData, rows: np.ndarray, fold_in: np.ndarray | None = None, *,
                 batch_size: int = 2048, device: str = "cpu", bf16: bool = False,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """User vectors [len(rows), dim] (float32) from each row's whole history in ``data``; rows
    flagged in ``fold_in`` go through ``model.fold_in`` (methods with per-user parameters).
    ``bf16``: under bfloat16 autocast (see ``EmbeddingsConfig.bf16``). A model whose encoder was
    compiled (``model.compile_encode``) falls back to eager, with a warning, where compiling fails
    (no C++ compiler, say)."""
    import torch

    fold_in = np.zeros(len(rows), dtype=bool) if fold_in is None else fold_in
    out = np.empty((len(rows), model.params.dim), dtype=np.float32)
    # Batches of similar history lengths: sequence encoders cut trailing padding (SASRec, GRU4Rec),
    # so a batch of short histories costs what its longest one needs, not max_len positions.
    order = np.argsort(np.minimum(data.lengths[rows], model.params.max_len), kind="stable")
    model.eval()
    with torch.inference_mode(), torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
        for lo in range(0, len(rows), batch_size):
            at = order[lo:lo + batch_size]
            r = rows[at]
            history, lengths = model.histories(data, r, data.lengths[r])
            h = torch.as_tensor(history, device=device)
            n = torch.as_tensor(lengths, device=device)
            users = torch.as_tensor(data.users[r], device=device)
            f = fold_in[at]
            for sel, fn in ((~f, model.encode), (f, model.fold_in)):
                if sel.any():
                    s = torch.as_tensor(sel, device=device)
                    out[at[sel]] = fn(h[s], n[s], users[s]).float().cpu().numpy()
            if progress is not None:
                progress(len(r))
    return out


def _user_rows(wh: Warehouse, day: date) -> dict[str, np.ndarray]:
    """user_idx, user_id, n_events and the day of the last activity of every user as of ``day``."""
    import duckdb

    con = duckdb.connect()
    try:
        create_views(con, wh, {"sequences": "sequences"})
        return con.sql(f"SELECT user_idx, user_id, n_events, dt FROM ({duckdb_sql('sequences_asof')}) ORDER BY user_idx",
                       params={"asof": day}).fetchnumpy()
    finally:
        con.close()


def _item_rows(wh: Warehouse, day: date, n_items: int) -> dict[str, np.ndarray]:
    """domain, item_id and events up to ``day`` of items 1..n_items."""
    import duckdb

    con = duckdb.connect()
    try:
        create_views(con, wh, {"vocab_items": "vocab/items", "user_item": "graphs/user_item"})
        return con.sql(
            f"SELECT v.item_idx, v.domain, v.item_id, coalesce(c.n, 0) AS n_events FROM vocab_items v "
            f"LEFT JOIN (SELECT item_idx, sum(count) AS n FROM ({duckdb_sql('user_item_asof')}) GROUP BY item_idx) c "
            "USING (item_idx) WHERE v.dt <= $asof AND v.item_idx <= $n ORDER BY v.item_idx",
            params={"asof": day, "n": n_items}).fetchnumpy()
    finally:
        con.close()


def _vectors(vectors: np.ndarray):
    import pyarrow as pa

    dim = vectors.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)


def _write_partition(wh: Warehouse, table: str, method: str, day: date, columns: dict[str, Any]) -> Path:
    """One Parquet file as ``table/model=M/dt=D``, replacing the old partition in one swap."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    staged = wh.staging_dir()
    staged.mkdir(parents=True)
    pq.write_table(pa.table(columns), staged / "part-0.parquet", row_group_size=65536)
    target = wh.table(f"{table}/model={method}") / f"dt={day.isoformat()}"
    wh.swap_in(staged, target)
    return target


def infer(cfg: Config, method: str, day: date, *, sets: list[str] = (), version: str | None = None,
          echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Write ``method``'s user and item embedding tables as of ``day`` (see the module docstring);
    returns the manifest."""
    import pyarrow as pa
    import torch

    from models.registry import get_method
    from models.run import load_trained
    from models.trainer import pick_device

    if not getattr(get_method(method), "learned", True):
        raise InferError(f"{method} is a baseline without embeddings; infer a learned method (`seqrep methods`)")
    wh = Warehouse(cfg.warehouse)
    t0 = time.perf_counter()
    if version is None:
        mc, model, folder = load_trained(cfg, method, day, list(sets))
    else:
        mc, model, folder = load_version(cfg, method, version)
    from models.checkpoint import read_json

    trained_day = date.fromisoformat(str(read_json(folder / "config.json")["day"]))
    if trained_day > day:
        raise InferError(f"{method} version {folder.name} was trained on data up to {trained_day}, after {day}: "
                         "embeddings as of a day never use a model that saw later data")
    device = pick_device(mc.train)
    model.to(device)
    data = load(wh.root, day, mc.train.protocol)
    if model.uses_event_codes:  # behaviors must be aligned with the events before any are left out
        from models.multitask import behavior_codes

        behavior_codes(data)
    data, dropped_events = restrict_items(data, model.n_items)
    users = _user_rows(wh, day)
    if not np.array_equal(users["user_idx"], data.users):
        raise InferError(f"sequences as of {day} changed while reading them; rerun")
    has_events = data.lengths > 0
    rows = np.flatnonzero(has_events)
    # Fresh activity: events after the model's day, or a user the model has no row for.
    fold_in = np.asarray(users["dt"]).astype("datetime64[D]") > np.datetime64(trained_day, "D")
    if model.n_users:
        fold_in |= data.users >= model.n_users
    least = cfg.embeddings.compile_min_users
    compiled = least is not None and len(rows) >= least and model.compile_encode()
    echo(f"infer {method} {folder.name} as of {day}: {len(rows):,} users ({int(fold_in[rows].sum()):,} folded in), "
         f"{model.n_items:,} items, on {device}" + (", encoder under torch.compile" if compiled else ""))
    from tqdm import tqdm

    with tqdm(total=len(rows), unit="user", desc=f"encode {method}", disable=None, leave=False) as bar:
        user_vec = encode_users(model, data, rows, fold_in[rows], batch_size=cfg.embeddings.batch_size,
                                device=str(device), bf16=cfg.embeddings.bf16, progress=bar.update)
    with torch.inference_mode():
        item_vec = model.item_embeddings()[1:].float().cpu().numpy()
        bias = model.item_bias()
    if bias is not None:  # the score is <u, v> + b_i: publish u' = [u, 1], v' = [v, b] (see SequenceModel.item_bias)
        user_vec = np.hstack([user_vec, np.ones((len(user_vec), 1), np.float32)])
        item_vec = np.hstack([item_vec, bias[1:model.n_items + 1].float().cpu().numpy()[:, None]])
    items = _item_rows(wh, day, model.n_items)
    if len(items["item_idx"]) != model.n_items or not np.array_equal(items["item_idx"], np.arange(1, model.n_items + 1)):
        raise InferError(f"vocab/items as of {day} does not hold items 1..{model.n_items} of the model")
    dim = user_vec.shape[1]
    common = {"dim": dim, "method": method, "model_version": folder.name, "asof": day}

    def const(value, n, typ):
        return pa.repeat(pa.scalar(value, typ), n)  # no Python list of a million values

    user_cols = {
        "user_id": pa.array(users["user_id"][rows], pa.string()),
        "user_idx": pa.array(data.users[rows], pa.int32()),
        "vector": _vectors(user_vec),
        "dim": const(dim, len(rows), pa.int32()),
        "method": const(method, len(rows), pa.string()),
        "model_version": const(folder.name, len(rows), pa.string()),
        "asof": const(day, len(rows), pa.date32()),
        "n_events": pa.array(users["n_events"][rows], pa.int64()),
        "fold_in": pa.array(fold_in[rows], pa.bool_()),
    }
    n = model.n_items
    item_cols = {
        "domain": pa.array(items["domain"], pa.string()),
        "item_id": pa.array(items["item_id"], pa.string()),
        "item_idx": pa.array(items["item_idx"], pa.int32()),
        "vector": _vectors(item_vec),
        "dim": const(dim, n, pa.int32()),
        "method": const(method, n, pa.string()),
        "model_version": const(folder.name, n, pa.string()),
        "asof": const(day, n, pa.date32()),
        "n_events": pa.array(items["n_events"], pa.int64()),
    }
    user_path = _write_partition(wh, USER_TABLE, method, day, user_cols)
    item_path = _write_partition(wh, ITEM_TABLE, method, day, item_cols)
    manifest = {
        "stage": "infer", **common, "asof": day.isoformat(), "trained_day": trained_day.isoformat(),
        "users": len(rows), "users_fold_in": int(fold_in[rows].sum()),
        "users_without_known_items": int((~has_events).sum()), "items": n,
        "events_on_items_unknown_to_the_model": dropped_events, "device": str(device), "compiled": bool(compiled),
        "seconds": round(time.perf_counter() - t0, 2), "outputs": {"users": str(user_path), "items": str(item_path)},
    }
    wh.write_manifest("infer", f"model={method}/dt={day.isoformat()}", manifest)
    echo(f"wrote {len(rows):,} user and {n:,} item vectors (dim {dim}) in {manifest['seconds']:.1f}s: "
         f"{user_path.relative_to(wh.root)}, {item_path.relative_to(wh.root)}")
    return manifest
