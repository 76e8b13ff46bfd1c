"""Spark schemas of the warehouse tables: the contracts between stages (``docs/ARCHITECTURE.md``)."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)


def _schema(*fields: tuple[str, object, bool]) -> StructType:
    return StructType([StructField(n, t, nullable) for n, t, nullable in fields])  # type: ignore[arg-type]


#: One canonical event. ``session_hint`` carries a source's own session id.
EVENT = _schema(
    ("event_id", StringType(), False),
    ("user_id", StringType(), True),
    ("item_id", StringType(), True),
    ("event_type", StringType(), True),
    ("ts", TimestampType(), True),
    ("domain", StringType(), True),
    ("value", DoubleType(), True),
    ("session_hint", StringType(), True),
    ("dt", DateType(), True),
)
EVENT_COLUMNS = [f.name for f in EVENT.fields]

#: Rows an adapter could not turn into events (no usable timestamp): the raw text and why.
INGEST_QUARANTINE = _schema(
    ("source_file", StringType(), True),
    ("raw", StringType(), True),
    ("reason", StringType(), False),
)

QUARANTINE = StructType([*EVENT.fields[:-1], StructField("reason", StringType(), False), EVENT.fields[-1]])

ITEM = _schema(
    ("domain", StringType(), False),
    ("item_id", StringType(), False),
    ("title", StringType(), True),
    ("category", StringType(), True),
    ("tags", ArrayType(StringType()), True),
    ("text", StringType(), True),
    ("image_url", StringType(), True),
)

SESSION_EVENT = _schema(
    *[(f.name, f.dataType, f.nullable) for f in EVENT.fields[:-1]],
    ("session_id", StringType(), False),
    ("session_seq", IntegerType(), False),
    ("session_start", TimestampType(), False),
    ("prev_item_id", StringType(), True),
    ("prev_domain", StringType(), True),
    ("gap_s", DoubleType(), True),
    ("dt", DateType(), False),
)

VOCAB_ITEM = _schema(
    ("item_idx", IntegerType(), False),
    ("domain", StringType(), False),
    ("item_id", StringType(), False),
    ("first_seen", TimestampType(), False),
    ("dt", DateType(), False),
)
VOCAB_USER = _schema(
    ("user_idx", IntegerType(), False),
    ("user_id", StringType(), False),
    ("first_seen", TimestampType(), False),
    ("dt", DateType(), False),
)

SEQUENCE = _schema(
    ("user_idx", IntegerType(), False),
    ("user_id", StringType(), False),
    ("item_idx", ArrayType(IntegerType(), False), False),
    ("event_type", ArrayType(StringType(), False), False),
    ("ts", ArrayType(TimestampType(), False), False),
    ("length", IntegerType(), False),
    ("n_events", LongType(), False),
    ("n_new", IntegerType(), False),
    ("dt", DateType(), False),
)

SPLIT = _schema(
    ("user_idx", IntegerType(), False),
    ("protocol", StringType(), False),
    ("split", StringType(), False),
    ("history_len", IntegerType(), False),
    ("target_idx", ArrayType(IntegerType(), False), False),
    ("dt", DateType(), False),
)

ITEM_TRANSITION = _schema(
    ("src_idx", IntegerType(), False),
    ("dst_idx", IntegerType(), False),
    ("count", LongType(), False),
    ("weight", DoubleType(), False),
    ("dt", DateType(), False),
)
USER_ITEM = _schema(
    ("user_idx", IntegerType(), False),
    ("item_idx", IntegerType(), False),
    ("count", LongType(), False),
    ("weight", DoubleType(), False),
    ("first_ts", TimestampType(), False),
    ("last_ts", TimestampType(), False),
    ("dt", DateType(), False),
)
#: A user-user edge as ingested (``raw/social``): the user befriends or follows the friend.
RAW_SOCIAL = _schema(
    ("user_id", StringType(), True),
    ("friend_id", StringType(), True),
    ("ts", TimestampType(), True),
    ("source_file", StringType(), True),
    ("raw", StringType(), True),
    ("dt", DateType(), False),
)
QUARANTINE_SOCIAL = StructType([*RAW_SOCIAL.fields[:-1], StructField("reason", StringType(), False),
                                RAW_SOCIAL.fields[-1]])
#: A user-user edge of the graph (``graphs/social``), on the day it was first seen.
SOCIAL_EDGE = _schema(
    ("user_idx", IntegerType(), False),
    ("friend_idx", IntegerType(), False),
    ("first_ts", TimestampType(), False),
    ("dt", DateType(), False),
)

# Cross-domain tables of one pair (``pipelines/etl/cross_domain.py``), ``cross_domain/<table>/pair=P/dt=D``.
CROSS_DOMAIN_USER = _schema(
    ("user_id", StringType(), False),
    ("source_user_id", StringType(), True),
    ("target_user_id", StringType(), True),
    ("aligned", BooleanType(), False),
    ("role", StringType(), False),
    ("cold", BooleanType(), False),
    ("source_events", LongType(), False),
    ("target_events", LongType(), False),
    ("dt", DateType(), False),
)
CROSS_DOMAIN_SEQUENCE = _schema(
    ("user_id", StringType(), False),
    ("source_user_idx", IntegerType(), True),
    ("target_user_idx", IntegerType(), True),
    ("role", StringType(), False),
    ("cold", BooleanType(), False),
    ("item_idx", ArrayType(IntegerType(), False), False),
    ("domain", ArrayType(StringType(), False), False),
    ("event_type", ArrayType(StringType(), False), False),
    ("ts", ArrayType(TimestampType(), False), False),
    ("length", IntegerType(), False),
    ("dt", DateType(), False),
)
CROSS_DOMAIN_SPLIT = _schema(
    ("user_id", StringType(), False),
    ("group", StringType(), False),
    ("split", StringType(), False),
    ("history_len", IntegerType(), False),
    ("target_idx", ArrayType(IntegerType(), False), False),
    ("dt", DateType(), False),
)
