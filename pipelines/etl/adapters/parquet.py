"""A product's own Parquet log, mapped onto the canonical schema by ``ingest.columns``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.core.config import IngestConfig
from pipelines.core.errors import InputError
from pipelines.etl.adapters.common import Parsed, epoch_ts, input_files, number, to_events, to_social

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
#: Canonical columns a log must have, and those it may have.
REQUIRED = ("user_id", "item_id", "event_type", "ts")
OPTIONAL = ("event_id", "domain", "value", "session_hint")


def read(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """A product's own Parquet log, mapped with ``ingest.columns`` (canonical name -> source column).

    Required: ``user_id``, ``item_id``, ``event_type``, ``ts``. Optional: ``event_id``, ``domain``,
    ``value``, ``session_hint``. Integer timestamps use ``ingest.ts_unit``; strings
    ``ingest.ts_format`` (Spark datetime pattern; ISO-8601 when unset); timestamps pass through.
    """
    from pyspark.sql import functions as F

    mapping = column_mapping(cfg)
    files = input_files(path, "parquet", PARQUET_SUFFIXES)
    types, seen = _check_parquet_files(files, mapping)
    df = spark.read.parquet(*[str(f) for f in files]).withColumn("source_file", F.input_file_name())
    events = map_events(df, types, cfg)
    items, vectors = None, {}
    if cfg.items:
        items_path = Path(cfg.items).expanduser()
        item_files = input_files(items_path, "parquet items", (".parquet",))
        items, vectors = _parquet_items(spark, item_files, cfg)
        files += item_files
    social = None
    if cfg.social:
        social_files = input_files(Path(cfg.social).expanduser(), "parquet social", PARQUET_SUFFIXES)
        social = _parquet_social(spark, social_files, cfg)
        files += social_files
    return Parsed(events, items, files, {"columns": mapping, "ignored_columns": sorted(seen - set(mapping.values()))},
                  item_vectors=vectors, social=social)


def map_events(df: "DataFrame", types: dict[str, Any], cfg: IngestConfig) -> "DataFrame":
    """Parsed events of a frame of the log (with ``source_file``), by ``ingest.columns``;
    ``types``: the Arrow type of each mapped column (``file_types``). ``seqrep stream`` maps its
    micro-batches with it too."""
    from pyspark.sql import functions as F

    mapping = column_mapping(cfg)
    df = df.withColumn("raw", F.to_json(F.struct(*[F.col(c) for c in dict.fromkeys(mapping.values())])))
    ts, ts_err = _timestamp(F.col(mapping["ts"]), types[mapping["ts"]], mapping["ts"], cfg)
    errors = [ts_err]
    value = None
    if "value" in mapping:
        value, v_err = number(F.col(mapping["value"]), "value")
        errors.append(v_err)

    def text(canon: str) -> "Column":
        return _text(F.col(mapping[canon]), types[mapping[canon]], canon, errors)

    kind = text("event_type")
    if cfg.event_type_map:
        kind = F.coalesce(F.create_map(*[F.lit(x) for kv in cfg.event_type_map.items() for x in kv])[kind], kind)
    return to_events(
        df, user=text("user_id"), item=text("item_id"), event_type=kind, ts=ts,
        domain=text("domain") if "domain" in mapping else F.lit(cfg.domain),
        value=value, session_hint=text("session_hint") if "session_hint" in mapping else None,
        event_id=text("event_id") if "event_id" in mapping else None, errors=errors,
    )


def file_types(files: list[Path], cfg: IngestConfig) -> dict[str, Any]:
    """The Arrow type of each mapped column, the same in every file (else a clear ``InputError``)."""
    return _check_parquet_files(files, column_mapping(cfg))[0]


def column_mapping(cfg: IngestConfig) -> dict[str, str]:
    """Canonical name -> source column, for the required columns and the mapped optional ones."""
    unknown = set(cfg.columns) - {*REQUIRED, *OPTIONAL}
    if unknown:
        raise InputError(f"parquet: ingest.columns maps unknown canonical names {sorted(unknown)}")
    mapping = {c: cfg.columns.get(c, c) for c in REQUIRED}
    mapping.update({c: cfg.columns[c] for c in OPTIONAL if c in cfg.columns})
    return mapping


def _timestamp(col: "Column", typ: Any, name: str, cfg: IngestConfig) -> tuple["Column", "Column"]:
    """(ts, error) of the time column by its Parquet type: epoch numbers, timestamps or strings."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return epoch_ts(col, cfg.ts_unit)
    if pa.types.is_timestamp(typ) and typ.unit == "ns":
        # pandas' and pyarrow's default: Spark reads these as epoch nanoseconds (get_spark sets
        # spark.sql.legacy.parquet.nanosAsLong; it has no nanosecond timestamp type).
        return epoch_ts(col, "ns")
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return col.cast("timestamp"), F.when(col.isNull(), F.lit("ts: null"))
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        ts = F.try_to_timestamp(col, F.lit(cfg.ts_format)) if cfg.ts_format else col.try_cast("timestamp")
        return ts, F.when(ts.isNull(), F.concat(F.lit("ts: cannot parse "), F.coalesce(col, F.lit("null"))))
    raise InputError(f"parquet: column {name!r} (ts) has type {typ}; expected integer, timestamp or string")


def _text(col: "Column", typ: Any, canon: str, errors: list["Column"]) -> "Column":
    """A string column; binary ids are decoded as UTF-8, and bytes that are not UTF-8 are a row
    fault (appended to ``errors``)."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    if not pa.types.is_binary(typ) and not pa.types.is_large_binary(typ):
        return col.cast("string")
    decoded = F.try_validate_utf8(col.cast("string"))
    errors.append(F.when(col.isNotNull() & decoded.isNull(),
                         F.concat(F.lit(f"{canon}: not valid UTF-8: "), F.lower(F.hex(col)))))
    return decoded


def _check_parquet_files(files: list[Path], needed: dict[str, str]) -> tuple[dict[str, Any], set[str]]:
    """Read every file's footer: corrupt files, missing columns and mixed types are clear errors.

    Returns the type of each needed column and the names of all columns seen.
    """
    import pyarrow.parquet as pq

    types: dict[str, tuple[Any, Path]] = {}
    seen: set[str] = set()
    for f in files:
        try:
            schema = pq.read_schema(f)
        except Exception as exc:  # pyarrow raises several types for a damaged footer
            raise InputError(f"parquet: {f} is not a readable Parquet file ({type(exc).__name__}: {exc})") from None
        seen.update(schema.names)
        for canon, col in needed.items():
            if col not in schema.names:
                raise InputError(
                    f"parquet: {f} has no column {col!r} (mapped from {canon!r}); its columns are {schema.names}")
            t = schema.field(col).type
            if col in types and types[col][0] != t:
                raise InputError(
                    f"parquet: column {col!r} has type {types[col][0]} in {types[col][1]} but {t} in {f}; "
                    "cast it to one type in the source")
            types.setdefault(col, (t, f))
    return {c: t for c, (t, _) in types.items()}, seen


#: Canonical columns of a social file: required, then optional.
SOCIAL_REQUIRED = ("user_id", "friend_id")
SOCIAL_OPTIONAL = ("ts",)


def _parquet_social(spark: "SparkSession", files: list[Path], cfg: IngestConfig) -> "DataFrame":
    """User-user edges Parquet (``ingest.social``): user_id and friend_id, and optionally ts (typed
    as the events' ``ts``; without it an edge has no time, which a nightly ingest reads as its day)."""
    from pyspark.sql import functions as F

    unknown = set(cfg.social_columns) - {*SOCIAL_REQUIRED, *SOCIAL_OPTIONAL}
    if unknown:
        raise InputError(f"parquet social: ingest.social_columns maps unknown canonical names {sorted(unknown)}; "
                         f"known: {[*SOCIAL_REQUIRED, *SOCIAL_OPTIONAL]}")
    name = {c: cfg.social_columns.get(c, c) for c in (*SOCIAL_REQUIRED, *SOCIAL_OPTIONAL)}
    needed = {c: name[c] for c in SOCIAL_REQUIRED}
    if "ts" in cfg.social_columns:
        needed["ts"] = name["ts"]
    types, _ = _check_parquet_files(files, needed)
    df = spark.read.parquet(*[str(f) for f in files]).withColumn("source_file", F.input_file_name())
    df = df.withColumn("raw", F.to_json(F.struct(*[F.col(c) for c in dict.fromkeys(needed.values())])))
    errors: list["Column"] = []
    ts = F.lit(None).cast("timestamp")
    if "ts" in needed:
        ts, ts_err = _timestamp(F.col(needed["ts"]), types[needed["ts"]], needed["ts"], cfg)
        errors.append(ts_err)
    ids = {c: _text(F.col(needed[c]), types[needed[c]], c, errors) for c in SOCIAL_REQUIRED}
    return to_social(df, user=ids["user_id"], friend=ids["friend_id"], ts=ts, errors=errors)


#: Canonical columns of an item metadata file.
ITEM_COLUMNS = ("item_id", "domain", "title", "category")


def _parquet_items(spark: "SparkSession", files: list[Path], cfg: IngestConfig) -> tuple["DataFrame", dict[str, dict]]:
    """Item metadata Parquet (``ingest.items``): item_id, and optionally domain, title, category,
    under the names of ``ingest.item_columns``; and the vector columns of ``ingest.item_vectors``
    as ``array<float>``, checked first (:func:`check_item_vectors`, whose figures are returned)."""
    from pyspark.sql import functions as F

    unknown = set(cfg.item_columns) - set(ITEM_COLUMNS) - set(cfg.item_vectors)
    if unknown:
        raise InputError(f"parquet items: ingest.item_columns maps unknown canonical names {sorted(unknown)}; "
                         f"known: {list(ITEM_COLUMNS)} and the ingest.item_vectors {cfg.item_vectors}")
    name = {c: cfg.item_columns.get(c, c) for c in (*ITEM_COLUMNS, *cfg.item_vectors)}
    # readable, with an item id, and every vector column in every file with one type
    _check_parquet_files(files, {c: name[c] for c in ("item_id", *cfg.item_vectors)})
    vectors = {v: check_item_vectors(files, name[v], name["item_id"], v) for v in cfg.item_vectors}
    df = spark.read.parquet(*[str(f) for f in files])
    optional = lambda c: F.col(name[c]) if name[c] in df.columns else F.lit(None).cast("string")  # noqa: E731
    dom = F.col(name["domain"]) if name["domain"] in df.columns else F.lit(cfg.domain)
    cat, title = optional("category").cast("string"), optional("title").cast("string")
    return df.select(
        dom.cast("string").alias("domain"), F.col(name["item_id"]).cast("string").alias("item_id"),
        title.alias("title"), cat.alias("category"),
        F.when(cat.isNotNull(), F.array(cat)).alias("tags"), F.concat_ws(". ", title, cat).alias("text"),
        F.lit(None).cast("string").alias("image_url"),
        *[F.col(name[v]).cast("array<float>").alias(v) for v in cfg.item_vectors],
    ), vectors


def check_item_vectors(files: list[Path], column: str, id_column: str, canon: str) -> dict[str, int]:
    """Check the vector column ``column`` of every items file: a list of numbers per row, null
    or of one length in every file, every number finite. Returns ``{"dim", "rows", "missing"}``;
    a fault is an ``InputError`` naming the file, the column, the row and its item id.

    Read batch by batch (a catalogue of wide vectors need not fit in memory at once)."""
    import pyarrow.parquet as pq

    dim: tuple[int, str] | None = None  # the length, and where it was first seen
    rows = missing = 0
    what = f"parquet items: column {column!r}" + (f" (item vector {canon!r})" if canon != column else "")
    for f in files:
        start = 0
        for batch in pq.ParquetFile(f).iter_batches(columns=[id_column, column]):
            vec = batch.column(1)
            if not _is_number_list(vec.type):
                raise InputError(f"{what} in {f} has type {vec.type}; expected a list of numbers per item")
            where = lambda r: f"{f} row {start + r} (item_id {batch.column(0)[r].as_py()!r})"  # noqa: E731
            dim = _check_vector_batch(vec, dim, where, what)
            rows += batch.num_rows
            missing += vec.null_count
            start += batch.num_rows
    return {"dim": dim[0] if dim else 0, "rows": rows, "missing": missing}


def _is_number_list(typ: Any) -> bool:
    import pyarrow as pa

    lists = pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)
    return lists and (pa.types.is_integer(typ.value_type) or pa.types.is_floating(typ.value_type))


def _check_vector_batch(vec: Any, dim: tuple[int, str] | None, where: Any, what: str) -> tuple[int, str] | None:
    """One batch of a vector column (``check_item_vectors``): lengths against ``dim`` (the first
    non-null vector's, and where it was), then finiteness; returns ``dim``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = pc.list_value_length(vec).to_numpy(zero_copy_only=False)
    valid = vec.is_valid().to_numpy(zero_copy_only=False)
    if dim is None and valid.any():
        first = int(np.flatnonzero(valid)[0])
        dim = (int(lengths[first]), where(first))
    empty = np.flatnonzero(valid & (lengths == 0))
    if len(empty):
        raise InputError(f"{what}: {where(int(empty[0]))} is an empty vector (null marks an item without one)")
    if dim is not None:
        wrong = np.flatnonzero(valid & (lengths != dim[0]))
        if len(wrong):
            r = int(wrong[0])
            raise InputError(f"{what}: {where(r)} has {int(lengths[r])} numbers, but the vector of {dim[1]} has "
                             f"{dim[0]}: every vector of a column must have one length (null for none)")
    values = pc.list_flatten(vec)
    finite = pc.is_finite(values.cast(pa.float64())).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(~np.asarray(finite, dtype=bool) | ~values.is_valid().to_numpy(zero_copy_only=False))
    if len(bad):
        r = int(pc.list_parent_indices(vec).to_numpy()[bad[0]])
        value = values[int(bad[0])].as_py()
        raise InputError(f"{what}: {where(r)} holds {value} (NaN, infinite or null): vectors must be finite numbers "
                         "(a null vector, not null numbers, marks an item without one)")
    return dim
