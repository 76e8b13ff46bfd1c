"""Ingest: source adapters that turn a log format into canonical events, partitioned by day.

An adapter reads its files with Spark and returns a :class:`Parsed`: events with the
canonical columns (``ts`` may be null where it could not be parsed, with the reason in
``parse_error``), optional item metadata, and notes about the source (for example that its
order comes from the file because it has no clock). :func:`run` then:

- gives every row a deterministic ``event_id`` (a hash of its content) where the source has none;
- with ``date`` (the nightly path: the day's log folder), writes every row to ``raw/events/dt=date``:
  rows whose time is off, or unparseable, are kept and quarantined by clean with a reason;
- without ``date`` (a bulk import of a public dataset), partitions rows by the UTC day of ``ts``;
  rows without a usable time cannot be placed on a day and go to ``quarantine/ingest``;
- writes item metadata to ``items/source=S`` and a manifest: rows in = rows written + quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipelines.config import Config, IngestConfig
from pipelines.warehouse import Warehouse, code_version, file_fingerprints, iter_files

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


class InputError(ValueError):
    """An input file or column cannot be read; the message names the file and the problem."""


@dataclass
class Parsed:
    events: "DataFrame"  # user_id, item_id, event_type, ts, domain, value, session_hint, event_id, parse_error, raw, source_file
    items: "DataFrame | None"
    files: list[Path]
    notes: dict[str, Any] = field(default_factory=dict)


Adapter = Callable[["SparkSession", Path, IngestConfig], Parsed]
ADAPTERS: dict[str, Adapter] = {}


def adapter(name: str) -> Callable[[Adapter], Adapter]:
    def register(fn: Adapter) -> Adapter:
        ADAPTERS[name] = fn
        return fn

    return register


# -- helpers shared by adapters ---------------------------------------------------------------


def _files(path: Path, what: str, suffixes: tuple[str, ...] = ()) -> list[Path]:
    if not path.exists():
        raise InputError(f"{what}: input {path} does not exist")
    files = list(iter_files(path, suffixes))
    if not files:
        raise InputError(f"{what}: no input files under {path}")
    for f in files:
        if f.stat().st_size == 0:
            raise InputError(f"{what}: input file {f} is empty (0 bytes)")
    return files


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{what}: expected file {path} is missing")
    if path.stat().st_size == 0:
        raise InputError(f"{what}: input file {path} is empty (0 bytes)")
    return path


def _read_text_table(
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


def _epoch(col: "Column", unit: str) -> tuple["Column", "Column"]:
    """(timestamp, error) from an integer-like string or number in seconds/ms/us."""
    from pyspark.sql import functions as F

    n = col.try_cast("bigint")
    ts = {"s": F.timestamp_seconds, "ms": F.timestamp_millis, "us": F.timestamp_micros}[unit](n)
    err = F.when(n.isNull(), F.concat(F.lit("ts: cannot parse "), F.coalesce(col.cast("string"), F.lit("null"))))
    return ts, err


def _number(col: "Column", name: str) -> tuple["Column", "Column"]:
    from pyspark.sql import functions as F

    v = col.try_cast("double")
    err = F.when(col.isNotNull() & (F.trim(col.cast("string")) != "") & v.isNull(),
                 F.concat(F.lit(f"{name}: not a number: "), col.cast("string")))
    return v, err


def _events(
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


def _file_order_ts(df: "DataFrame", base: date, file_rank: dict[str, int]) -> "DataFrame":
    """``ts`` = ``base`` + row position in file order, in milliseconds (sources without clocks)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rank = F.create_map(*[x for k, v in file_rank.items() for x in (F.lit(k), F.lit(v))])
    df = df.withColumn("_file_rank", rank[F.col("source_file")]).withColumn("_mid", F.monotonically_increasing_id())
    pos = F.row_number().over(Window.orderBy("_file_rank", "_mid")) - 1
    t0 = int(datetime(base.year, base.month, base.day, tzinfo=timezone.utc).timestamp() * 1000)
    return df.withColumn("_pos", pos).withColumn("ts", F.timestamp_millis(F.lit(t0) + F.col("_pos"))).drop("_file_rank", "_mid", "_pos")


def _file_uri(p: Path) -> str:
    return p.resolve().as_uri()


# -- adapters ---------------------------------------------------------------------------------


@adapter("movielens")
def movielens(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """MovieLens 100K: ``u.data`` (user, item, rating, unix seconds) and ``u.item`` (latin-1)."""
    from pyspark.sql import functions as F

    what = "movielens"
    data = _need(path / "u.data" if path.is_dir() else path, what)
    root = data.parent
    domain = cfg.domain if cfg.domain != "default" else "movies"
    df = _read_text_table(spark, [data], ["user", "item", "rating", "ts"], "\t")
    ts, ts_err = _epoch(F.col("ts"), "s")
    value, v_err = _number(F.col("rating"), "rating")
    events = _events(df, user=F.col("user"), item=F.col("item"), event_type=F.lit("rate"), ts=ts,
                     domain=F.lit(domain), value=value, errors=[ts_err, v_err])
    items = None
    files = [data]
    if (root / "u.item").is_file():
        genres = [g.split("|")[0] for g in (root / "u.genre").read_text(encoding="latin-1").splitlines() if g.strip()] \
            if (root / "u.genre").is_file() else [f"genre{i}" for i in range(19)]
        cols = ["item", "title", "release", "video_release", "url", *[f"g{i}" for i in range(len(genres))]]
        it = _read_text_table(spark, [root / "u.item"], cols, "|", encoding="ISO-8859-1")
        tag_list = F.filter(F.array(*[F.when(F.col(f"g{i}") == "1", F.lit(g)) for i, g in enumerate(genres)]),
                            lambda x: x.isNotNull())
        items = it.select(
            F.lit(domain).alias("domain"), F.col("item").alias("item_id"), F.col("title"),
            F.array_join(tag_list, "|").alias("category"), tag_list.alias("tags"),
            F.concat_ws(". ", F.col("title"), F.concat(F.lit("Genres: "), F.array_join(tag_list, ", "))).alias("text"),
            F.lit(None).cast("string").alias("image_url"),
        )
        files.append(root / "u.item")
    return Parsed(events, items, files, {"order": "timestamp; ties by event_id (hash of the row)"})


@adapter("taobao")
def taobao(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """Taobao UserBehavior CSV: ``user,item,category,behavior,unix seconds`` without header."""
    from pyspark.sql import functions as F

    files = _files(path, "taobao", (".csv",))
    domain = cfg.domain if cfg.domain != "default" else "taobao"
    df = _read_text_table(spark, files, ["user", "item", "category", "behavior", "ts"], ",")
    ts, ts_err = _epoch(F.col("ts"), "s")
    mapping = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy", **cfg.event_type_map}
    kind = F.coalesce(F.create_map(*[F.lit(x) for kv in mapping.items() for x in kv])[F.col("behavior")], F.col("behavior"))
    events = _events(df, user=F.col("user"), item=F.col("item"), event_type=kind, ts=ts,
                     domain=F.lit(domain), errors=[ts_err])
    items = (
        df.where(F.col("item").isNotNull() & F.col("category").isNotNull())
        .groupBy("item").agg(F.min("category").alias("category"))
        .select(F.lit(domain).alias("domain"), F.col("item").alias("item_id"), F.lit(None).cast("string").alias("title"),
                F.col("category"), F.array(F.col("category")).alias("tags"),
                F.concat(F.lit("category "), F.col("category")).alias("text"), F.lit(None).cast("string").alias("image_url"))
    )
    return Parsed(events, items, files, {"timezone": "unix seconds (UTC); the dataset's days are UTC+8"})


@adapter("diginetica")
def diginetica(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """DIGINETICA item views: ``session_id;user_id;item_id;timeframe;eventdate`` with header.

    The source has days, not clocks: ``ts`` = the day of the session's first event + ``timeframe``
    (ms since the session started), so a session that crosses midnight keeps its order. A session
    belongs to its known user (a few log in midway); anonymous ones (``NA``) get the user id
    ``anon:<session_id>``. The source's session id is kept as ``session_hint``, so sessionize
    keeps the source's sessions.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    files = _files(path, "diginetica", (".csv",))
    domain = cfg.domain if cfg.domain != "default" else "diginetica"
    df = _read_text_table(spark, files, ["session_id", "user_id", "item_id", "timeframe", "eventdate"], ";", header=True)
    session = Window.partitionBy("session_id")
    day = F.min(F.try_to_timestamp(F.col("eventdate"), F.lit("yyyy-MM-dd"))).over(session)
    known = F.min(F.when((F.col("user_id") != "NA") & (F.trim(F.col("user_id")) != ""), F.col("user_id"))).over(session)
    offset = F.col("timeframe").try_cast("bigint")
    ts = F.timestamp_micros(F.unix_micros(day) + offset * 1000)
    err = F.when(day.isNull() | offset.isNull(), F.concat(
        F.lit("ts: cannot parse eventdate/timeframe "), F.coalesce(F.col("eventdate"), F.lit("null")), F.lit("/"),
        F.coalesce(F.col("timeframe"), F.lit("null"))))
    user = F.coalesce(known, F.concat(F.lit("anon:"), F.col("session_id")))
    events = _events(df, user=user, item=F.col("item_id"), event_type=F.lit("view"), ts=ts,
                     domain=F.lit(domain), session_hint=F.col("session_id"), errors=[err])
    return Parsed(events, None, files, {
        "users": "a session's known user, else anon:<session_id>", "sessions": "source session ids kept",
        "clock": "day of the session's first event + timeframe (ms since session start)"})


@adapter("amazon-cdr")
def amazon_cdr(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """An Amazon cross-domain pair (DisenCDR): folder ``A_B`` (domain A) and its sibling ``B_A``.

    Rows are ``user_idx item_idx 1`` without timestamps. Both domains are ingested; users are
    shared (``u<idx>``), items are per domain. Order = file order (``train.txt`` then
    ``test_original.txt``, the held-out item last), and ``ts`` = the configured base date plus the
    row's position in milliseconds: the time is synthetic and says only the order.
    """
    from pyspark.sql import functions as F

    if not path.is_dir() or "_" not in path.name:
        raise InputError(f"amazon-cdr: input {path} must be a pair folder named A_B (e.g. cloth_sport)")
    a, b = path.name.split("_", 1)
    sides = [(a, path)]
    if (path.parent / f"{b}_{a}").is_dir():
        sides.append((b, path.parent / f"{b}_{a}"))
    frames, files = [], []
    for dom, folder in sides:
        parts = [_need(folder / "train.txt", "amazon-cdr")]
        if (folder / "test_original.txt").is_file():
            parts.append(folder / "test_original.txt")
        files += parts
        df = _read_text_table(spark, parts, ["user", "item", "label"], "\t")
        df = _file_order_ts(df, cfg.synthetic_base_date, {_file_uri(p): i for i, p in enumerate(parts)})
        label, l_err = _number(F.col("label"), "label")
        frames.append(_events(df, user=F.concat(F.lit("u"), F.col("user")), item=F.col("item"),
                              event_type=F.lit("rate"), ts=F.col("ts"), domain=F.lit(dom), errors=[l_err]))
    events = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    notes = {"ts_synthetic": True, "order": "file order (train.txt, then test_original.txt)",
             "base_date": cfg.synthetic_base_date.isoformat(), "domains": [d for d, _ in sides]}
    return Parsed(events, None, files, notes)


@adapter("lastfm")
def lastfm(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """Last.fm HetRec 2011: plays (``user_artists.dat``) and tag events (``user_taggedartists.dat``).

    Plays carry a play count (``value``) but no time: their ``ts`` is the configured base date plus
    file order in ms. Tag events have a day; tags and artist names become item metadata.
    """
    from pyspark.sql import functions as F

    what = "lastfm"
    domain = cfg.domain if cfg.domain != "default" else "music"
    plays_f = _need(path / "user_artists.dat", what)
    plays = _read_text_table(spark, [plays_f], ["user", "artist", "weight"], "\t", header=True)
    plays = _file_order_ts(plays, cfg.synthetic_base_date, {_file_uri(plays_f): 0})
    weight, w_err = _number(F.col("weight"), "weight")
    play_events = _events(plays, user=F.col("user"), item=F.col("artist"), event_type=F.lit("play"), ts=F.col("ts"),
                          domain=F.lit(domain), value=weight, errors=[w_err])
    files = [plays_f]
    frames = [play_events]
    tagged_f = path / "user_taggedartists.dat"
    if tagged_f.is_file():
        tagged = _read_text_table(spark, [tagged_f], ["user", "artist", "tag", "day", "month", "year"], "\t", header=True)
        ts = F.try_to_timestamp(F.concat_ws("-", "year", "month", "day"), F.lit("yyyy-M-d"))
        err = F.when(ts.isNull(), F.concat(F.lit("ts: cannot parse day/month/year "), F.concat_ws("/", "day", "month", "year")))
        # A user tags an artist with several tags on one day: the tag makes each event distinct.
        tag_id = F.substring(F.sha2(F.concat_ws("|", F.lit("tag"), "user", "artist", "tag", "year", "month", "day"), 256), 1, 24)
        frames.append(_events(tagged, user=F.col("user"), item=F.col("artist"), event_type=F.lit("tag"), ts=ts,
                              domain=F.lit(domain), event_id=tag_id, errors=[err]))
        files.append(tagged_f)
    items = None
    artists_f = path / "artists.dat"
    if artists_f.is_file():
        artists = _read_text_table(spark, [artists_f], ["id", "name", "url", "picture"], "\t", header=True)
        tags = None
        if tagged_f.is_file() and (path / "tags.dat").is_file():
            names = _read_text_table(spark, [path / "tags.dat"], ["tag", "tag_value"], "\t", header=True, encoding="ISO-8859-1")
            counts = tagged.groupBy("artist", "tag").count().join(names.select("tag", "tag_value"), "tag")
            # Most used tags first, ties by name, at most 20 per artist.
            tags = counts.groupBy("artist").agg(
                F.slice(F.transform(F.sort_array(F.collect_list(F.struct((-F.col("count")).alias("n"), F.col("tag_value").alias("t")))),
                                    lambda s: s["t"]), 1, 20).alias("tags"))
            files.append(path / "tags.dat")
        items = artists.select(F.col("id").alias("artist"), "name", "picture")
        if tags is not None:
            # Some tagged artists are missing from artists.dat: they get a row with their tags only.
            items = items.join(tags, "artist", "full_outer")
        else:
            items = items.withColumn("tags", F.lit(None).cast("array<string>"))
        items = items.select(
            F.lit(domain).alias("domain"), F.col("artist").alias("item_id"), F.col("name").alias("title"),
            F.element_at(F.col("tags"), 1).alias("category"), F.col("tags"),
            F.concat_ws(". ", F.col("name"), F.concat(F.lit("Tags: "), F.array_join(F.coalesce(F.col("tags"), F.array()), ", "))).alias("text"),
            F.col("picture").alias("image_url"),
        )
        files.append(artists_f)
    events = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    notes = {"ts_synthetic": "plays only", "order": "plays: file order; tags: their day, ties by event_id",
             "base_date": cfg.synthetic_base_date.isoformat()}
    return Parsed(events, items, files, notes)


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


@adapter("parquet")
def parquet(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """A product's own Parquet log, mapped with ``ingest.columns`` (canonical name -> source column).

    Required: ``user_id``, ``item_id``, ``event_type``, ``ts``. Optional: ``event_id``, ``domain``,
    ``value``, ``session_hint``. Integer timestamps use ``ingest.ts_unit``; strings
    ``ingest.ts_format`` (Spark datetime pattern; ISO-8601 when unset); timestamps pass through.
    """
    import pyarrow as pa
    from pyspark.sql import functions as F

    required = ("user_id", "item_id", "event_type", "ts")
    mapping = {c: cfg.columns.get(c, c) for c in required}
    for opt in ("event_id", "domain", "value", "session_hint"):
        if opt in cfg.columns:
            mapping[opt] = cfg.columns[opt]
    unknown = set(cfg.columns) - {*required, "event_id", "domain", "value", "session_hint"}
    if unknown:
        raise InputError(f"parquet: ingest.columns maps unknown canonical names {sorted(unknown)}")
    files = _files(path, "parquet", (".parquet", ".parq"))
    types, seen = _check_parquet_files(files, mapping)
    ignored = sorted(seen - set(mapping.values()))
    df = spark.read.parquet(*[str(f) for f in files]).withColumn("source_file", F.input_file_name())
    df = df.withColumn("raw", F.to_json(F.struct(*[F.col(c) for c in dict.fromkeys(mapping.values())])))

    tcol, ttype = F.col(mapping["ts"]), types[mapping["ts"]]
    if pa.types.is_integer(ttype) or pa.types.is_floating(ttype):
        ts, ts_err = _epoch(tcol, cfg.ts_unit)
    elif pa.types.is_timestamp(ttype) or pa.types.is_date(ttype):
        ts = tcol.cast("timestamp")
        ts_err = F.when(tcol.isNull(), F.lit("ts: null"))
    elif pa.types.is_string(ttype) or pa.types.is_large_string(ttype):
        ts = F.try_to_timestamp(tcol, F.lit(cfg.ts_format)) if cfg.ts_format else tcol.try_cast("timestamp")
        ts_err = F.when(ts.isNull(), F.concat(F.lit("ts: cannot parse "), F.coalesce(tcol, F.lit("null"))))
    else:
        raise InputError(f"parquet: column {mapping['ts']!r} (ts) has type {ttype}; expected integer, timestamp or string")
    errors = [ts_err]
    value = None
    if "value" in mapping:
        value, v_err = _number(F.col(mapping["value"]), "value")
        errors.append(v_err)
    def text(canon: str) -> "Column":
        """A string column; binary ids are decoded as UTF-8, and bytes that are not UTF-8 are a row fault."""
        col = F.col(mapping[canon])
        if not pa.types.is_binary(types[mapping[canon]]) and not pa.types.is_large_binary(types[mapping[canon]]):
            return col.cast("string")
        decoded = F.try_validate_utf8(col.cast("string"))
        errors.append(F.when(col.isNotNull() & decoded.isNull(),
                             F.concat(F.lit(f"{canon}: not valid UTF-8: "), F.lower(F.hex(col)))))
        return decoded

    kind = text("event_type")
    if cfg.event_type_map:
        kind = F.coalesce(F.create_map(*[F.lit(x) for kv in cfg.event_type_map.items() for x in kv])[kind], kind)
    events = _events(
        df, user=text("user_id"), item=text("item_id"), event_type=kind, ts=ts,
        domain=text("domain") if "domain" in mapping else F.lit(cfg.domain),
        value=value, session_hint=text("session_hint") if "session_hint" in mapping else None,
        event_id=text("event_id") if "event_id" in mapping else None, errors=errors,
    )
    items = None
    if cfg.items:
        items_path = Path(cfg.items).expanduser()
        items = _parquet_items(spark, _files(items_path, "parquet items", (".parquet",)), cfg)
        files += list(iter_files(items_path, (".parquet",)))
    return Parsed(events, items, files, {"columns": mapping, "ignored_columns": ignored})


def _parquet_items(spark: "SparkSession", files: list[Path], cfg: IngestConfig) -> "DataFrame":
    """Item metadata Parquet (``ingest.items``): item_id, and optionally domain, title, category."""
    from pyspark.sql import functions as F

    _check_parquet_files(files, {"item_id": "item_id"})  # readable, with an item_id
    df = spark.read.parquet(*[str(f) for f in files])
    dom = F.col("domain") if "domain" in df.columns else F.lit(cfg.domain)
    cat = F.col("category") if "category" in df.columns else F.lit(None).cast("string")
    title = F.col("title") if "title" in df.columns else F.lit(None).cast("string")
    return df.select(
        dom.alias("domain"), F.col("item_id").cast("string").alias("item_id"), title.alias("title"), cat.alias("category"),
        F.when(cat.isNotNull(), F.array(cat)).alias("tags"), F.concat_ws(". ", title, cat).alias("text"),
        F.lit(None).cast("string").alias("image_url"),
    )


@adapter("synthetic")
def synthetic(spark: "SparkSession", path: Path, cfg: IngestConfig) -> Parsed:
    """Logs of the synthetic generator (``seqrep generate``), read by the parquet adapter.

    ``path`` is the generator's output folder or one day's folder in it; its item metadata is
    read from the output folder's ``_items``.
    """
    from pipelines.synthetic import SYNTHETIC_COLUMNS, SYNTHETIC_EVENT_TYPES

    root = path if (path / "_items").is_dir() else path.parent
    items = cfg.items or (str(root / "_items") if (root / "_items").is_dir() else None)
    mapped = cfg.model_copy(update={"columns": SYNTHETIC_COLUMNS, "ts_unit": "ms",
                                    "event_type_map": SYNTHETIC_EVENT_TYPES, "items": items})
    parsed = parquet(spark, path, mapped)
    parsed.notes["generator"] = "pipelines.synthetic"
    return parsed


# -- the stage --------------------------------------------------------------------------------


def event_id_column() -> "Column":
    """Deterministic id of a row without one: a hash of its content (identical rows collide on purpose)."""
    from pyspark.sql import functions as F

    parts = [F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in
             ("user_id", "item_id", "event_type", "ts", "domain", "value", "session_hint")]
    return F.substring(F.sha2(F.concat_ws("\u001f", *parts), 256), 1, 24)


def run(
    spark: "SparkSession", cfg: Config, *, source: str | None = None, input_path: str | Path | None = None,
    day: date | None = None, domain: str | None = None, name: str | None = None,
) -> dict[str, Any]:
    """Ingest one input into ``raw/events/source=<name>``; returns the manifest it wrote."""
    from pyspark.sql import functions as F

    from pipelines.schema import EVENT_COLUMNS
    from pipelines.spark import write_daily, write_table

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
    label = name or icfg.name or source
    wh = Warehouse(cfg.warehouse)

    parsed = ADAPTERS[source](spark, path, icfg)
    ev = parsed.events.withColumn("event_id", F.coalesce(F.col("event_id"), event_id_column()))
    if day is not None:
        # Nightly path: every row of the day's log lands in that day; clean judges its time.
        dated, n_undated = ev.withColumn("dt", F.lit(day)), 0
    else:
        # Bulk import: the day comes from the time; rows without a usable time go to quarantine.
        ev = ev.withColumn("dt", F.to_date(F.col("ts")))
        reason = F.concat(F.lit("unparseable_ts: "), F.coalesce(F.col("parse_error"), F.lit("no time")))
        undated = ev.where(F.col("dt").isNull()).select("source_file", "raw", reason.alias("reason"))
        n_undated = write_table(undated, wh, f"quarantine/ingest/source={label}")
        dated = ev.where(F.col("dt").isNotNull())
    dated = dated.select(*EVENT_COLUMNS[:-1], "parse_error", "dt")
    stats = write_daily(dated, wh, f"raw/events/source={label}", [day] if day else None)
    n_items = write_table(parsed.items, wh, f"items/source={label}") if parsed.items is not None else 0
    rows_out = sum(int(s["rows"]) for s in stats.values())
    manifest = {
        "stage": "ingest", "source": source, "name": label, "input": str(path), "date": day.isoformat() if day else None,
        "rows_in": rows_out + n_undated, "rows_out": rows_out, "rows_quarantined": n_undated,
        "quarantine_by_reason": {"unparseable_ts": n_undated} if n_undated else {},
        "days": {d.isoformat(): s for d, s in stats.items()}, "items": n_items,
        "notes": parsed.notes, "input_files": file_fingerprints(parsed.files), "code_version": code_version(),
    }
    key = f"source={label}" + (f"/dt={day.isoformat()}" if day else "")
    wh.write_manifest("ingest", key, manifest)
    return manifest
