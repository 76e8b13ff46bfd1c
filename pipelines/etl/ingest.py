"""Ingest: a source's files into canonical raw events, partitioned by day.

A source adapter (``pipelines/etl/adapters/``, one per log format) reads its files with Spark
and returns a ``Parsed``: events with the canonical columns (``ts`` may be null where it could
not be parsed, with the reason in ``parse_error``), optional item metadata, and notes about the
source. :func:`run` then:

- gives every row a deterministic ``event_id`` (a hash of its content) where the source has none;
- with ``date`` (the nightly path: the day's log folder), writes every row to ``raw/events/dt=date``:
  rows whose time is off, or unparseable, are kept and quarantined by clean with a reason;
- without ``date`` (a bulk import of a public dataset), partitions rows by the UTC day of ``ts``;
  rows without a usable time cannot be placed on a day and go to ``quarantine/ingest``;
- writes item metadata to ``items/source=S`` (with the vector columns of ``ingest.item_vectors``,
  checked by the adapter: ``pipelines/etl/adapters/parquet.py:check_item_vectors``) and a
  manifest: rows in = rows written + quarantined; per vector column its length and missing rows;
- writes the source's user-user edges, if it has any, to ``raw/social/source=S/dt=D`` by the same
  rule (the day of the run, or of the edge's time; an edge without a usable time in a bulk import
  goes to ``quarantine/ingest``), pseudonymized on both ends, with their own counts in the
  manifest (``social``). The graphs stage makes ``graphs/social`` of them.

With ``privacy.pseudonymize`` on, the user ids (and a source's own event and session ids) are
replaced by their pseudonyms before anything is written (``pipelines/etl/privacy.py``), and the
first ingest records that the warehouse is pseudonymous; a warehouse is so from its first ingest
or never.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.core import privacy
from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.errors import ConfigError, InputError
from pipelines.core.runs import transaction
from pipelines.core.warehouse import Warehouse, code_version, file_fingerprints
from pipelines.etl.adapters import ADAPTERS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["ADAPTERS", "InputError", "event_id_column", "run"]

PSEUDONYM_NOTE = ("user ids, and the source's own event and session ids, stored as pseudonyms (privacy.pseudonymize); "
                  "the raw text of rows without a usable time is withheld")


def event_id_column() -> "Column":
    """Deterministic id of a row without one: a hash of its content (identical rows collide on
    purpose). The fields are hashed as a JSON array of strings and nulls, an encoding no value can
    imitate: a separator inside an id cannot make two different rows one."""
    from pyspark.sql import functions as F

    fields = F.array(*[F.col(c).cast("string") for c in
                       ("user_id", "item_id", "event_type", "ts", "domain", "value", "session_hint")])
    return F.substring(F.sha2(F.to_json(fields), 256), 1, 24)


def run(
    spark: "SparkSession", cfg: Config, *, source: str | None = None, input_path: str | Path | None = None,
    day: date | None = None, domain: str | None = None, name: str | None = None,
) -> dict[str, Any]:
    """Ingest one input into ``raw/events/source=<name>`` in a run (rows, items and manifest
    become visible together); returns the manifest it wrote."""
    icfg = cfg.ingest
    source = source or icfg.source
    if source not in ADAPTERS:
        raise InputError(f"unknown source {source!r}; choose one of {sorted(ADAPTERS)}")
    raw_input = input_path or icfg.input
    if raw_input is None:
        raise InputError(f"{source}: no input path (give --input or ingest.input in the config)")
    path = Path(str(raw_input).replace("{date}", day.isoformat() if day else "{date}")).expanduser()
    if domain:
        icfg = icfg.model_copy(update={"domain": domain})
    if icfg.social and day is not None:
        icfg = icfg.model_copy(update={"social": icfg.social.replace("{date}", day.isoformat())})
    label = name or icfg.name or source
    with transaction(Warehouse(cfg.warehouse), "etl") as wh:
        key = pseudonym_key(wh, cfg, day)
        parsed = ADAPTERS[source](spark, path, icfg)
        uncarried = [v for v in icfg.item_vectors if v not in parsed.item_vectors]
        if uncarried:
            raise InputError(f"{source}: ingest.item_vectors lists {uncarried}, but this input carries no item vectors "
                             "(the parquet and synthetic sources read them from the items file of ingest.items)")
        try:
            manifest = _write(spark, wh, parsed, source, label, path, day, key)
        except Exception as exc:
            raise _unreadable_file(parsed.files) or exc
        manifest["skipped_files"] = skipped_files(path, parsed.files)
        wh.write_manifest("ingest", f"source={label}" + (f"/dt={day.isoformat()}" if day else ""), manifest)
        return manifest


def pseudonym_key(wh: Warehouse, cfg: Config, day: date | None) -> bytes | None:
    """The key to pseudonymize with (None: plain ids), after checking that the warehouse agrees:
    pseudonyms and plain ids never mix in one warehouse. The first pseudonymous ingest writes the
    warehouse's record (``pipelines/core/privacy.py``)."""
    p = cfg.privacy
    record = privacy.read_record(wh.root)
    if not p.pseudonymize:
        if record is not None:
            raise ConfigError(f"ingest: {wh.root} stores pseudonymous user ids (since {record['since']}); "
                              "set privacy.pseudonymize: true and its key to add to it")
        return None
    key = privacy.require_key(p.key_env, p.key_file, why="ingest with privacy.pseudonymize")
    if record is not None:
        privacy.check_key(record, key, who="ingest")
        return key
    if wh.raw_sources():
        raise ConfigError(f"ingest: {wh.root} already holds plain user ids; pseudonymization starts with a "
                          "new warehouse (ingest the logs again into it)")
    since = day.isoformat() if day else "bulk import"
    wh.write_json(wh.table(privacy.RECORD), privacy.record_for(key, p.key_env, p.key_file, since))
    return key


def drop_erased(events: "DataFrame", wh: Warehouse, by: str | None = None,
                columns: tuple[str, ...] = ("user_id",)) -> tuple["DataFrame", dict]:
    """The rows without those of users erased from the warehouse (``seqrep forget``) in any of
    ``columns``, and how many there were, per value of the column ``by`` (all under ``None``
    without it; an empty dict when nobody is erased): an erased user's new events never land."""
    from pyspark.sql import functions as F

    hashes = privacy.erased_hashes(wh.root)
    if not hashes:
        return events, {}
    gone = F.lit(False)
    for c in columns:
        # privacy.id_hash, in Spark: sha256 of the prefix and the stored id, as hex.
        hashed = F.sha2(F.concat(F.lit(privacy.ERASED_PREFIX), F.col(c)), 256)
        gone = gone | F.coalesce(hashed.isin(sorted(hashes)), F.lit(False))
    erased = events.where(gone)
    counts = {None: erased.count()} if by is None else {r[0]: int(r[1]) for r in erased.groupBy(by).count().collect()}
    return events.where(~gone), counts


def skipped_files(path: Path, read: list[Path]) -> list[dict[str, str]]:
    """Every file under the input ``path`` that the adapter did not read, with why: nothing in an
    input folder is left out silently."""
    if not path.is_dir():
        return []
    taken = {p.resolve() for p in read}
    out = []
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        if f.resolve() not in taken:
            hidden = any(part.startswith((".", "_")) for part in f.relative_to(path).parts)
            out.append({"path": str(f), "reason": "hidden (a name or folder starting with _ or .)" if hidden
                        else "not a file of this source's format"})
    return out


def _unreadable_file(files: list[Path]) -> InputError | None:
    """When Spark fails on the input, the file it could not read, checked one by one (a damaged
    data page past a sound footer fails only when read): an error naming it, or None."""
    import pyarrow.parquet as pq

    for f in files:
        if f.suffix.lower() in (".parquet", ".parq", ".pq"):
            try:
                pq.read_table(f)
            except Exception as exc:  # pyarrow raises several types for damaged data
                return InputError(f"parquet: {f} cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return None


def _dated(rows: "DataFrame", day: date | None) -> tuple["DataFrame", "DataFrame | None"]:
    """(rows with their day ``dt``, rows no day can be given as quarantine rows): a nightly ingest
    puts every row on its day (clean judges the time); a bulk import uses the UTC day of ``ts``."""
    from pyspark.sql import functions as F

    if day is not None:
        return rows.withColumn("dt", F.lit(day)), None
    rows = rows.withColumn("dt", F.to_date(F.col("ts")))
    reason = F.concat(F.lit("unparseable_ts: "), F.coalesce(F.col("parse_error"), F.lit("no time")))
    return (rows.where(F.col("dt").isNotNull()),
            rows.where(F.col("dt").isNull()).select("source_file", "raw", reason.alias("reason")))


def _write(spark: "SparkSession", wh: Warehouse, parsed, source: str, label: str, path: Path,
           day: date | None, key: bytes | None) -> dict[str, Any]:
    """Write a parsed input as raw events (and items, social edges) in the run of ``wh``; returns the manifest."""
    from pyspark.sql import functions as F

    from pipelines.core.schema import EVENT_COLUMNS
    from pipelines.etl.privacy import pseudonymize
    from pipelines.etl.spark import write_daily, write_table

    ev = parsed.events if key is None else pseudonymize(parsed.events, key)
    ev, erased = drop_erased(ev, wh)
    n_erased = sum(erased.values())
    ev = ev.withColumn("event_id", F.coalesce(F.col("event_id"), event_id_column()))
    dated, undated = _dated(ev, day)
    social = _social(wh, parsed.social, day, key) if parsed.social is not None else None
    if social is not None and social["undated"] is not None:
        undated = social["undated"] if undated is None else undated.unionByName(social["undated"])
    n_undated = write_table(undated, wh, f"{layout.QUARANTINE_INGEST}/source={label}") if undated is not None else 0
    dated = dated.select(*EVENT_COLUMNS[:-1], "parse_error", "dt")
    stats = write_daily(dated, wh, f"{layout.RAW_EVENTS}/source={label}", [day] if day else None)
    n_items = write_table(parsed.items, wh, f"{layout.ITEMS}/source={label}") if parsed.items is not None else 0
    rows_out = sum(int(s["rows"]) for s in stats.values())
    manifest = {
        "stage": "ingest", "source": source, "name": label, "input": str(path), "date": day.isoformat() if day else None,
        "rows_in": rows_out + n_undated + n_erased, "rows_out": rows_out, "rows_quarantined": n_undated,
        "rows_erased": n_erased,
        "quarantine_by_reason": {"unparseable_ts": n_undated} if n_undated else {},
        "days": {d.isoformat(): s for d, s in stats.items()}, "items": n_items,
        # per vector column: its length, the items files' rows, and those without a vector (null)
        **({"item_vectors": parsed.item_vectors} if parsed.item_vectors else {}),
        "notes": {**parsed.notes, **({"privacy": PSEUDONYM_NOTE} if key is not None else {})},
        "input_files": file_fingerprints(parsed.files), "code_version": code_version(),
        "run": wh.run.id if wh.run is not None else None,
    }
    if social is not None:
        manifest.update(_social_write(wh, social, label, day, manifest))
    return manifest


def _social(wh: Warehouse, rows: "DataFrame", day: date | None, key: bytes | None) -> dict[str, Any]:
    """A source's social edges pseudonymized on both ends (``key``), without erased users on
    either end, placed on days (``_dated``); the counts of the rows set aside."""
    from pyspark.sql import functions as F

    from pipelines.etl.privacy import pseudonym_column

    if key is not None:
        rows = rows.select(pseudonym_column(F.col("user_id"), key).alias("user_id"),
                           pseudonym_column(F.col("friend_id"), key).alias("friend_id"),
                           "ts", "parse_error", F.lit(None).cast("string").alias("raw"), "source_file")
    rows, erased = drop_erased(rows, wh, columns=("user_id", "friend_id"))
    dated, undated = _dated(rows, day)
    # Counted apart: the quarantine/ingest write holds the events' undated rows too.
    return {"dated": dated, "undated": undated, "erased": sum(erased.values()),
            "quarantined": undated.count() if undated is not None else 0}


def _social_write(wh: Warehouse, social: dict[str, Any], label: str, day: date | None,
                  manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``raw/social/source=label``; the manifest entries of the social edges (the events'
    quarantine count is the table's less the social rows)."""
    from pipelines.core.schema import RAW_SOCIAL
    from pipelines.etl.spark import write_daily

    cols = [f.name for f in RAW_SOCIAL.fields]
    stats = write_daily(social["dated"].select(*cols), wh, f"{layout.RAW_SOCIAL}/source={label}", [day] if day else None)
    out = sum(int(s["rows"]) for s in stats.values())
    q = social["quarantined"]
    events_q = manifest["rows_quarantined"] - q
    return {
        "rows_in": manifest["rows_in"] - q, "rows_quarantined": events_q,
        "quarantine_by_reason": {"unparseable_ts": events_q} if events_q else {},
        "social": {"rows_in": out + q + social["erased"], "rows_out": out, "rows_quarantined": q,
                   "rows_erased": social["erased"], "days": {d.isoformat(): s for d, s in stats.items()}},
    }
