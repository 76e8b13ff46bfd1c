"""Batch inference: the user and item embedding tables of a trained method as of a day.

``infer(cfg, method, day)`` runs three steps:

1. **load** the model trained for ``day`` (or a named version trained on an earlier day, never a
   later one) and every user's history as of ``day`` (the last ``max_len`` events of it);
2. **encode** every user with a sequence (``models.infer.encode_users``: batched by
   ``embeddings.batch_size``, users of similar history lengths together, under
   ``torch.inference_mode``, on CUDA when present) and read the item vectors;
3. **write** two partitions and the manifest ``_manifests/stage=infer/model=M/version=V/dt=D``
   in one run (visible together), keyed by the model version ``V``, beside the tables of other
   versions: a version becomes the live one only through ``seqrep publish`` (after its gate):

- ``embeddings/users/model=M/dt=D/version=V``: ``user_id``, ``user_idx``, ``vector`` (float32[dim]),
  ``dim``, ``method``, ``model_version``, ``asof``, ``n_events`` (the user's events up to D),
  ``fold_in`` (the user has events after the model's training day: the vector comes from the
  current model without retraining, from the user's fresh history);
- ``embeddings/items/model=M/dt=D/version=V``: ``domain``, ``item_id``, ``item_idx``, ``vector``, ``dim``,
  ``method``, ``model_version``, ``asof``, ``n_events`` (the item's events up to D), every item
  of the model's vocabulary.

A cross-domain pair run (``METHOD.PAIR``, ``pipelines/modeling/pair_runs.py``) is inferred
the same way from its pair's view: its users are the view's users (their events in the view as
of the day; a cold-start-in-target user is encoded from their source events) and its items the
ones its rankings cover (the target's).

Indexes come from the append-only vocabularies, so a user's vectors of two days are comparable.
Items first seen after the model's day have no row (the model has no vector for them) and are
left out of fresh histories; both counts are in the manifest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

import numpy as np

from models.data import SequenceData
from models.registry import MethodConfig
from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.errors import UsageError
from pipelines.core.runs import transaction
from pipelines.core.sqlfiles import duckdb_sql
from pipelines.core.warehouse import Warehouse
from pipelines.modeling.data import connect, load

Echo = Callable[[str], None]


class InferError(UsageError):
    """The method cannot be inferred as asked (a baseline, no such version, a version from the future)."""


@dataclass
class Trained:
    """A trained model and what inference needs to know of it."""

    mc: MethodConfig
    model: Any  # models.base.SequenceModel
    folder: Path
    day: date  # the last day of the data it was trained on
    name: str = ""  # the tables' model name: the method, or a pair run's METHOD.PAIR
    run: Any = None  # the pair run (pipelines.modeling.pair_runs.PairRun), or None
    #: The domains of the items it ranks (a pair run: the target's, a source-view run's source;
    #: None: every domain).
    domains: list[str] | None = None


@dataclass
class Vectors:
    users: np.ndarray  # [rows, dim]
    items: np.ndarray  # [n_items, dim]
    rows: np.ndarray  # positions in the data's users that have a vector
    fold_in: np.ndarray  # [users] bool
    compiled: bool


def infer(cfg: Config, method: str, day: date, *, sets: list[str] = (), version: str | None = None,
          echo: Echo = print) -> dict[str, Any]:
    """Write ``method``'s user and item embedding tables as of ``day`` (module docstring); returns
    the manifest."""
    from models.trainer import pick_device

    t0 = time.perf_counter()
    trained = load_model(cfg, method, day, sets, version)
    device = pick_device(trained.mc.train)
    trained.model.to(device)
    data, dropped_events, users = (load_histories(Warehouse(cfg.warehouse), day, trained) if trained.run is None
                                   else load_pair_histories(cfg, day, trained))
    vectors = encode(cfg, trained, data, users, device, echo)
    with transaction(Warehouse(cfg.warehouse), f"model={method}") as wh:  # both tables and the manifest together
        manifest = write_tables(wh, trained, day, data, users, vectors)
        manifest.update({"events_on_items_unknown_to_the_model": dropped_events, "device": str(device),
                         "seconds": round(time.perf_counter() - t0, 2)})
        wh.write_manifest("infer", wh.infer_key(method, day, trained.folder.name), manifest)
    echo(f"wrote {manifest['users']:,} user and {manifest['items']:,} item vectors (dim {manifest['dim']}) in "
         f"{manifest['seconds']:.1f}s: {Path(manifest['outputs']['users']).relative_to(wh.root)}, "
         f"{Path(manifest['outputs']['items']).relative_to(wh.root)}")
    return manifest


def load_model(cfg: Config, method: str, day: date, sets: list[str] = (), version: str | None = None) -> Trained:
    """The model of ``method`` for ``day``: the version trained with this configuration as of the
    day, or ``version`` (trained on or before the day)."""
    from models.checkpoint import read_json
    from models.registry import get_method
    from pipelines.modeling.pair_runs import parse_run, ranked_domains
    from pipelines.modeling.train import load_trained, load_version

    run = parse_run(cfg, method)
    base = run.method if run is not None else method
    if not get_method(base).learned:
        raise InferError(f"{base} is a baseline without embeddings; infer a learned method (`seqrep methods`)")
    mc, model, folder = load_trained(cfg, method, day, list(sets)) if version is None else \
        load_version(cfg, base, version)
    trained_day = date.fromisoformat(str(read_json(folder / "config.json")["day"]))
    if trained_day > day:
        raise InferError(f"{method} version {folder.name} was trained on data up to {trained_day}, after {day}: "
                         "embeddings as of a day never use a model that saw later data")
    return Trained(mc, model, folder, trained_day, method, run, ranked_domains(cfg, run) if run else None)


def load_histories(wh: Warehouse, day: date, trained: Trained) -> tuple[SequenceData, int, dict[str, np.ndarray]]:
    """Every user's history as of ``day`` without items unknown to the model (and how many events
    that left out), and the users' ids, event counts and last active days."""
    from models.infer import restrict_items
    from models.multitask import behavior_codes

    model = trained.model
    data = load(wh.root, day, trained.mc.train.protocol)
    if model.uses_event_codes:  # behaviors must be aligned with the events before any are left out
        behavior_codes(data)
    data, dropped = restrict_items(data, model.n_items)
    users = _user_rows(wh, day)
    if not np.array_equal(users["user_idx"], data.users):
        raise InferError(f"sequences as of {day} changed while reading them; rerun")
    return data, dropped, users


def load_pair_histories(cfg: Config, day: date, trained: Trained) -> tuple[SequenceData, int, dict[str, np.ndarray]]:
    """``load_histories`` of a pair run: its view's histories and users (module docstring)."""
    from models.infer import restrict_items
    from pipelines.modeling.cross_domain import load_pair_data
    from pipelines.modeling.data import pair_users
    from pipelines.modeling.pair_runs import find_pair

    run = trained.run
    data = load_pair_data(cfg, day, run.pair, run.view)
    data, dropped = restrict_items(data, trained.model.n_items)
    users = pair_users(cfg.warehouse, day, find_pair(cfg, run.pair), run.view, trained.model.n_items)
    if not np.array_equal(users["user_idx"], data.users):
        raise InferError(f"the pair {run.pair}'s sequences as of {day} changed while reading them; rerun")
    return data, dropped, users


def encode(cfg: Config, trained: Trained, data: SequenceData, users: dict[str, np.ndarray], device,
           echo: Echo) -> Vectors:
    """User vectors of every user with events the model knows, and the item vectors; a per-item
    score bias (BERT4Rec's) is published as one more coordinate (``SequenceModel.item_bias``)."""
    from tqdm import tqdm

    from models.infer import encode_users, published_vectors

    model, method = trained.model, trained.mc.method
    rows = np.flatnonzero(data.lengths > 0)
    # Fresh activity: events after the model's day, or a user the model has no row for.
    fold_in = np.asarray(users["dt"]).astype("datetime64[D]") > np.datetime64(trained.day, "D")
    if model.n_users:
        fold_in |= data.users >= model.n_users
    least = cfg.embeddings.compile_min_users
    compiled = least is not None and len(rows) >= least and model.compile_encode()
    echo(f"infer {method} {trained.folder.name} as of {data.day}: {len(rows):,} users "
         f"({int(fold_in[rows].sum()):,} folded in), {model.n_items:,} items, on {device}"
         + (", encoder under torch.compile" if compiled else ""))
    with tqdm(total=len(rows), unit="user", desc=f"encode {method}", disable=None, leave=False) as bar:
        user_vec = encode_users(model, data, rows, fold_in[rows], batch_size=cfg.embeddings.batch_size,
                                device=str(device), bf16=cfg.embeddings.bf16, progress=bar.update)
    user_vec, item_vec = published_vectors(model, user_vec)  # a score bias as one more coordinate
    return Vectors(user_vec, item_vec, rows, fold_in, bool(compiled))


def write_tables(wh: Warehouse, trained: Trained, day: date, data: SequenceData, users: dict[str, np.ndarray],
                 vec: Vectors) -> dict[str, Any]:
    """Write the user and item tables (module docstring); returns the manifest's core."""
    import pyarrow as pa

    method, version, n = trained.name or trained.mc.method, trained.folder.name, trained.model.n_items
    items = _item_rows(wh, day, n, trained.domains)
    if trained.run is None and (len(items["item_idx"]) != n or not np.array_equal(items["item_idx"], np.arange(1, n + 1))):
        raise InferError(f"vocab/items as of {day} does not hold items 1..{n} of the model")
    item_vec = vec.items[items["item_idx"] - 1]  # row i of the model's item vectors is item_idx i + 1
    rows, dim = vec.rows, vec.users.shape[1]

    def common(count: int) -> dict[str, Any]:
        const = lambda value, typ: pa.repeat(pa.scalar(value, typ), count)  # noqa: E731  (no list of a million values)
        return {"dim": const(dim, pa.int32()), "method": const(method, pa.string()),
                "model_version": const(version, pa.string()), "asof": const(day, pa.date32())}

    user_cols = {"user_id": pa.array(users["user_id"][rows], pa.string()),
                 "user_idx": pa.array(data.users[rows], pa.int32()), "vector": _vectors(vec.users),
                 **common(len(rows)), "n_events": pa.array(users["n_events"][rows], pa.int64()),
                 "fold_in": pa.array(vec.fold_in[rows], pa.bool_())}
    item_cols = {"domain": pa.array(items["domain"], pa.string()), "item_id": pa.array(items["item_id"], pa.string()),
                 "item_idx": pa.array(items["item_idx"], pa.int32()), "vector": _vectors(item_vec),
                 **common(len(item_vec)), "n_events": pa.array(items["n_events"], pa.int64())}
    outputs = {kind: str(_write_partition(wh, wh.embeddings(kind, method, day, version), cols))
               for kind, cols in (("users", user_cols), ("items", item_cols))}
    return {"stage": "infer", "run": wh.run.id if wh.run is not None else None,
            "dim": dim, "method": method, "model_version": version, "asof": day.isoformat(),
            "trained_day": trained.day.isoformat(), "users": len(rows), "users_fold_in": int(vec.fold_in[rows].sum()),
            "users_without_known_items": int((data.lengths == 0).sum()), "items": len(item_vec), "compiled": vec.compiled,
            "outputs": outputs}


def _user_rows(wh: Warehouse, day: date) -> dict[str, np.ndarray]:
    """user_idx, user_id, n_events and the day of the last activity of every user as of ``day``."""
    with connect(wh, {"sequences": layout.SEQUENCES}) as con:
        return con.sql(f"SELECT user_idx, user_id, n_events, dt FROM ({duckdb_sql('sequences_asof')}) ORDER BY user_idx",
                       params={"asof": day}).fetchnumpy()


def _item_rows(wh: Warehouse, day: date, n_items: int, domains: list[str] | None = None) -> dict[str, np.ndarray]:
    """domain, item_id and events up to ``day`` of items 1..n_items (of ``domains`` only, when given)."""
    with connect(wh, {"vocab_items": layout.VOCAB_ITEMS, "user_item": layout.USER_ITEM}) as con:
        return con.sql(
            f"SELECT v.item_idx, v.domain, v.item_id, coalesce(c.n, 0) AS n_events FROM vocab_items v "
            f"LEFT JOIN (SELECT item_idx, sum(count) AS n FROM ({duckdb_sql('user_item_asof')}) GROUP BY item_idx) c "
            "USING (item_idx) WHERE v.dt <= $asof AND v.item_idx <= $n "
            "AND ($domains IS NULL OR list_contains($domains, v.domain)) ORDER BY v.item_idx",
            params={"asof": day, "n": n_items, "domains": domains}).fetchnumpy()


def _vectors(vectors: np.ndarray):
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1])


def _write_partition(wh: Warehouse, target: Path, columns: dict[str, Any]) -> Path:
    """One Parquet file as the partition ``target``, replacing the old one in one swap."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    wh.write_folder(target, lambda staged: pq.write_table(pa.table(columns), staged / "part-0.parquet",
                                                          row_group_size=65536))
    return target
