"""What every source adapter shares: the :class:`Parsed` result and helpers to read files,
parse times and numbers, and project a frame onto the parsed-event columns.

An adapter is ``read(spark, path, cfg) -> Parsed``: events with the canonical columns (``ts`` may
be null where it could not be parsed, with the reason in ``parse_error``), optional item
metadata, and notes about the source (for example that its order comes from the file because it
has no clock). The ingest stage (``pipelines/etl/ingest.py``) does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipelines.core.config import IngestConfig
from pipelines.core.errors import InputError
from pipelines.core.warehouse import iter_files

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


@dataclass
class Parsed:
    events: "DataFrame"  # user_id, item_id, event_type, ts, domain, value, session_hint, event_id, parse_error, raw, source_file
    items: "DataFrame | None"
    files: list[Path]
    notes: dict[str, Any] = field(default_factory=dict)
    #: Per item vector column (``ingest.item_vectors``): dim, rows, missing (the ingest manifest's).
    item_vectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: User-user edges (``to_social``): who befriends or follows whom; None when the source has none.
    social: "DataFrame | None" = None


Adapter = Callable[["SparkSession", Path, IngestConfig], Parsed]


def input_files(path: Path, what: str, suffixes: tuple[str, ...] = ()) -> list[Path]:
    """The data files under ``path`` (suffixes matched without regard to case; hidden ``_``/``.``
    files and folders are skipped, as Spark does, and listed in the ingest manifest)."""
    if not path.exists():
        raise InputError(f"{what}: input {path} does not exist")
    files = list(iter_files(path, suffixes))
    if not files:
        raise InputError(f"{what}: no input files under {path}")
    for f in files:
        if f.stat().st_size == 0:
            raise InputError(f"{what}: input file {f} is empty (0 bytes)")
    return files


def need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{what}: expected file {path} is missing")
    if path.stat().st_size == 0:
        raise InputError(f"{what}: input file {path} is empty (0 bytes)")
    return path


def read_text_table(
    spark: "SparkSession", paths: list[Path], columns: list[str], sep: str,
    header: bool = False, encoding: str = "UTF-8",
) -> "DataFrame":
    """Delimited text as string columns, plus the raw line and its file (for quarantine messages).

    Lines with a different number of fields are kept: missing fields are null, and the raw
    line is kept so that the row's quarantine reason can show it.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    schema = StructType([StructField(c, StringType()) for c in columns] + [StructField("_corrupt", StringType())])
    df = (
        spark.read.option("sep", sep).option("header", header).option("encoding", encoding)
        .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", "_corrupt")
        .schema(schema).csv([str(p) for p in paths])
    )
    # Mixed CRLF/LF files (Last.fm): a field may end in a stray carriage return.
    trimmed = [F.regexp_replace(F.col(c), "\r$", "").alias(c) for c in columns]
    return df.select(
        *trimmed,
        F.coalesce(F.col("_corrupt"), F.concat_ws(sep, *[F.coalesce(F.col(c), F.lit("")) for c in columns])).alias("raw"),
        F.input_file_name().alias("source_file"),
    )


#: Units of epoch timestamps, per second.
EPOCH_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
#: Times outside years 1..9999 are row faults (a time of 2^62 ms would overflow Spark's microseconds).
_EPOCH_S = (-62_135_596_800, 253_402_300_799)


def epoch_ts(col: "Column", unit: str) -> tuple["Column", "Column"]:
    """(timestamp, error) from an integer-like string or number in seconds/ms/us/ns since the epoch;
    a value outside years 1..9999 is an error of its row, not of the whole run."""
    from pyspark.sql import functions as F

    n = col.try_cast("bigint")
    per_s = EPOCH_UNITS[unit]
    ok = n.between(_EPOCH_S[0] * per_s, (_EPOCH_S[1] + 1) * per_s - 1) if per_s <= 1_000_000 else F.lit(True)
    # Nanoseconds: any int64 is inside years 1677..2262, so only their division can be needed.
    micros = n * (1_000_000 // per_s) if per_s <= 1_000_000 else F.floor(n / (per_s // 1_000_000)).cast("bigint")
    ts = F.when(ok, F.timestamp_micros(micros))
    err = F.when(n.isNull(), F.concat(F.lit("ts: cannot parse "), F.coalesce(col.cast("string"), F.lit("null")))) \
        .when(~ok, F.concat(F.lit(f"ts: out of range (years 1..9999) in {unit}: "), col.cast("string")))
    return ts, err


def number(col: "Column", name: str) -> tuple["Column", "Column"]:
    from pyspark.sql import functions as F

    v = col.try_cast("double")
    err = F.when(col.isNotNull() & (F.trim(col.cast("string")) != "") & v.isNull(),
                 F.concat(F.lit(f"{name}: not a number: "), col.cast("string")))
    return v, err


def to_events(
    df: "DataFrame", *, user: "Column", item: "Column", event_type: "Column", ts: "Column",
    domain: "Column", value: "Column | None" = None, session_hint: "Column | None" = None,
    event_id: "Column | None" = None, errors: list["Column"] = (),
) -> "DataFrame":
    """Project an adapter's frame onto the parsed-event columns."""
    from pyspark.sql import functions as F

    return df.select(
        (event_id if event_id is not None else F.lit(None).cast("string")).alias("event_id"),
        user.cast("string").alias("user_id"),
        item.cast("string").alias("item_id"),
        event_type.cast("string").alias("event_type"),
        ts.alias("ts"),
        domain.cast("string").alias("domain"),
        (value if value is not None else F.lit(None)).cast("double").alias("value"),
        (session_hint if session_hint is not None else F.lit(None)).cast("string").alias("session_hint"),
        F.concat_ws("; ", *errors).alias("parse_error") if errors else F.lit("").alias("parse_error"),
        "raw", "source_file",
    ).withColumn("parse_error", F.when(F.col("parse_error") != "", F.col("parse_error")))


def to_social(df: "DataFrame", *, user: "Column", friend: "Column", ts: "Column",
              errors: list["Column"] = ()) -> "DataFrame":
    """Project an adapter's frame of user-user edges onto the parsed social columns: user_id,
    friend_id, ts (null where unknown or unparseable, the reason in ``parse_error``), parse_error,
    raw, source_file."""
    from pyspark.sql import functions as F

    return df.select(
        user.cast("string").alias("user_id"), friend.cast("string").alias("friend_id"), ts.alias("ts"),
        (F.concat_ws("; ", *errors) if errors else F.lit("")).alias("parse_error"), "raw", "source_file",
    ).withColumn("parse_error", F.when(F.col("parse_error") != "", F.col("parse_error")))


def file_order_ts(df: "DataFrame", base: date, file_rank: dict[str, int]) -> "DataFrame":
    """``ts`` = ``base`` + row position in file order, in milliseconds (sources without clocks)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rank = F.create_map(*[x for k, v in file_rank.items() for x in (F.lit(k), F.lit(v))])
    df = df.withColumn("_file_rank", rank[F.col("source_file")]).withColumn("_mid", F.monotonically_increasing_id())
    pos = F.row_number().over(Window.orderBy("_file_rank", "_mid")) - 1
    t0 = int(datetime(base.year, base.month, base.day, tzinfo=timezone.utc).timestamp() * 1000)
    return df.withColumn("_pos", pos).withColumn("ts", F.timestamp_millis(F.lit(t0) + F.col("_pos"))).drop("_file_rank", "_mid", "_pos")


def file_uri(p: Path) -> str:
    return p.resolve().as_uri()
