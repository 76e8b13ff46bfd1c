"""Configuration: one validated object passed to every stage.

Layers, lowest first: the defaults below < a YAML file (``--config``) < environment
(``SEQREP_WAREHOUSE``, ``SEQREP_SPARK_MASTER``) < command-line flags. Unknown keys are
errors, so a typo in a config file never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.core.errors import ConfigError

#: Event types of the canonical schema (``pipelines/core/schema.py``). Anything else is quarantined by clean.
EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "fav", "buy", "rate", "play", "tag")


#: Columns of ``items/source=S`` besides the item vectors (``pipelines/core/schema.py:ITEM``, and
#: the ``source`` partition).
ITEM_METADATA_COLUMNS = ("domain", "item_id", "title", "category", "tags", "text", "image_url", "source")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkConfig(_Section):
    master: str = "local[2]"
    shuffle_partitions: int = Field(4, ge=1)
    driver_memory: str = "4g"
    #: Off-heap buffers of the driver JVM (shuffle, Parquet); bounded so memory stays predictable.
    max_direct_memory: str = "1g"
    #: A Spark Connect server (``sc://host:15002``, ``seqrep spark-server start``): sessions are its
    #: clients, with no JVM of their own. ``SPARK_REMOTE`` in the environment does the same.
    remote: str | None = None
    #: Extra ``spark.*`` settings, passed through unchanged (cluster settings go here).
    conf: dict[str, str] = Field(default_factory=dict)


class IngestConfig(_Section):
    """How a source's rows map onto the canonical event schema.

    ``columns`` maps canonical names to the source's column names (the ``parquet`` adapter);
    ``event_type_map`` maps source event names to canonical ones (unmapped names pass through
    and are quarantined by clean if unknown).
    """

    source: str = "parquet"
    #: Input path; ``{date}`` is replaced by the run date (nightly: one log folder per day).
    input: str | None = None
    domain: str = "default"
    #: Item metadata Parquet (item_id, optional domain/title/category), for the parquet adapter.
    items: str | None = None
    #: Canonical item column -> the items file's column (item_id, domain, title, category), as
    #: ``columns`` does for the events: ``{item_id: movieId, title: name}``.
    item_columns: dict[str, str] = Field(default_factory=dict)
    #: Vector columns of the items file (one fixed-size list of numbers per item, an encoder's
    #: output: ``[image_vec, video_vec]``), kept in ``items/source=S`` under these names
    #: (``item_columns`` may map a name to the file's own column). Ingest checks them: the column
    #: is in every items file, each non-null vector has the same length and only finite numbers;
    #: null vectors are allowed and counted in the manifest (``item_vectors``).
    item_vectors: list[str] = Field(default_factory=list)
    #: Partition label under raw/events/source=...; defaults to the adapter name.
    name: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    #: Unit of integer timestamps: s, ms or us. Strings are parsed with ``ts_format``.
    ts_unit: Literal["s", "ms", "us"] = "s"
    ts_format: str | None = None
    event_type_map: dict[str, str] = Field(default_factory=dict)
    #: Sources without clocks (Amazon pairs, Last.fm plays) get ts = this date + file order in ms.
    synthetic_base_date: date = date(2014, 1, 1)
    #: User-user edges Parquet (who befriends or follows whom), for the parquet adapter; ``{date}``
    #: is filled in as for ``input``. Columns by ``social_columns``: user_id, friend_id, optional ts.
    social: str | None = None
    #: Canonical social column -> the social file's column (user_id, friend_id, ts).
    social_columns: dict[str, str] = Field(default_factory=dict)

    @field_validator("item_vectors")
    @classmethod
    def _vector_names(cls, v: list[str]) -> list[str]:
        # A vector's name becomes a column of items/source=S and part of a model's parameter
        # names: a plain identifier, not one of the metadata columns.
        for name in v:
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,63}", name) or name in ITEM_METADATA_COLUMNS:
                raise ValueError(f"item vector name {name!r}: lower-case letters, digits and _, not one of "
                                 f"{list(ITEM_METADATA_COLUMNS)}")
        if len(set(v)) != len(v):
            raise ValueError(f"item_vectors lists a name twice: {v}")
        return v


class CleanConfig(_Section):
    event_types: tuple[str, ...] = EVENT_TYPES
    #: Valid time window [ts_min, ts_max) in UTC; None = unbounded.
    ts_min: datetime | None = None
    ts_max: datetime | None = None
    #: A user with more valid events than this in one day is bot-like: all of their day is quarantined.
    bot_max_events_per_day: int = Field(20_000, ge=1)
    #: An event id seen on one of this many days before (or earlier the same day) is a duplicate;
    #: the window is the same in a range run and day by day (0: within the day only).
    duplicate_window_days: int = Field(1, ge=0, le=366)

    @field_validator("ts_min", "ts_max")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        return v


class SessionizeConfig(_Section):
    #: A gap strictly longer than this starts a new session; exactly the gap stays in the session.
    gap_minutes: float = Field(30.0, gt=0, lt=24 * 60)
    #: A session longer than this many events is cut into consecutive sessions.
    max_events: int = Field(1000, ge=1)


class SequencesConfig(_Section):
    #: Per-user history kept in each daily snapshot (models truncate further to their own length).
    max_length: int = Field(1000, ge=3)


class GraphsConfig(_Section):
    #: Edge weight of one event, by type (additive across days, so as-of graphs are sums).
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "view": 1.0, "click": 1.0, "cart": 3.0, "fav": 2.0, "buy": 5.0,
            "rate": 1.0, "play": 1.0, "tag": 1.0,
        }
    )
    #: Consecutive repeats of one item (a re-view) are not transitions.
    drop_self_loops: bool = True


class GatesConfig(_Section):
    """Quality gates (``pipelines/gates/``) between the ETL stages."""

    #: Run each stage's gate after it in ``seqrep etl`` (the DAG runs them as their own tasks).
    enabled: bool = True
    #: Drift against the previous day: ``warn`` records it, ``fail`` stops the day.
    drift: Literal["warn", "fail"] = "warn"
    #: Today's rows over yesterday's outside [1/x, x] is drift.
    max_row_change: float = Field(5.0, gt=1.0)
    #: Share of a day's raw rows quarantined by clean.
    max_quarantine_share: float = Field(0.2, ge=0.0, le=1.0)
    #: Items first seen on a day, as a share of the items active that day.
    max_new_item_rate: float = Field(0.5, ge=0.0, le=1.0)


class SyntheticConfig(_Section):
    seed: int = 7
    start_date: date = date(2024, 1, 1)
    days: int = Field(3, ge=1)
    events_per_day: int = Field(50_000, ge=1)
    users: int = Field(5_000, ge=1)
    items_per_domain: int = Field(2_000, ge=1)
    domains: tuple[str, ...] = ("books", "games")
    categories_per_domain: int = Field(20, ge=1)
    zipf_a: float = Field(1.1, gt=1.0)
    #: Share of a user's sessions that browse one of their own two favourite categories, the same
    #: category index in every domain (books/cat03 and games/cat03): a taste that carries across
    #: domains, what a cross-domain method can learn. 0: every session's category at random (and
    #: the logs byte for byte as before the setting existed).
    user_taste: float = Field(0.0, ge=0.0, le=1.0)
    #: Share of rows made bad on purpose (null ids, unknown types, duplicates, late arrivals).
    bad_row_rate: float = Field(0.002, ge=0.0, le=0.5)
    #: Size of the items' ``image_vec`` column, a stand-in for an image encoder's output that
    #: encodes the item's category: its category's random unit vector plus Gaussian noise
    #: (``item_vector_noise``: the noise's expected norm; 1 = as large as the signal), null for a
    #: share ``item_vector_missing`` of the items. 0: no vector column (the catalogue as before).
    item_vector_dim: int = Field(0, ge=0, le=4096)
    item_vector_noise: float = Field(1.0, ge=0.0)
    item_vector_missing: float = Field(0.1, ge=0.0, le=1.0)


#: The views of a cross-domain pair's data: the target's events, the source's, or both domains'.
PAIR_VIEWS = ("target", "source", "mixed")


class CrossDomainPair(_Section):
    """One cross-domain pair: behaviour in ``source`` gives users a representation in ``target``
    (both are values of the events' ``domain`` column)."""

    #: Names the pair's tables (``cross_domain/<table>/pair=NAME``): lower-case letters, digits, ``_``.
    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    #: How users are aligned. None: the same ``user_id`` in both domains is the same person.
    #: Else a Parquet file (or folder) of (source id, target id) rows, one-to-one: a source user
    #: is the target user it maps to; users absent from it are unaligned.
    mapping: str | None = None
    #: The mapping's columns: (source user id, target user id).
    mapping_columns: tuple[str, str] = ("source_user_id", "target_user_id")

    @model_validator(mode="after")
    def _two_domains(self) -> "CrossDomainPair":
        if self.source == self.target:
            raise ValueError(f"pair {self.name}: source and target are both {self.source!r}")
        return self


class CrossDomainConfig(_Section):
    """Cross-domain datasets (``pipelines/etl/cross_domain.py``), one set of tables per pair."""

    pairs: tuple[CrossDomainPair, ...] = ()
    #: Share of overlapping users (both domains) held out as cold-start-in-target users: their
    #: target events are in no training table of the pair, only in its validation and test targets.
    cold_share: float = Field(0.2, ge=0.0, le=1.0)
    #: Seed of the hash that picks the cold users (and splits them into validation and test).
    seed: int = 0
    #: Methods trained, evaluated, inferred and published each night on every pair (a task group
    #: per pair and method in the nightly DAG), each ``METHOD`` or ``METHOD:VIEW`` (view
    #: ``target``, ``source`` or ``mixed``; default: the method's own, ``target`` for the
    #: single-domain methods). Published as ``METHOD.PAIR`` (``METHOD.VIEW.PAIR`` off the default
    #: view): ``seqrep query recommend USER --method emcdr.shop_to_app``.
    methods: tuple[str, ...] = ()

    @field_validator("methods")
    @classmethod
    def _method_views(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        for entry in methods:
            method, _, view = entry.partition(":")
            if not re.fullmatch(r"[a-z0-9_]+", method) or (view and view not in PAIR_VIEWS):
                raise ValueError(f"{entry!r}: each entry is METHOD or METHOD:VIEW, VIEW one of target, source, mixed")
        return methods

    @field_validator("pairs")
    @classmethod
    def _unique_names(cls, pairs: tuple[CrossDomainPair, ...]) -> tuple[CrossDomainPair, ...]:
        names = [p.name for p in pairs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"pair names must be unique; repeated: {dup}")
        return pairs



class EmbeddingsConfig(_Section):
    """Batch inference and the nearest-neighbour index (``seqrep infer``)."""

    #: Users encoded per forward pass: memory stays bounded whatever the number of users. Small
    #: batches keep the activations in cache: on 2 cores, SASRec encodes 1.7x faster at 256 than at 2048.
    batch_size: int = Field(256, ge=1)
    #: Encode under bfloat16 autocast (CUDA, or CPUs with AMX/AVX-512 BF16): faster matmuls, vectors
    #: rounded to about 3 significant digits before they are stored as float32. Off: exact float32.
    bf16: bool = False
    #: Encode under ``torch.compile`` (methods with a compiled path: SASRec and its variants) when at
    #: least this many users are encoded. On 2 CPU cores compiling takes 10-20 s and then SASRec
    #: encodes about 1.3x faster (bench/infer.py), which repays the compile from about a million
    #: users. None: never. Needs a C++ compiler (without one: eager, with a warning).
    compile_min_users: int | None = Field(1_000_000, ge=1)
    #: Catalogues of at most this many items get an exact inner-product index, larger ones HNSW.
    exact_max_items: int = Field(100_000, ge=1)
    #: HNSW graph degree, build-time and query-time candidate list sizes (FAISS's M, efConstruction, efSearch).
    hnsw_m: int = Field(32, ge=4)
    hnsw_ef_construction: int = Field(80, ge=8)
    hnsw_ef_search: int = Field(128, ge=1)


class QueryConfig(_Section):
    """Bounds of ``seqrep query`` and ``pipelines.serving.query.Query``: a query that would pass one
    stops with a message naming it, never takes the machine down."""

    #: Most neighbours or recommendations one call may ask for (``--k``).
    max_k: int = Field(1000, ge=1)
    #: Most rows a SQL query may return (add a LIMIT, or aggregate, for more).
    max_rows: int = Field(100_000, ge=1)
    #: A SQL query running longer than this is interrupted.
    timeout_s: float = Field(60.0, gt=0)
    #: DuckDB's memory limit for the query connection (it spills what it can to disk, then stops).
    memory_limit: str = "2GB"
    #: DuckDB's spill space for the query connection.
    max_temp_directory_size: str = "4GB"


class NightlyConfig(_Section):
    """The model half of a night (``pipelines/nightly/steps.py``): the nightly DAG's tasks and ``seqrep backfill``."""

    #: Methods trained, evaluated, inferred and published each night (one task group each in the DAG).
    methods: tuple[str, ...] = ("sasrec",)
    #: Warm start: each night continues the last published model of the method on the data as of
    #: the day (vocabularies grow: new items and users get fresh rows) for ``warm_epochs`` epochs.
    warm_start: bool = True
    warm_epochs: int = Field(3, ge=1)
    #: A full retrain (from scratch, the method's own epochs and early stopping) when the last full
    #: one is this many days old or older; 1 retrains fully every night.
    full_retrain_days: int = Field(7, ge=1)
    #: Regression gate: no publish when test NDCG@10 falls by more than this share of the last
    #: published version's (0.1: a 10% relative drop).
    max_ndcg_drop: float = Field(0.1, ge=0.0, le=1.0)


class StreamConfig(_Section):
    """``seqrep stream`` (``pipelines/streaming/stream.py``): fresh events folded into live user vectors."""

    #: Folder new event files land in, in the log's own Parquet layout (mapped by ``ingest.columns``,
    #: the ``parquet`` adapter's mapping). A file must appear whole: write it elsewhere and rename it in.
    landing: str | None = None
    #: Seconds between micro-batches.
    trigger_s: float = Field(2.0, gt=0)
    #: Files read by one micro-batch at most (a backlog is worked off in bounded batches).
    max_files_per_trigger: int = Field(200, ge=1)
    #: Events more than this many seconds after the stream's clock are ``ts_future``.
    max_clock_skew_s: float = Field(3600.0, ge=0)
    #: Methods with a stream: the nightly checks each one's heartbeat (a stream that stopped fails the
    #: DAG's ``stream_heartbeat`` task) and clears the live batches its publish absorbed.
    methods: tuple[str, ...] = ()
    #: A heartbeat older than this many seconds means the stream has stopped.
    heartbeat_max_age_s: float = Field(300.0, gt=0)


class PrivacyConfig(_Section):
    """Personal data in the warehouse (``pipelines/core/privacy.py``, README "Privacy").

    With ``pseudonymize`` on, ingest replaces every user id (and a source's own event and session
    ids, which may embed one) by a keyed hash, HMAC-SHA256 under a secret key read from the
    environment variable ``key_env`` or else the file ``key_file``; the key is never written to
    the warehouse or a log. Queries hash the ids they are given with the same key. A warehouse
    is pseudonymous from its first ingest or never (mixing would make one person two users).
    """

    pseudonymize: bool = False
    key_env: str = Field("SEQREP_PSEUDONYM_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    key_file: Path | None = None
    #: After ``seqrep forget``, each method's weights (which learned from the erased users) are
    #: replaced by a full retrain at the first nightly run this many days after the erasure (0: the next).
    retrain_within_days: int = Field(0, ge=0)


class RetentionConfig(_Section):
    """How many days each table family keeps, counted back from the run's day (that day and the
    ``N - 1`` before it); None keeps everything. ``seqrep retention`` (and, when any is set, the
    nightly DAG's ``retention`` task) drops older partitions; vocabularies are never dropped
    (their indexes are the models' rows). Windows shorter than what a stage reads back are
    errors: sessions continue from the day before, clean's duplicate window looks back
    ``clean.duplicate_window_days``."""

    raw_days: int | None = Field(None, ge=1)            # raw/events of every source
    clean_days: int | None = Field(None, ge=1)          # clean/events
    quarantine_days: int | None = Field(None, ge=1)     # quarantine/events
    sessions_days: int | None = Field(None, ge=2)       # sessions
    sequences_days: int | None = Field(None, ge=1)      # sequences, splits (a user's latest row as of a day)
    graphs_days: int | None = Field(None, ge=1)         # graphs/*
    cross_domain_days: int | None = Field(None, ge=1)   # cross_domain/*
    embeddings_days: int | None = Field(None, ge=1)     # embeddings/users, items, index (every version)
    reports_days: int | None = Field(None, ge=1)        # reports

    @property
    def any(self) -> bool:
        return any(v is not None for v in self.model_dump().values())


class Config(_Section):
    warehouse: Path = Path("warehouse")
    spark: SparkConfig = SparkConfig()
    ingest: IngestConfig = IngestConfig()
    clean: CleanConfig = CleanConfig()
    sessionize: SessionizeConfig = SessionizeConfig()
    sequences: SequencesConfig = SequencesConfig()
    graphs: GraphsConfig = GraphsConfig()
    gates: GatesConfig = GatesConfig()
    synthetic: SyntheticConfig = SyntheticConfig()
    cross_domain: CrossDomainConfig = CrossDomainConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    query: QueryConfig = QueryConfig()
    nightly: NightlyConfig = NightlyConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    stream: StreamConfig = StreamConfig()
    retention: RetentionConfig = RetentionConfig()
    #: Per-method overrides of ``models/configs/<method>.yaml``: ``{sasrec: {model: {...}, train: {...}}}``.
    methods: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weights_cover_types(self) -> "Config":
        missing = [t for t in self.clean.event_types if t not in self.graphs.event_weights]
        if missing:
            raise ValueError(f"graphs.event_weights has no weight for event types {missing}")
        clean_days = self.retention.clean_days
        if clean_days is not None and clean_days <= self.clean.duplicate_window_days:
            raise ValueError(f"retention.clean_days ({clean_days}) must exceed clean.duplicate_window_days "
                             f"({self.clean.duplicate_window_days}): clean reads those days back")
        return self

    def with_overrides(self, **sections: dict[str, Any]) -> "Config":
        """A copy with some fields replaced, e.g. ``cfg.with_overrides(sessionize={"gap_minutes": 5})``."""
        data = self.model_dump()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return Config.model_validate(data)


def _relative_to(config_file: Path, value: str) -> str:
    path = Path(value).expanduser()
    return value if path.is_absolute() or "://" in value else str((config_file.parent / path).resolve())


def load_config(path: str | Path | None = None, *, warehouse: str | Path | None = None) -> Config:
    """Defaults < YAML file < environment < explicit ``warehouse``."""
    data: dict[str, Any] = {}
    for _, layer in config_layers(path, warehouse=warehouse):
        data = merge(data, layer)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        where = f"config file {path}" if path else "configuration"
        lines = [f"{where}: {len(exc.errors())} invalid setting(s)"]
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {key}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def config_layers(path: str | Path | None = None, *, warehouse: str | Path | None = None) -> list[tuple[str, dict]]:
    """What each layer above the defaults sets, lowest first: (where it comes from, a partial tree)."""
    layers: list[tuple[str, dict]] = []
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p}: not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p}: top level must be a mapping")
        # Relative paths in a config file are relative to the file, not the caller's cwd.
        if isinstance(data.get("warehouse"), str):
            data["warehouse"] = _relative_to(p, data["warehouse"])
        ingest = data.get("ingest")
        if isinstance(ingest, dict):
            for key in ("input", "items"):
                if isinstance(ingest.get(key), str):
                    ingest[key] = _relative_to(p, ingest[key])
        cross = data.get("cross_domain")
        for pair in (cross.get("pairs") or []) if isinstance(cross, dict) else []:
            if isinstance(pair, dict) and isinstance(pair.get("mapping"), str):
                pair["mapping"] = _relative_to(p, pair["mapping"])
        privacy = data.get("privacy")
        if isinstance(privacy, dict) and isinstance(privacy.get("key_file"), str):
            privacy["key_file"] = _relative_to(p, privacy["key_file"])
        layers.append((f"file {p}", data))
    if os.environ.get("SEQREP_WAREHOUSE"):
        layers.append(("env SEQREP_WAREHOUSE", {"warehouse": os.environ["SEQREP_WAREHOUSE"]}))
    if os.environ.get("SEQREP_SPARK_MASTER"):
        layers.append(("env SEQREP_SPARK_MASTER", {"spark": {"master": os.environ["SEQREP_SPARK_MASTER"]}}))
    if warehouse is not None:
        layers.append(("--warehouse", {"warehouse": str(warehouse)}))
    return layers


def merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, mappings merged key by key (a new dict; the inputs are not changed)."""
    out = dict(base)
    for key, value in top.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and other values are leaves."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_sources(path: str | Path | None = None, *, warehouse: str | Path | None = None) -> dict[str, tuple[Any, str]]:
    """Every setting of the resolved configuration: ``{"spark.master": (value, where it came from)}``,
    where is ``default``, ``file PATH``, ``env NAME`` or ``--warehouse`` (the highest layer that set it)."""
    cfg = load_config(path, warehouse=warehouse)
    where: dict[str, str] = {}
    for source, layer in config_layers(path, warehouse=warehouse):
        for key in flatten(layer):
            where[key] = source
    values = flatten(cfg.model_dump(mode="json"))
    return {key: (value, next((where[k] for k in _prefixes(key) if k in where), "default"))
            for key, value in values.items()}


def _prefixes(key: str) -> list[str]:
    """``a.b.c``, ``a.b``, ``a``: a layer that set a whole mapping (or list) set its keys."""
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
