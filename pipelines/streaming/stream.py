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
   Rows in = clean + quarantined + erased, checked;
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

import os
import signal
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.errors import AccountingError, ConfigError, WarehouseError
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
        with reading(self.wh.root):  # committed batches only, any half-applied commit finished first
            self.events = live.read_events(self.wh, method, STATE_COLUMNS)
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
        import pandas as pd

        t0 = time.time()
        enc = self.base()
        rows, per_file, n_erased = self._label(df, batch)
        rows_in = sum(per_file.values())
        earlier = self.events[self.events["batch"] != batch]  # a rerun of this batch replaces it
        now = datetime.now(timezone.utc)
        ok = rows["reason"].isna()
        for reason, hit in (("duplicate", rows["event_id"].isin(earlier["event_id"])),
                            ("late_arrival", rows["ts"] < live.day_end(enc.day)),
                            ("ts_future", rows["ts"] > now + timedelta(seconds=self.cfg.stream.max_clock_skew_s))):
            rows.loc[ok & hit, "reason"] = reason
            ok &= ~hit
        clean, quarantined = rows[ok].copy(), rows[~ok]
        clean["item_idx"] = np.array([enc.item_index(i, d) or 0 for i, d in zip(clean["item_id"], clean["domain"])],
                                     dtype=np.int32)
        state = pd.concat([earlier, clean[STATE_COLUMNS].assign(batch=batch)], ignore_index=True)
        users = clean["user_id"].unique().tolist()
        if (enc.day, enc.version) != self.encoded_with:  # a new publish: every live user again, in its space
            users = list(dict.fromkeys(users + state.loc[state["ts"] >= live.day_end(enc.day), "user_id"].tolist()))
        vectors = self._vectors(enc, state, users)

        with transaction(self.wh, f"stream={self.method}", command=f"seqrep stream --method {self.method}") as wh:
            self._write(wh, layout.LIVE_EVENTS, batch, clean[EVENT_COLUMNS + ["item_idx"]].assign(
                item_idx=clean["item_idx"].where(clean["item_idx"] > 0)))
            self._write(wh, layout.LIVE_QUARANTINE, batch, quarantined)
            self._write(wh, layout.LIVE_USER_EMBEDDINGS, batch, vectors)
            manifest = {
                "stage": "stream", "method": self.method, "batch": batch, "base_day": enc.day.isoformat(),
                "model_version": enc.version, "rows_in": rows_in, "rows_out": len(clean),
                "rows_quarantined": len(quarantined), "rows_erased": n_erased,
                "quarantine_by_reason": {str(k): int(v) for k, v in quarantined["reason"].value_counts().items()},
                "events_on_items_unknown_to_the_model": int((clean["item_idx"] == 0).sum()),
                "users": len(vectors), "users_without_known_events": int(clean["user_id"].nunique() - len(vectors)),
                "files": per_file, "newest_event": clean["ts"].max().isoformat() if len(clean) else None,
                "started": datetime.fromtimestamp(t0, timezone.utc).isoformat(),
                "committed": datetime.now(timezone.utc).isoformat(), "seconds": round(time.time() - t0, 3),
            }
            wh.write_manifest("stream", f"model={self.method}/batch={batch}", manifest)
        self.events, self.batches, self.last_batch, self.last_activity = state, self.batches + 1, batch, time.time()
        self.encoded_with = (enc.day, enc.version)
        self.echo(f"batch {batch}: {rows_in:,} rows in {len(per_file)} files, {len(clean):,} clean, "
                  f"{len(quarantined):,} quarantined, {len(vectors):,} user vectors, {time.time() - t0:.2f}s")

    def _label(self, df: "DataFrame", batch: int):
        """Steps 1-2 up to the batch clean's rules: (rows with ``reason``, rows per file, erased)."""
        from pyspark.sql import functions as F

        from pipelines.etl.adapters.parquet import map_events
        from pipelines.etl.clean import label
        from pipelines.etl.ingest import drop_erased, event_id_column
        from pipelines.etl.privacy import pseudonymize

        df = df.persist()
        per_file = {r[0]: int(r[1]) for r in df.groupBy("source_file").count().collect()}
        events = map_events(df, self.types, self.cfg.ingest)
        if self.key is not None:
            events = pseudonymize(events, self.key)
        events, n_erased = drop_erased(events, self.wh)
        events = (events.withColumn("event_id", F.coalesce(F.col("event_id"), event_id_column()))
                  .withColumn("dt", F.to_date(F.col("ts"))).withColumn("source", F.lit("stream")))
        labeled = label(events, self.cfg).select(*EVENT_COLUMNS, "reason", "parse_error", "raw", "source_file")
        rows = labeled.toArrow().to_pandas()
        rows["ts"] = rows["ts"].dt.tz_convert("UTC")  # Spark's session zone name may differ; one dtype in the state
        df.unpersist()
        if len(rows) + n_erased != sum(per_file.values()):
            raise AccountingError(f"stream {self.method} batch {batch}: {sum(per_file.values())} rows in, "
                                  f"{len(rows)} labeled + {n_erased} erased")
        return rows, per_file, n_erased

    def _vectors(self, enc: SessionEncoder, state, users: list[str]):
        """The fresh vectors of ``users``: stored history, then their live events after the base day."""
        import pandas as pd

        mine = state[state["user_id"].isin(users) & (state["ts"] >= live.day_end(enc.day))]
        mine = mine.sort_values(["user_id", "ts", "event_id"], kind="stable")
        known = mine[mine["item_idx"] > 0]
        fresh = {u: g["item_idx"].to_numpy(np.int32) for u, g in known.groupby("user_id", sort=False)}
        newest = mine.groupby("user_id")["ts"].max()
        stored = {u: enc.history(u) for u in users}  # (items, row): looked up once per user
        keep = [u for u in users if len(stored[u][0]) + len(fresh.get(u, ())) > 0]
        vec = enc.vectors(keep, [fresh.get(u, np.zeros(0, np.int32)) for u in keep]) if keep else \
            np.zeros((0, enc.model.params.dim), np.float32)
        idx = [stored[u][1] for u in keep]
        return pd.DataFrame({
            "user_id": keep, "user_idx": pd.array([int(enc.user_idx[r]) if r is not None else None for r in idx], "Int32"),
            "vector": list(vec), "dim": np.full(len(keep), vec.shape[1] if len(keep) else 0, np.int32),
            "model_version": enc.version, "base_dt": enc.day, "event_time": [newest[u] for u in keep],
            "n_live": np.array([len(fresh.get(u, ())) for u in keep], np.int32)})

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
        wh.write_folder(live.batch_folder(wh, table, self.method, batch),
                        lambda staged: pq.write_table(tbl, staged / "part-0.parquet"))


def parse_trigger(text: str | float) -> float:
    """Seconds from ``2``, ``2s``, ``500ms``."""
    value = str(text).strip().lower()
    try:
        return float(value[:-2]) / 1000 if value.endswith("ms") else float(value.rstrip("s"))
    except ValueError:
        raise ConfigError(f"--trigger {text!r}: give seconds, e.g. 2s or 500ms") from None


def _first_file(folder: Path, trigger: float, stop_when_idle_s: float | None, since: float, beat) -> Path | None:
    """The first file to land (its schema is the stream's); None when idle for ``stop_when_idle_s``."""
    from pipelines.etl.adapters.parquet import PARQUET_SUFFIXES

    while True:
        first = next((p for p in sorted(folder.rglob("*")) if p.suffix in PARQUET_SUFFIXES
                      and not p.name.startswith((".", "_"))), None)
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
                    and not query.status["isDataAvailable"] and not query.status["isTriggerActive"]:
                break  # a trigger has run and found nothing new for that long
    except KeyboardInterrupt:
        echo(f"stream {method}: stopping")
    finally:
        if query.isActive:
            query.stop()
        beat("stopped")
    if stream.error is not None:
        raise stream.error
    return {"batches": stream.batches, "last_batch": stream.last_batch}
