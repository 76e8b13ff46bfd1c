"""``seqrep stream``: fresh events folded into live user vectors, micro-batch by micro-batch.

A Spark Structured Streaming query over the landing folder (``stream.landing``: files in the log's
own Parquet layout, mapped by ``ingest.columns`` exactly as the ``parquet`` adapter maps them).
Each micro-batch N (``foreachBatch``):

1. maps the rows to events (``adapters.parquet.map_events``), pseudonymizes them in a
   pseudonymous warehouse and leaves out erased users' (as ``seqrep ingest`` does), and gives a row
   without an id its content hash (``ingest.event_id_column``);
2. labels them with the batch clean's rules (``etl.clean.label``: shared code), each event on
   its own day (a stream has no partition day, so the day-window rules never fire there); then,
   on the rows that passed, the stream's own: ``duplicate`` also against the events of earlier
   micro-batches, ``late_arrival`` for an event of the published day or before (that night's
   tables have it), ``ts_future`` for one more than ``stream.max_clock_skew_s`` ahead of the clock.
   Rows in (per file, counted from the rows that come back) = clean + quarantined + erased;
3. for every user with a clean event: the history of the last published day (its ``sequences``
   row, as ``seqrep infer`` reads it) followed by all the user's live events after that day, in
   (ts, event_id) order, encoded by the published model (``serving/session.py``, fold-in, the
   code ``infer`` runs); events on items the model has never seen are left out (and counted), a
   user the warehouse has never seen is encoded from the live events alone;
4. writes the batch's events, quarantine, vectors and manifest in one run (``serving/live.py``).

Exactly once: Spark's checkpoint (``live/checkpoint/model=M``) logs the files of batch N before N
runs and commits N after ``foreachBatch`` returns. A process killed in between reruns N with the
same files on restart, and step 4 replaces batch N's folders whole: every landed event is counted
once. The earlier batches' events (step 2's duplicates, step 3's histories) are read back from
the live tables at start and kept in memory.

A newer publish (the nightly's) is picked up at the next batch: histories then start from its
day, and the nightly clears the live batches it absorbed (``live.clear_absorbed``).
"""

from __future__ import annotations

import bisect
import json
import os
import signal
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote, urlparse

import numpy as np

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.errors import ConfigError, WarehouseError
from pipelines.core.runs import reading, transaction
from pipelines.core.warehouse import Warehouse
from pipelines.serving import live
from pipelines.serving.session import SessionEncoder

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

Echo = Callable[[str], None]
#: Columns of ``live/events`` (and, with ``reason``, ``parse_error``, ``raw``, ``source_file``, of the quarantine).
EVENT_COLUMNS = ["event_id", "user_id", "item_id", "event_type", "ts", "domain", "value", "session_hint", "dt"]
STATE_COLUMNS = ["event_id", "user_id", "item_idx", "ts"]


class LiveState:
    """The live events of the earlier micro-batches, as the next batch needs them: the batch that
    took each event id (step 2's duplicates) and each user's events in (ts, event_id) order (step
    3's histories). Held in dicts so that a batch costs in proportion to its own rows, not to
    everything streamed so far. Times are nanoseconds since the epoch (UTC)."""

    def __init__(self, frame) -> None:
        """``frame``: ``live.read_events`` of ``STATE_COLUMNS`` (and ``batch``)."""
        self.batch_of: dict[str, int] = {}
        self.batches: set[int] = set()
        self.by_user: dict[str, list[tuple[int, str, int, int]]] = {}  # (ts, event_id, item_idx, batch)
        # An event on an item the model has never seen is stored with a null index; here it is 0.
        self.add(frame.assign(ts=_ns(frame["ts"]), item_idx=frame["item_idx"].fillna(0).astype(np.int64)), batch=None)

    def add(self, rows, batch: int | None) -> None:
        """Take ``rows`` (``ts`` in ns) of ``batch`` (None: each row's own ``batch`` column)."""
        batches = rows["batch"].tolist() if batch is None else [batch] * len(rows)
        self.batches.update(batches)
        touched = set()
        for ts, eid, user, item, n in zip(rows["ts"].tolist(), rows["event_id"].tolist(), rows["user_id"].tolist(),
                                          rows["item_idx"].tolist(), batches):
            self.batch_of[eid] = n
            self.by_user.setdefault(user, []).append((ts, eid, int(item), n))
            touched.add(user)
        for user in touched:
            self.by_user[user].sort()

    def drop(self, batch: int) -> None:
        """Forget ``batch`` (a restart reruns the last batch, and the rerun replaces it)."""
        if batch not in self.batches:
            return
        self.batches.discard(batch)
        self.batch_of = {e: n for e, n in self.batch_of.items() if n != batch}
        self.by_user = {u: kept for u, evs in self.by_user.items() if (kept := [e for e in evs if e[3] != batch])}

    def prune(self, before_ns: int) -> None:
        """Forget the events before ``before_ns``: a newer publish holds them (one sent again is
        then ``late_arrival``, not ``duplicate``: quarantined either way)."""
        self.by_user = {u: kept for u, evs in self.by_user.items() if (kept := [e for e in evs if e[0] >= before_ns])}
        self.batch_of = {e[1]: e[3] for evs in self.by_user.values() for e in evs}
        self.batches = set(self.batch_of.values())

    def taken(self, event_ids) -> np.ndarray:
        """Which of ``event_ids`` an earlier batch took."""
        return np.fromiter((e in self.batch_of for e in event_ids), bool, len(event_ids))

    def users_since(self, since_ns: int) -> list[str]:
        """The users with an event at ``since_ns`` or later."""
        return [u for u, evs in self.by_user.items() if evs[-1][0] >= since_ns]

    def since(self, user: str, since_ns: int) -> tuple[np.ndarray, int]:
        """The user's items known to the model from ``since_ns`` on, in order, and the newest event time."""
        evs = self.by_user.get(user, [])
        evs = evs[bisect.bisect_left(evs, (since_ns,)):]  # sorted by time: skip the older ones
        return np.array([e[2] for e in evs if e[2] > 0], np.int32), (evs[-1][0] if evs else since_ns)


def _day_end_ns(day) -> int:
    """``live.day_end`` in nanoseconds since the epoch."""
    return int(live.day_end(day).timestamp()) * 10**9


def _ns(ts) -> np.ndarray:
    """A pandas UTC time column as int64 nanoseconds since the epoch."""
    import pandas as pd

    return pd.to_datetime(ts, utc=True).to_numpy("datetime64[ns]").astype(np.int64)


class Stream:
    """The state of one running stream and its micro-batch function (module docstring)."""

    def __init__(self, cfg: Config, method: str, echo: Echo = print):
        from pipelines.etl.ingest import pseudonym_key

        self.cfg, self.method, self.echo = cfg, method, echo
        self.wh = Warehouse(cfg.warehouse)
        self.encoder: SessionEncoder | None = None
        self.key = pseudonym_key(self.wh, cfg, None)
        self.types: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.batches = 0
        self.last_batch: int | None = None
        self.last_activity = time.time()
        self.encoded_with: tuple | None = None  # the (day, version) of the last batch's vectors
        self.timings: dict[str, float] = {}
        self.schema: Any = None  # the Arrow schema of the last batch's labeled rows
        self.files = {f for m in (self.wh.root / layout.MANIFESTS / f"stage=stream/model={method}").glob("batch=*.json")
                      for f in json.loads(m.read_text())["files"]}  # every file a committed batch took
        with reading(self.wh.root):  # committed batches only, any half-applied commit finished first
            self.state = LiveState(live.read_events(self.wh, method, STATE_COLUMNS))
        self.base()

    def base(self) -> SessionEncoder:
        """The published model and histories the vectors extend: reloaded when a newer day or
        version is published."""
        from pipelines.serving.query import connect

        days = self.wh.published_days(self.method)
        if not days:
            raise WarehouseError(f"no published {self.method} in {self.wh.root}: the stream extends a published "
                                 f"model; run `seqrep publish --method {self.method}` (or the nightly) first")
        day = days[-1]
        version = self.wh.publish_record(self.method, day)["model_version"]
        if self.encoder is None or (self.encoder.day, self.encoder.version) != (day, version):
            with reading(self.wh.root):
                con, _ = connect(self.wh.root, self.cfg.query)
                try:
                    self.encoder = SessionEncoder.load(con, self.wh, self.method, day, version)
                finally:
                    con.close()
            self.echo(f"stream {self.method}: histories as of {day}, model {version} "
                      f"({len(self.encoder.rows):,} users, {self.encoder.model.n_items:,} items)")
        return self.encoder

    # -- one micro-batch ---------------------------------------------------------------------------
    def process(self, df: "DataFrame", batch_id: int) -> None:
        """``foreachBatch``: steps 1-4 of the module docstring for micro-batch ``batch_id``."""
        try:
            self._process(df, int(batch_id))
        except BaseException as exc:  # the main loop raises it as itself, not wrapped by Py4J
            self.error = exc
            raise

    def _process(self, df: "DataFrame", batch: int) -> None:
        clock = {"start": time.time()}
        enc = self.base()
        rows, per_file, n_erased = self._label(df, batch)
        clock["spark"] = time.time()
        rows_in = sum(per_file.values())
        self.state.drop(batch)  # a rerun of this batch replaces it
        now = datetime.now(timezone.utc)
        ok = rows["reason"].isna()
        for reason, hit in (("duplicate", self.state.taken(rows["event_id"].tolist())),
                            ("late_arrival", rows["ts"] < live.day_end(enc.day)),
                            ("ts_future", rows["ts"] > now + timedelta(seconds=self.cfg.stream.max_clock_skew_s))):
            rows.loc[ok & hit, "reason"] = reason
            ok &= ~hit
        clean, quarantined = rows[ok].copy(), rows[~ok]
        clean["item_idx"] = np.array([enc.item_index(i, d) or 0 for i, d in zip(clean["item_id"], clean["domain"])],
                                     dtype=np.int32)
        self.state.add(clean[STATE_COLUMNS].assign(ts=_ns(clean["ts"])), batch)
        users = clean["user_id"].unique().tolist()
        if (enc.day, enc.version) != self.encoded_with:  # a new publish: every live user again, in its space
            self.state.prune(_day_end_ns(enc.day))
            users = list(dict.fromkeys(users + self.state.users_since(_day_end_ns(enc.day))))
        vectors = self._vectors(enc, users)
        clock["encode"] = time.time()
        self._commit(enc, batch, clean, quarantined, vectors, {
            "rows_in": rows_in, "rows_out": len(clean), "rows_quarantined": len(quarantined), "rows_erased": n_erased,
            "quarantine_by_reason": {str(k): int(v) for k, v in quarantined["reason"].value_counts().items()},
            "events_on_items_unknown_to_the_model": int((clean["item_idx"] == 0).sum()),
            "users": len(vectors), "users_without_known_events": int(clean["user_id"].nunique() - len(vectors)),
            "files": per_file, "newest_event": clean["ts"].max().isoformat() if len(clean) else None}, clock)
        self.files.update(per_file)
        self.batches, self.last_batch, self.last_activity = self.batches + 1, batch, time.time()
        self.encoded_with = (enc.day, enc.version)
        steps = ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
        self.echo(f"batch {batch}: {rows_in:,} rows in {len(per_file)} files, {len(clean):,} clean, "
                  f"{len(quarantined):,} quarantined, {len(vectors):,} user vectors, {time.time() - clock['start']:.2f}s "
                  f"({steps})")

    def _commit(self, enc: SessionEncoder, batch: int, clean, quarantined, vectors, counts: dict, clock: dict) -> None:
        """Step 4: the batch's events, quarantine, vectors and manifest in one run."""
        with transaction(self.wh, f"stream={self.method}", command=f"seqrep stream --method {self.method}") as wh:
            self._write(wh, layout.LIVE_EVENTS, batch, clean[EVENT_COLUMNS + ["item_idx"]].assign(
                item_idx=clean["item_idx"].where(clean["item_idx"] > 0).astype("Int32")))
            self._write(wh, layout.LIVE_QUARANTINE, batch, quarantined)
            self._write(wh, layout.LIVE_USER_EMBEDDINGS, batch, vectors)
            # Seconds per step: Spark (read, map, label, collect), the state and the encoding, the write.
            self.timings = {"spark": clock["spark"] - clock["start"], "encode": clock["encode"] - clock["spark"],
                            "write": time.time() - clock["encode"]}
            wh.write_manifest("stream", f"model={self.method}/batch={batch}", {
                "stage": "stream", "method": self.method, "batch": batch, "base_day": enc.day.isoformat(),
                "model_version": enc.version, **counts,
                "started": datetime.fromtimestamp(clock["start"], timezone.utc).isoformat(),
                "committed": datetime.now(timezone.utc).isoformat(), "seconds": round(time.time() - clock["start"], 3),
                "seconds_by_step": {k: round(v, 3) for k, v in self.timings.items()}})

    def _label(self, df: "DataFrame", batch: int):
        """Steps 1-2 up to the batch clean's rules: (rows with ``reason``, rows per file, erased)."""
        from pyspark.sql import functions as F

        from pipelines.etl.adapters.parquet import map_events
        from pipelines.etl.clean import label
        from pipelines.etl.ingest import drop_erased, event_id_column
        from pipelines.etl.privacy import pseudonymize

        events = map_events(df, self.types, self.cfg.ingest)
        if self.key is not None:
            events = pseudonymize(events, self.key)
        events, erased = drop_erased(events, self.wh, by="source_file")
        events = (events.withColumn("event_id", F.coalesce(F.col("event_id"), event_id_column()))
                  .withColumn("dt", F.to_date(F.col("ts"))).withColumn("source", F.lit("stream")))
        labeled = label(events, self.cfg).select(*EVENT_COLUMNS, "reason", "parse_error", "raw", "source_file")
        arrow = labeled.toArrow()
        self.schema = arrow.schema  # the types of a column that is empty or all null in a batch
        rows = arrow.to_pandas()
        rows["ts"] = rows["ts"].dt.tz_convert("UTC")  # Spark's session zone name may differ; one dtype in the state
        # Rows in per file, from what came back (no Spark job of its own): labeled + erased.
        per_file = {str(f): int(n) for f, n in rows["source_file"].value_counts(sort=False).items()}
        for f, n in erased.items():
            per_file[f] = per_file.get(f, 0) + n
        n_erased = sum(erased.values())
        return rows, per_file, n_erased

    def _vectors(self, enc: SessionEncoder, users: list[str]):
        """The fresh vectors of ``users``: stored history, then their live events after the base day."""
        import pandas as pd

        since = _day_end_ns(enc.day)
        fresh = {u: self.state.since(u, since) for u in users}  # (items, newest event time)
        stored = {u: enc.history(u) for u in users}  # (items, row): looked up once per user
        keep = [u for u in users if len(stored[u][0]) + len(fresh[u][0]) > 0]
        vec = enc.vectors(keep, [fresh[u][0] for u in keep]) if keep else np.zeros((0, enc.model.params.dim), np.float32)
        idx = [stored[u][1] for u in keep]
        return pd.DataFrame({
            "user_id": keep, "user_idx": pd.array([int(enc.user_idx[r]) if r is not None else None for r in idx], "Int32"),
            "vector": list(vec), "dim": np.full(len(keep), vec.shape[1] if len(keep) else 0, np.int32),
            "model_version": enc.version, "base_dt": enc.day,
            "event_time": pd.to_datetime(np.array([fresh[u][1] for u in keep], np.int64), utc=True),
            "n_live": np.array([len(fresh[u][0]) for u in keep], np.int32)})

    def _write(self, wh: Warehouse, table: str, batch: int, frame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if "vector" in frame:  # float32[dim] as the other embedding tables hold it
            dim = int(frame["dim"].iloc[0]) if len(frame) else self.encoder.model.params.dim
            flat = np.concatenate(frame["vector"].to_list()).astype(np.float32) if len(frame) else np.zeros(0, np.float32)
            tbl = pa.Table.from_pandas(frame.drop(columns="vector"), preserve_index=False)
            tbl = tbl.append_column("vector", pa.FixedSizeListArray.from_arrays(pa.array(flat), dim))
        else:
            tbl = pa.Table.from_pandas(frame, preserve_index=False)
            # pandas has no type for an empty or all-null column: the batch's Arrow types, so that
            # every batch folder of a table has one schema.
            tbl = tbl.cast(pa.schema([self.schema.field(f.name) if pa.types.is_null(f.type) and f.name in self.schema.names
                                      else f for f in tbl.schema]))
        wh.write_folder(live.batch_folder(wh, table, self.method, batch),
                        lambda staged: pq.write_table(tbl, staged / "part-0.parquet"))


def parse_trigger(text: str | float) -> float:
    """Seconds from ``2``, ``2s``, ``500ms``."""
    value = str(text).strip().lower()
    try:
        return float(value[:-2]) / 1000 if value.endswith("ms") else float(value.rstrip("s"))
    except ValueError:
        raise ConfigError(f"--trigger {text!r}: give seconds, e.g. 2s or 500ms") from None


def _landed(folder: Path) -> list[Path]:
    """The files in the landing folder that the stream reads (hidden ones are being written)."""
    from pipelines.core.warehouse import iter_files
    from pipelines.etl.adapters.parquet import PARQUET_SUFFIXES

    return list(iter_files(folder, PARQUET_SUFFIXES))


def _all_taken(folder: Path, taken: set[str]) -> bool:
    """Whether every landed file is in a committed batch (``taken``: Spark's file URIs)."""
    paths = {Path(unquote(urlparse(f).path)).resolve() for f in taken}
    return all(p.resolve() in paths for p in _landed(folder))


def _first_file(folder: Path, trigger: float, stop_when_idle_s: float | None, since: float, beat) -> Path | None:
    """The first file to land (its schema is the stream's); None when idle for ``stop_when_idle_s``."""
    while True:
        first = next(iter(_landed(folder)), None)
        if first is not None:
            return first
        if stop_when_idle_s is not None and time.time() - since > stop_when_idle_s:
            return None
        time.sleep(min(trigger, 1.0))
        beat("waiting for files")


def run(cfg: Config, method: str, *, landing: str | Path | None = None, trigger_s: float | None = None,
        stop_when_idle_s: float | None = None, echo: Echo = print) -> dict[str, Any]:
    """Run the stream of ``method`` until stopped (Ctrl-C, SIGTERM), or until no batch has run
    for ``stop_when_idle_s`` seconds; returns what it did."""
    from pyspark.sql import functions as F

    from pipelines.etl.adapters.parquet import file_types
    from pipelines.etl.spark import get_spark

    folder = Path(str(landing or cfg.stream.landing or "")).expanduser()
    if not str(landing or cfg.stream.landing or "") or not folder.is_dir():
        raise ConfigError(f"stream: the landing folder {str(folder)!r} does not exist (stream.landing or --landing)")
    trigger = trigger_s if trigger_s is not None else cfg.stream.trigger_s
    stream = Stream(cfg, method, echo)
    wh = stream.wh
    beat = lambda state: live.write_heartbeat(wh, method, {  # noqa: E731
        "pid": os.getpid(), "host": socket.gethostname(), "state": state, "landing": str(folder),
        "batches": stream.batches, "last_batch": stream.last_batch})
    beat("waiting for files")
    first = _first_file(folder, trigger, stop_when_idle_s, stream.last_activity, beat)
    if first is None:
        return {"batches": 0, "last_batch": None}
    stream.types = file_types([first], cfg.ingest)
    spark = get_spark(cfg.spark)
    schema = spark.read.parquet(str(first)).schema
    source = (spark.readStream.schema(schema).option("maxFilesPerTrigger", cfg.stream.max_files_per_trigger)
              .option("recursiveFileLookup", "true").parquet(str(folder))
              .withColumn("source_file", F.col("_metadata.file_path")))
    checkpoint = wh.table(f"live/checkpoint/model={method}")
    query = (source.writeStream.queryName(f"seqrep_stream_{method}").foreachBatch(stream.process)
             .option("checkpointLocation", str(checkpoint)).trigger(processingTime=f"{trigger} seconds").start())
    echo(f"stream {method}: reading {folder} every {trigger:g}s (checkpoint {checkpoint})")
    stream.last_activity = time.time()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))  # a service's stop
    try:
        while query.isActive and stream.error is None:
            try:
                query.awaitTermination(max(trigger, 0.5))
            except Exception:  # the batch's own error, kept by Stream.process, is raised below
                if stream.error is None:
                    raise
            beat("running")
            idle = time.time() - stream.last_activity
            if stop_when_idle_s is not None and idle > stop_when_idle_s and query.lastProgress is not None \
                    and not query.status["isDataAvailable"] and not query.status["isTriggerActive"] \
                    and _all_taken(folder, stream.files):
                break  # nothing new for that long, and every landed file is in a committed batch
    except KeyboardInterrupt:
        echo(f"stream {method}: stopping")
    finally:
        if query.isActive:
            query.stop()
        beat("stopped")
    if stream.error is not None:
        raise stream.error
    return {"batches": stream.batches, "last_batch": stream.last_batch}
