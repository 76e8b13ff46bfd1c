"""Quality gates: Great Expectations suites on every stage's output, before the next stage reads it.

A gate validates Spark DataFrames where they are (GX's Spark execution engine; nothing is
collected to the driver but metrics and a few sample values). Each gate checks one stage's
output tables for a day or a range of days:

=========== ===================================================================================
gate        checks
=========== ===================================================================================
raw         the canonical columns and types (extra, missing or renamed columns fail), event ids
            present, rows = what ingest wrote (its manifests)
clean       columns and types, ids not null, event types allowed, times inside the partition's
            day, event_id unique, values >= 0, quarantine reasons known, rows in = clean +
            quarantined (the manifest against a fresh count of the raw rows)
sessions    session ids present, 1 <= position <= max events, start <= time, gaps within the
            gap rule, a predecessor exactly when not first, rows = clean rows (event ids were
            checked unique by the clean gate; sessionize keeps one row per clean event)
sequences   arrays of equal size = length <= max length, indexes inside the vocabularies,
            one row per user, splits well-formed, vocabulary indexes unique and contiguous
graphs      counts >= 1, weights > 0, node ids inside the vocabularies, no self-loops (when
            configured)
embeddings  per method: one row per user and item inference wrote (ids present and unique), the
            model's dimension and version, vectors finite and non-zero (their norms)
=========== ===================================================================================

The regression gate of the nightly models (no publish when NDCG@10 drops) is in
``pipelines/nightly.py``; it writes its results in the same layout.

Drift against the previous day (row-count change, quarantined share, new-item rate) is a
warning or a failure, by ``gates.drift``. A gate writes ``_gates/stage=S/dt=D.json`` (the GX
results) and ``.md`` (a readable summary) under the warehouse, and raises :class:`GateFailed`
with a short message (which expectation, on how many rows, sample values) when a critical
expectation fails.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Callable

from pipelines.config import Config
from pipelines.warehouse import Warehouse, WarehouseError

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.expectations import Expectation
    from pyspark.sql import DataFrame, SparkSession

CRITICAL, WARNING = "critical", "warning"


class GateFailed(RuntimeError):
    """A critical expectation failed; the message says which, on how many rows, with samples."""


@dataclass
class Frame:
    """One DataFrame to validate and the expectations it must meet."""

    name: str
    df: "DataFrame | pd.DataFrame"  # a table (Spark) or per-day numbers (pandas)
    expectations: list[tuple["Expectation", str]]  # (expectation, severity)


@dataclass
class Outcome:
    frame: str
    expectation: str
    kwargs: dict[str, Any]
    severity: str
    success: bool
    unexpected: int | None = None
    rows: int | None = None
    observed: Any = None
    sample: list[Any] = field(default_factory=list)

    def line(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items() if k not in ("batch_id",))
        what = f"{self.frame}: {self.expectation}({args})"
        if self.success:
            return what
        detail = []
        if self.unexpected is not None:
            detail.append(f"{self.unexpected:,} of {self.rows:,} rows" if self.rows is not None else f"{self.unexpected:,} rows")
        if self.observed is not None:
            detail.append(f"observed {self.observed!r}")
        if self.sample:
            detail.append(f"e.g. {self.sample[:5]!r}")
        return f"{what}: {'; '.join(detail)}"


@cache
def _gx():
    """One ephemeral GX context per process: a Spark data source for the tables (validated where
    they are, never collected) and a pandas one for the few-row frames of per-day numbers."""
    import logging

    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    spark = context.data_sources.add_spark(name="seqrep", persist=False).add_dataframe_asset(name="frame")
    pandas = context.data_sources.add_pandas(name="seqrep-numbers").add_dataframe_asset(name="numbers")
    return gx, context, {"spark": spark.add_batch_definition_whole_dataframe("whole"),
                         "pandas": pandas.add_batch_definition_whole_dataframe("whole")}


def validate(frames: list[Frame]) -> list[Outcome]:
    """Run every frame's expectations with GX.

    A first pass asks GX for pass/fail only, which it computes as a few bundled aggregations over
    the frame; only expectations that failed are run again for their counts and sample values.
    """
    import pandas as pd

    gx, context, batch_definitions = _gx()
    outcomes: list[Outcome] = []
    for frame in frames:
        for i, (exp, severity) in enumerate(frame.expectations):
            exp.meta = {**(exp.meta or {}), "seqrep_severity": severity, "seqrep_id": i}
        kind = "pandas" if isinstance(frame.df, pd.DataFrame) else "spark"
        batch = batch_definitions[kind].get_batch(batch_parameters={"dataframe": frame.df})
        suite = gx.ExpectationSuite(name=f"seqrep-{frame.name}", expectations=[e for e, _ in frame.expectations])
        results = batch.validate(suite, result_format="BOOLEAN_ONLY").results
        passed = {r.expectation_config.meta["seqrep_id"] for r in results if r.success}
        failed = [e for i, (e, _) in enumerate(frame.expectations) if i not in passed]
        if failed:
            detail = batch.validate(gx.ExpectationSuite(name=f"seqrep-{frame.name}-failed", expectations=failed),
                                    result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5}).results
            results = [r for r in results if r.success] + list(detail)
        for res in results:  # not in the suite's order: each result carries its configuration
            conf, r = res.expectation_config, res.result or {}
            sample = r.get("partial_unexpected_list") or []
            details = r.get("details") or {}
            if not sample and details.get("unexpected_rows"):
                sample = [list(row.values()) if isinstance(row, dict) else row for row in details["unexpected_rows"]][:5]
            mismatch = details.get("mismatched")
            outcomes.append(Outcome(
                frame=frame.name, expectation="".join(w.title() for w in conf.type.split("_")),
                kwargs={k: v for k, v in conf.kwargs.items() if k not in ("result_format", "batch_id")},
                severity=(conf.meta or {}).get("seqrep_severity", CRITICAL), success=bool(res.success),
                unexpected=r.get("unexpected_count"), rows=r.get("element_count"),
                observed=mismatch if mismatch else r.get("observed_value"), sample=[_plain(x) for x in sample],
            ))
    return outcomes


def _plain(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x if isinstance(x, (int, float, str, bool, type(None))) else str(x)


# -- the suites -----------------------------------------------------------------------------------


def _read(spark: "SparkSession", wh: Warehouse, table: str, days: list[date]) -> "DataFrame":
    paths = wh.existing_partitions(table, days)
    missing = [d for d in days if not wh.has_partition(table, d)]
    if missing:
        raise WarehouseError(f"gate: {table} has no partition for {[str(d) for d in missing[:5]]}")
    return spark.read.option("basePath", str(wh.table(table))).parquet(*paths)


def _columns(schema, extra: tuple[str, ...] = ()) -> list[tuple["Expectation", str]]:
    """Exactly these columns (schema drift fails), each of its Spark type."""
    from great_expectations import expectations as gxe

    names = [f.name for f in schema.fields] + list(extra)
    out: list[tuple[Expectation, str]] = [(gxe.ExpectTableColumnsToMatchSet(column_set=names, exact_match=True), CRITICAL)]
    for f in schema.fields:
        out.append((gxe.ExpectColumnValuesToBeOfType(column=f.name, type_=type(f.dataType).__name__), CRITICAL))
    return out


def _not_null(*cols: str) -> list[tuple["Expectation", str]]:
    from great_expectations import expectations as gxe

    return [(gxe.ExpectColumnValuesToNotBeNull(column=c), CRITICAL) for c in cols]


def _unique(name: str, df: "DataFrame", column: str) -> Frame:
    """Uniqueness of one column, checked on that column alone (GX's check otherwise shuffles whole rows)."""
    from great_expectations import expectations as gxe

    return Frame(name, df.select(column), [(gxe.ExpectColumnValuesToBeUnique(column=column), CRITICAL)])


def _metrics_frame(spark: "SparkSession", rows: list[dict[str, Any]]) -> "pd.DataFrame":
    """Per-day numbers (counts from the data, numbers from the manifests): a row per day, so a
    pandas frame (a Spark one would cost a job per expectation for a handful of rows)."""
    import pandas as pd

    return pd.DataFrame(rows)


def _accounting(name: str, spark, rows: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> Frame:
    from great_expectations import expectations as gxe

    return Frame(name, _metrics_frame(spark, rows),
                 [(gxe.ExpectColumnPairValuesToBeEqual(column_A=a, column_B=b), CRITICAL) for a, b in pairs])


def _rows(wh: Warehouse, table: str, days: list[date]) -> dict[date, int]:
    """Rows per day of ``table`` (``source=*/`` levels included) from the Parquet footers of the
    files Spark would read: exact, and no Spark job for a number the files already state."""
    import pyarrow.parquet as pq

    base = wh.table(table)
    out = {}
    for d in days:
        files = [f for f in base.glob(f"**/dt={d.isoformat()}/*")
                 if f.is_file() and not f.name.startswith(("_", ".")) and f.suffix == ".parquet"]
        out[d] = sum(pq.read_metadata(f).num_rows for f in files)
    return out


def _drift(cfg: Config, spark, stage: str, days: list[date], today: dict[date, dict[str, float]],
           bounds: dict[str, tuple[float | None, float | None]],
           previous: Callable[[date], dict[str, float]]) -> Frame | None:
    """Day-over-day change of some numbers, against the previous day (in the range, or ``previous(day)``)."""
    from great_expectations import expectations as gxe

    severity = CRITICAL if cfg.gates.drift == "fail" else WARNING
    rows = []
    for d in days:
        prev = today.get(d - timedelta(days=1)) or previous(d - timedelta(days=1))
        if not prev:
            continue
        row = {"dt": d.isoformat(), **today[d]}
        if prev.get("rows") and "rows" in today[d]:
            row["row_change"] = today[d]["rows"] / prev["rows"]
        rows.append(row)
    if not rows:
        return None
    df = _metrics_frame(spark, rows)
    exps = []
    for col, (lo, hi) in bounds.items():
        if col in df.columns:
            exps.append((gxe.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi), severity))
    return Frame(f"{stage} drift", df, exps) if exps else None


def _manifest_numbers(wh: Warehouse, stage: str, d: date) -> dict[str, float]:
    m = wh.read_manifest(stage, f"dt={d.isoformat()}")
    if not m:
        return {}
    return {"rows": m["rows_out"], "quarantine_share": m["rows_quarantined"] / m["rows_in"] if m["rows_in"] else 0.0}


def raw_frames(spark: "SparkSession", cfg: Config, days: list[date]) -> list[Frame]:
    from pyspark.sql.types import StringType, StructField

    from pipelines.clean import raw_paths, read_raw
    from pipelines.schema import EVENT

    wh = Warehouse(cfg.warehouse)
    if not raw_paths(wh, days):
        raise WarehouseError(f"gate raw: no raw events for {days[0]}..{days[-1]}; run ingest first")
    raw = read_raw(spark, wh, days)
    schema = EVENT.__class__([*EVENT.fields[:-1], StructField("parse_error", StringType()), EVENT.fields[-1]])
    frames = [Frame("raw/events", raw, [*_columns(schema, extra=("source",)), *_not_null("event_id", "dt")])]
    # Rows = what ingest wrote, by source and day (bulk manifests list their days).
    # Every (source, day) partition, empty ones included.
    sources = sorted({p.split("source=")[1].split("/")[0] for p in raw_paths(wh, days)})
    counted = {(source, d): n for source in sources
               for d, n in _rows(wh, f"raw/events/source={source}", days).items()
               if wh.has_partition(f"raw/events/source={source}", d)}
    rows = []
    for (source, d), n in sorted(counted.items()):
        m = wh.read_manifest("ingest", f"source={source}/dt={d.isoformat()}") or wh.read_manifest("ingest", f"source={source}")
        written = (m or {}).get("days", {}).get(d.isoformat(), {}).get("rows", -1)
        rows.append({"source": source, "dt": d.isoformat(), "rows": n, "ingested": int(written)})
    frames.append(_accounting("raw accounting", spark, rows, [("rows", "ingested")]))
    totals = {d: {"rows": float(sum(n for (_, dd), n in counted.items() if dd == d))} for d in days}

    def previous(d: date) -> dict[str, float]:
        return {"rows": float(sum(_rows(wh, "raw/events", [d]).values()))} if raw_paths(wh, [d]) else {}

    drift = _drift(cfg, spark, "raw", days, totals,
                   {"row_change": (1 / cfg.gates.max_row_change, cfg.gates.max_row_change)}, previous)
    return frames + ([drift] if drift else [])


def clean_frames(spark: "SparkSession", cfg: Config, days: list[date]) -> list[Frame]:
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    from pipelines.clean import REASONS
    from pipelines.schema import EVENT

    wh = Warehouse(cfg.warehouse)
    clean = _read(spark, wh, "clean/events", days)
    start, end = F.to_timestamp(F.col("dt")), F.to_timestamp(F.date_add(F.col("dt"), 1))
    checked = clean.withColumn("in_day", (F.col("ts") >= start) & (F.col("ts") < end))
    frames = [
        Frame("clean/events", checked, [
            *_columns(EVENT, extra=("in_day",)),
            *_not_null("event_id", "user_id", "item_id", "event_type", "ts", "domain", "dt"),
            (gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(cfg.clean.event_types)), CRITICAL),
            (gxe.ExpectColumnValuesToBeInSet(column="in_day", value_set=[True]), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="value", min_value=0), CRITICAL),
            (gxe.ExpectColumnValueLengthsToBeBetween(column="user_id", min_value=1), CRITICAL),
            (gxe.ExpectColumnValueLengthsToBeBetween(column="item_id", min_value=1), CRITICAL),
        ]),
        _unique("clean/events", clean, "event_id"),
        Frame("quarantine/events", _read(spark, wh, "quarantine/events", days), [
            (gxe.ExpectColumnValuesToNotBeNull(column="reason"), CRITICAL),
            (gxe.ExpectColumnValuesToBeInSet(column="reason", value_set=list(REASONS)), CRITICAL),
        ]),
    ]
    raw_n, clean_n, q_n = (_rows(wh, t, days) for t in ("raw/events", "clean/events", "quarantine/events"))
    rows, numbers = [], {}
    for d in days:
        m = wh.read_manifest("clean", f"dt={d.isoformat()}") or {}
        rows.append({"dt": d.isoformat(), "raw_rows": raw_n[d], "rows_in": m.get("rows_in", -1),
                     "clean_rows": clean_n[d], "rows_out": m.get("rows_out", -1), "quarantined_rows": q_n[d],
                     "rows_quarantined": m.get("rows_quarantined", -1), "out_plus_quarantined": clean_n[d] + q_n[d]})
        numbers[d] = {"rows": float(clean_n[d]), "quarantine_share": q_n[d] / raw_n[d] if raw_n[d] else 0.0}
    frames.append(_accounting("clean accounting", spark, rows, [
        ("raw_rows", "rows_in"), ("clean_rows", "rows_out"), ("quarantined_rows", "rows_quarantined"),
        ("raw_rows", "out_plus_quarantined")]))
    drift = _drift(cfg, spark, "clean", days, numbers, {
        "row_change": (1 / cfg.gates.max_row_change, cfg.gates.max_row_change),
        "quarantine_share": (None, cfg.gates.max_quarantine_share)}, lambda d: _manifest_numbers(wh, "clean", d))
    return frames + ([drift] if drift else [])


def sessions_frames(spark: "SparkSession", cfg: Config, days: list[date]) -> list[Frame]:
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    from pipelines.schema import SESSION_EVENT

    wh = Warehouse(cfg.warehouse)
    s = _read(spark, wh, "sessions", days)
    gap_s = cfg.sessionize.gap_minutes * 60
    checked = s.withColumn("first_xor_prev", (F.col("session_seq") == 1) == F.col("prev_item_id").isNull())
    rows = [{"dt": d.isoformat(), "session_rows": n, "clean_rows": c}
            for (d, n), c in zip(_rows(wh, "sessions", days).items(), _rows(wh, "clean/events", days).values())]
    return [
        Frame("sessions", checked, [
            *_columns(SESSION_EVENT, extra=("first_xor_prev",)),
            *_not_null("session_id", "session_seq", "session_start", "event_id"),
            (gxe.ExpectColumnValuesToBeBetween(column="session_seq", min_value=1, max_value=cfg.sessionize.max_events), CRITICAL),
            (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="ts", column_B="session_start", or_equal=True), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="gap_s", min_value=0, max_value=gap_s), CRITICAL),
            (gxe.ExpectColumnValuesToBeInSet(column="first_xor_prev", value_set=[True]), CRITICAL),
        ]),
        _accounting("sessions accounting", spark, rows, [("session_rows", "clean_rows")]),
    ]


def _vocab_max(spark, wh: Warehouse, table: str, idx: str, last: date) -> int:
    from pyspark.sql import functions as F

    days = [d for d in wh.partition_dates(table) if d <= last]
    if not days:
        return 0
    return spark.read.parquet(*wh.existing_partitions(table, days)).agg(F.max(idx)).collect()[0][0] or 0


def sequences_frames(spark: "SparkSession", cfg: Config, days: list[date]) -> list[Frame]:
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    from pipelines.schema import SEQUENCE

    wh = Warehouse(cfg.warehouse)
    items_max = _vocab_max(spark, wh, "vocab/items", "item_idx", days[-1])
    users_max = _vocab_max(spark, wh, "vocab/users", "user_idx", days[-1])
    seq = _read(spark, wh, "sequences", days)
    checked = seq.select(
        "*", F.array_min("item_idx").alias("min_item"), F.array_max("item_idx").alias("max_item"),
        ((F.size("item_idx") == F.col("length")) & (F.size("ts") == F.col("length"))
         & (F.size("event_type") == F.col("length"))).alias("sizes_match"),
        (F.col("n_new") <= F.col("length")).alias("new_within_length"),
        (F.col("n_events") >= F.col("length")).alias("count_covers_length"),
        F.concat_ws("/", F.col("user_idx").cast("string"), F.col("dt").cast("string")).alias("user_day"),
    )
    splits = _read(spark, wh, "splits", days).select(
        "*", F.size("target_idx").alias("targets"), F.array_max("target_idx").alias("max_target"))
    vocab = spark.read.option("basePath", str(wh.table("vocab/items"))).parquet(
        *wh.existing_partitions("vocab/items", [d for d in wh.partition_dates("vocab/items") if d <= days[-1]]))
    frames = [
        Frame("sequences", checked, [
            *_columns(SEQUENCE, extra=("min_item", "max_item", "sizes_match", "new_within_length",
                                       "count_covers_length", "user_day")),
            (gxe.ExpectColumnValuesToBeBetween(column="length", min_value=1, max_value=cfg.sequences.max_length), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="min_item", min_value=1), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="max_item", max_value=items_max), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="user_idx", min_value=1, max_value=users_max), CRITICAL),
            *[(gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[True]), CRITICAL)
              for c in ("sizes_match", "new_within_length", "count_covers_length")],
        ]),
        _unique("sequences", checked, "user_day"),
        Frame("splits", splits, [
            (gxe.ExpectColumnValuesToBeInSet(column="protocol", value_set=["loo", "temporal"]), CRITICAL),
            (gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["valid", "test"]), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="history_len", min_value=1), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="targets", min_value=1), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="max_target", min_value=1, max_value=items_max), CRITICAL),
        ]),
        Frame("vocab/items", vocab.select("item_idx", "domain", "item_id",
                                          F.concat_ws("\u001f", "domain", "item_id").alias("item_key")), [
            (gxe.ExpectColumnValuesToBeUnique(column="item_idx"), CRITICAL),
            (gxe.ExpectColumnValuesToBeUnique(column="item_key"), CRITICAL),
            (gxe.ExpectColumnMaxToBeBetween(column="item_idx", min_value=items_max, max_value=items_max), CRITICAL),
            (gxe.ExpectTableRowCountToEqual(value=items_max), CRITICAL),
        ]),
    ]
    # New-item rate: items first seen on the day among the items active that day.
    sessions = _read(spark, wh, "sessions", days)
    active = {r["dt"]: int(r["n"]) for r in sessions.groupBy("dt").agg(F.countDistinct("domain", "item_id").alias("n")).collect()}
    numbers = {}
    first_day = min(wh.partition_dates("vocab/items"), default=None)
    for d in days:
        m = wh.read_manifest("sequences", f"dt={d.isoformat()}") or {}
        if active.get(d) and d != first_day:  # on the first day every item is new
            numbers[d] = {"new_item_rate": m.get("new_items", 0) / active[d]}
    severity = CRITICAL if cfg.gates.drift == "fail" else WARNING
    rate_rows = [{"dt": d.isoformat(), **v} for d, v in numbers.items()]
    if rate_rows:
        frames.append(Frame("sequences drift", _metrics_frame(spark, rate_rows), [
            (gxe.ExpectColumnValuesToBeBetween(column="new_item_rate", max_value=cfg.gates.max_new_item_rate), severity)]))
    return frames


def graphs_frames(spark: "SparkSession", cfg: Config, days: list[date]) -> list[Frame]:
    from great_expectations import expectations as gxe
    from pyspark.sql import functions as F

    from pipelines.schema import ITEM_TRANSITION, USER_ITEM

    wh = Warehouse(cfg.warehouse)
    items_max = _vocab_max(spark, wh, "vocab/items", "item_idx", days[-1])
    users_max = _vocab_max(spark, wh, "vocab/users", "user_idx", days[-1])
    trans = _read(spark, wh, "graphs/item_transitions", days).withColumn(
        "self_loop", F.col("src_idx") == F.col("dst_idx"))
    ui = _read(spark, wh, "graphs/user_item", days)
    positive = lambda c: (gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True), CRITICAL)  # noqa: E731
    in_vocab = lambda c, top: (gxe.ExpectColumnValuesToBeBetween(column=c, min_value=1, max_value=top), CRITICAL)  # noqa: E731
    trans_checks = [*_columns(ITEM_TRANSITION, extra=("self_loop",)), positive("count"), positive("weight"),
                    in_vocab("src_idx", items_max), in_vocab("dst_idx", items_max)]
    if cfg.graphs.drop_self_loops:
        trans_checks.append((gxe.ExpectColumnValuesToBeInSet(column="self_loop", value_set=[False]), CRITICAL))
    return [
        Frame("graphs/item_transitions", trans, trans_checks),
        Frame("graphs/user_item", ui, [*_columns(USER_ITEM), positive("count"), positive("weight"),
                                       in_vocab("user_idx", users_max), in_vocab("item_idx", items_max),
                                       (gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                                           column_A="last_ts", column_B="first_ts", or_equal=True), CRITICAL)]),
    ]


GATES: dict[str, Callable[["SparkSession", Config, list[date]], list[Frame]]] = {
    "raw": raw_frames,
    "clean": clean_frames,
    "sessions": sessions_frames,
    "sequences": sequences_frames,
    "graphs": graphs_frames,
}
#: The gate that follows each ETL stage.
AFTER_STAGE = {"clean": "clean", "sessionize": "sessions", "sequences": "sequences", "graphs": "graphs"}


@dataclass
class GateReport:
    gate: str
    days: list[date]
    outcomes: list[Outcome]
    seconds: float

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == CRITICAL]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity != CRITICAL]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        span = str(self.days[0]) if len(self.days) == 1 else f"{self.days[0]}..{self.days[-1]}"
        head = (f"gate {self.gate} {span}: {'PASSED' if self.passed else 'FAILED'} — "
                f"{len(self.outcomes) - len(self.failures) - len(self.warnings)}/{len(self.outcomes)} expectations met, "
                f"{len(self.failures)} failed, {len(self.warnings)} warning(s) ({self.seconds:.1f}s)")
        lines = [head]
        lines += [f"  FAILED  {o.line()}" for o in self.failures]
        lines += [f"  WARNING {o.line()}" for o in self.warnings]
        return "\n".join(lines)

    def markdown(self) -> str:
        span = str(self.days[0]) if len(self.days) == 1 else f"{self.days[0]} .. {self.days[-1]}"
        out = [f"# Gate `{self.gate}` — {span}: {'passed' if self.passed else '**FAILED**'}", "",
               "| result | severity | table | expectation | detail |", "| --- | --- | --- | --- | --- |"]
        for o in self.outcomes:
            detail = o.line().split(": ", 2)[-1] if not o.success else ""
            args = ", ".join(f"{k}={v}" for k, v in o.kwargs.items())
            out.append(f"| {'ok' if o.success else 'FAIL'} | {o.severity} | {o.frame} | `{o.expectation}({args})` | "
                       f"{detail.replace('|', '/')} |")
        return "\n".join(out) + "\n"


def run_gate(spark: "SparkSession", cfg: Config, gate: str, days: list[date], *, raise_on_failure: bool = True) -> GateReport:
    """Validate ``gate``'s tables for ``days``; write the results; raise :class:`GateFailed` on a failure."""
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; choose from {list(GATES)}")
    t0 = time.perf_counter()
    report = GateReport(gate, days, validate(GATES[gate](spark, cfg, days)), 0.0)
    report.seconds = time.perf_counter() - t0
    return record_gate(cfg, report, raise_on_failure=raise_on_failure)


def record_gate(cfg: Config, report: GateReport, partition: str = "", *, raise_on_failure: bool = True) -> GateReport:
    """Write a gate's results as ``_gates/stage=S[/partition]/dt=D.json`` and ``.md``; raise on a failure."""
    days = report.days
    key = f"dt={days[0].isoformat()}" if len(days) == 1 else f"dt={days[0].isoformat()}..{days[-1].isoformat()}"
    folder = Warehouse(cfg.warehouse).root / "_gates" / f"stage={report.gate}" / partition
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{key}.json").write_text(json.dumps({
        "gate": report.gate, "days": [d.isoformat() for d in days], "passed": report.passed,
        "seconds": report.seconds, "outcomes": [o.__dict__ for o in report.outcomes]}, indent=2, default=str))
    (folder / f"{key}.md").write_text(report.markdown())
    if raise_on_failure and not report.passed:
        raise GateFailed(report.summary())
    return report


def embeddings_frames(cfg: Config, method: str, day: date) -> list[Frame]:
    """The embedding tables of ``method`` as of ``day`` against what inference said it wrote:
    one row per user and per item of the model (ids present and unique), the model's dimension
    and version on every row, every vector finite and non-zero. Vectors are checked through
    their norms (pandas columns of scalars; a million vectors never become Python lists)."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq
    from great_expectations import expectations as gxe

    wh = Warehouse(cfg.warehouse)
    manifest = wh.read_manifest("infer", f"model={method}/dt={day.isoformat()}")
    if manifest is None:
        raise WarehouseError(f"no embeddings of {method} as of {day} in {wh.root}: run `seqrep infer` first")

    def frame(table: str, ids: list[str]) -> pd.DataFrame:
        t = pq.read_table(wh.table(f"{table}/model={method}") / f"dt={day.isoformat()}",
                          columns=[*ids, "vector", "dim", "model_version", "n_events"])
        vec = t.column("vector").combine_chunks()
        norms = np.linalg.norm(vec.values.to_numpy(zero_copy_only=False).reshape(len(vec), -1), axis=1)
        df = t.drop_columns(["vector"]).to_pandas()
        df["norm"] = np.where(np.isfinite(norms), norms, np.nan)  # NaN: counted as null below
        return df

    def common(rows: int) -> list[tuple["Expectation", str]]:
        return [(gxe.ExpectTableRowCountToEqual(value=rows), CRITICAL),
                (gxe.ExpectColumnValuesToBeInSet(column="dim", value_set=[manifest["dim"]]), CRITICAL),
                (gxe.ExpectColumnValuesToBeInSet(column="model_version", value_set=[manifest["model_version"]]), CRITICAL),
                (gxe.ExpectColumnValuesToNotBeNull(column="norm"), CRITICAL),
                (gxe.ExpectColumnValuesToBeBetween(column="norm", min_value=0, strict_min=True), CRITICAL)]

    users = frame("embeddings/users", ["user_id", "user_idx"])
    items = frame("embeddings/items", ["domain", "item_id", "item_idx"])
    return [
        Frame("embeddings/users", users, common(manifest["users"]) + _not_null("user_id", "user_idx") + [
            (gxe.ExpectColumnValuesToBeUnique(column="user_id"), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="n_events", min_value=1), CRITICAL)]),
        Frame("embeddings/items", items, common(manifest["items"]) + _not_null("item_id", "item_idx") + [
            (gxe.ExpectCompoundColumnsToBeUnique(column_list=["domain", "item_id"]), CRITICAL),
            (gxe.ExpectColumnValuesToBeBetween(column="n_events", min_value=0), CRITICAL)]),
    ]


def run_embeddings_gate(cfg: Config, method: str, day: date, *, raise_on_failure: bool = True) -> GateReport:
    """The gate on ``method``'s embedding tables as of ``day`` (``_gates/stage=embeddings/model=M/``)."""
    t0 = time.perf_counter()
    report = GateReport("embeddings", [day], validate(embeddings_frames(cfg, method, day)), 0.0)
    report.seconds = time.perf_counter() - t0
    return record_gate(cfg, report, f"model={method}", raise_on_failure=raise_on_failure)
