"""The live tables: what ``seqrep stream`` (``pipelines/streaming/stream.py``) writes between nights.

Per method ``M`` and micro-batch ``N``, written together in one run (lock ``model=M``):

- ``live/events/model=M/batch=N``: the batch's clean events (``event_id``, ``user_id``,
  ``item_id``, ``event_type``, ``ts``, ``domain``, ``value``, ``dt``, ``item_idx``: null for an item
  the model has no vector for);
- ``live/quarantine/model=M/batch=N``: its rows that failed a rule, with ``reason`` and ``raw``;
- ``embeddings/users_live/model=M/batch=N``: the fresh vector of every user with an event in the
  batch (``user_id``, ``user_idx``: null for a user the warehouse has not seen, ``vector``,
  ``dim``, ``model_version``, ``base_dt``: the published day whose histories it extends,
  ``event_time``: the user's newest live event, ``n_live``: the user's live events used);
- ``_manifests/stage=stream/model=M/batch=N.json``: rows in / out / quarantined by reason, files.

The running stream rewrites ``live/heartbeat/model=M.json`` every trigger; ``check_heartbeat`` is
what the nightly DAG runs on it. ``clear_absorbed`` removes the batches a night has absorbed: the
landing folder receives the same events the nightly ingests, so once day ``D`` is published the
live events of days up to ``D`` are in its sequences.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pipelines.core import locks
from pipelines.core import warehouse as layout
from pipelines.core.errors import WarehouseError
from pipelines.core.warehouse import Warehouse

TABLES = (layout.LIVE_EVENTS, layout.LIVE_QUARANTINE, layout.LIVE_USER_EMBEDDINGS)


class StreamStopped(WarehouseError):
    """A stream's heartbeat is missing or too old."""


def batch_folder(wh: Warehouse, table: str, method: str, batch: int) -> Path:
    return wh.table(f"{table}/model={method}/batch={int(batch)}")


def batches(wh: Warehouse, table: str, method: str) -> list[int]:
    """Committed batch numbers of a live table, in order."""
    base = wh.table(f"{table}/model={method}")
    return sorted(int(p.name[6:]) for p in base.glob("batch=*") if p.is_dir()) if base.is_dir() else []


def read_events(wh: Warehouse, method: str, columns: list[str]):
    """Every committed live event of ``method`` (with ``batch``), as a pandas frame."""
    import pandas as pd
    import pyarrow.parquet as pq

    frames = [pq.read_table(batch_folder(wh, layout.LIVE_EVENTS, method, n), columns=columns).to_pandas().assign(batch=n)
              for n in batches(wh, layout.LIVE_EVENTS, method)]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in [*columns, "batch"]})
    if "ts" in out:
        out["ts"] = pd.to_datetime(out["ts"], utc=True)
    return out


def day_end(day: date) -> datetime:
    """The first instant after ``day`` (UTC): live events from then on are newer than its tables."""
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)


def clear_absorbed(wh: Warehouse, method: str, day: date) -> int:
    """Remove the live batches of ``method`` whose every event is of ``day`` or before (published
    now, so absorbed); returns how many. A batch with a later event stays until a later night."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    gone = 0
    for n in batches(wh, layout.LIVE_EVENTS, method):
        ts = pq.read_table(batch_folder(wh, layout.LIVE_EVENTS, method, n), columns=["ts"]).column("ts")
        newest = pc.max(ts).as_py() if len(ts) else None
        if newest is not None and newest >= day_end(day):
            continue
        aside = wh.staging_dir()
        aside.mkdir(parents=True)
        with locks.reading(wh.root, exclusive=True):  # no reader sees a batch half removed
            for k, table in enumerate(TABLES):
                folder = batch_folder(wh, table, method, n)
                if folder.exists():
                    os.rename(folder, aside / str(k))
            manifest = wh.manifest_path("stream", f"model={method}/batch={n}")
            if manifest.exists():
                os.rename(manifest, aside / "manifest.json")
        shutil.rmtree(aside, ignore_errors=True)
        gone += 1
    return gone


def heartbeat_path(wh: Warehouse, method: str) -> Path:
    return wh.table(f"{layout.LIVE_HEARTBEAT}/model={method}.json")


def write_heartbeat(wh: Warehouse, method: str, beat: dict[str, Any]) -> None:
    wh.write_json(heartbeat_path(wh, method), {**beat, "at": datetime.now(timezone.utc).isoformat(), "unix": time.time()})


def check_heartbeat(wh: Warehouse, method: str, max_age_s: float) -> dict[str, Any]:
    """The stream's last heartbeat; ``StreamStopped`` when there is none or it is older than ``max_age_s``."""
    path = heartbeat_path(wh, method)
    if not path.is_file():
        raise StreamStopped(f"no heartbeat of the {method} stream ({path}): start it with "
                            f"`seqrep stream --method {method}` (README: \"Real time\")")
    beat = json.loads(path.read_text())
    age = time.time() - float(beat["unix"])
    if beat.get("state") == "stopped":
        raise StreamStopped(f"the {method} stream stopped at {beat.get('at')} (pid {beat.get('pid')} on "
                            f"{beat.get('host')}, last batch {beat.get('last_batch')}): restart it")
    if age > max_age_s:
        raise StreamStopped(f"the {method} stream's last heartbeat is {age:,.0f}s old (stream.heartbeat_max_age_s = "
                            f"{max_age_s:g}): pid {beat.get('pid')} on {beat.get('host')} stopped at {beat.get('at')}; "
                            f"its last batch was {beat.get('last_batch')}")
    return {**beat, "age_s": round(age, 1)}
