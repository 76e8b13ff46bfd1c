"""The one SparkSession factory, and the atomic daily-partition writer every stage uses."""

from __future__ import annotations

import os
import shutil
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.core.config import SparkConfig
from pipelines.core.errors import WarehouseError
from pipelines.core.warehouse import Warehouse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


#: A Spark Connect server's URL in the environment makes every session its client (pyspark's
#: own variable; ``spark.remote`` of the config does the same).
REMOTE_ENV = "SPARK_REMOTE"


def remote_url(cfg: SparkConfig) -> str | None:
    """The Spark Connect server this process is a client of (None: it runs its own driver)."""
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # launched by spark-submit: the submit command decides
        return None
    return os.environ.get(REMOTE_ENV) or cfg.remote


def spark_settings(cfg: SparkConfig, *, own_driver: bool = True) -> dict[str, str]:
    """Every ``spark.*`` setting of a seqrep driver: a session's own, or a Connect server's;
    ``own_driver=False`` (under spark-submit) leaves out the driver's class path."""
    from pipelines.etl import localfs

    return {
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": f"-Duser.timezone=UTC -XX:MaxDirectMemorySize={cfg.max_direct_memory}",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        # A day's ETL plans a few hundred small queries, most of them again the next day: keep
        # their generated classes (626 distinct over 4 days of the test slice) instead of
        # compiling 2,138 times with the default cache of 100 (17-20% less ETL time, measured).
        "spark.sql.codegen.cache.maxEntries": "5000",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.sources.partitionColumnTypeInference.enabled": "true",
        # Daily partitions are many small folders: list them in the driver, not with a Spark job.
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        # Small pandas frames (gate metrics) go to the JVM as Arrow, without starting Python workers.
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Parquet written by pandas / pyarrow stores times in nanoseconds, a type Spark cannot read
        # as a timestamp: read them as epoch longs (the parquet adapter converts them).
        "spark.sql.legacy.parquet.nanosAsLong": "true",
        # The local file system without a chmod per file (a local master's own driver only).
        **(localfs.spark_settings(cfg.master) if own_driver else {}),
        **cfg.conf,
    }


def get_spark(cfg: SparkConfig) -> "SparkSession":
    """A SparkSession configured from ``cfg``.

    Under ``spark-submit`` (Airflow's SparkSubmitOperator, a cluster) the master and memory
    come from the submit command; as a Spark Connect client (``remote_url``) from the server,
    which ``seqrep spark-server start`` starts with these same settings, and the session sets
    its own runtime ones (shuffle partitions...); otherwise from ``cfg``. Timestamps are UTC
    everywhere.
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # host name does not resolve to loopback
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # glibc gives each JVM thread its own malloc arena; capping them, and the JVM's direct
    # buffers (spark.max_direct_memory), keeps the driver's memory near heap + 1-2 GB.
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    from pyspark.sql import SparkSession

    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit chose the master and the driver
    settings = spark_settings(cfg, own_driver=not submitted)
    remote = remote_url(cfg)
    if remote:
        spark = SparkSession.builder.remote(remote).getOrCreate()
        for key, value in settings.items():  # static ones are the server's, set when it started
            if spark.conf.isModifiable(key) and spark.conf.get(key, None) != value:
                spark.conf.set(key, value)
        return spark
    builder = SparkSession.builder.appName("seqrep")
    if not submitted:  # this process starts the JVM
        builder = builder.master(cfg.master).config("spark.driver.memory", cfg.driver_memory)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_partitions(spark: "SparkSession", wh: Warehouse, table: str, days: list[date]) -> "DataFrame":
    """Rows of the given daily partitions of a table, with their ``dt`` column."""
    paths = wh.existing_partitions(table, days)
    if not paths:
        raise WarehouseError(f"{wh.table(table)}: no partition for {days[0]}..{days[-1]}")
    return read_paths(spark, wh, paths)


def read_paths(spark: "SparkSession", wh: Warehouse, paths: list[str]) -> "DataFrame":
    """Rows of partition folders with their partition columns (``dt``, ``source``...). Inside a
    run, some may be the run's and some live: one read per table root, unioned."""
    groups: dict[Path, list[str]] = {}
    for p in paths:
        groups.setdefault(wh.spark_base(p), []).append(str(p))
    frames = [spark.read.option("basePath", str(base)).parquet(*ps) for base, ps in groups.items()]
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


#: Days per shuffle partition from which a range is written one task per day (``write_daily``);
#: not tuned: ml-100k's 213 days and a 4,000-day log are far above it, 5 days of 10M events below.
DAYS_PER_TASK = 8


def write_daily(
    df: "DataFrame", wh: Warehouse, table: str, days: list[date] | None
) -> dict[date, dict[str, object]]:
    """Replace the partitions ``table/dt=D`` for every D in ``days`` with the rows of ``df``.

    ``df`` must have a ``dt`` date column whose values lie in ``days``. A day without rows gets an
    empty partition, so a rerun of a day that lost all its rows still replaces the old one.
    ``days=None`` means the days that have rows (a bulk import).
    Returns ``{day: {"rows": n, "checksum": s}}``, where the checksum is an order-independent
    sum of row hashes: two writes of the same rows have the same checksum.
    """
    from pyspark.sql import functions as F

    staged = wh.staging_dir()
    try:
        if days and len(days) >= DAYS_PER_TASK * int(df.sparkSession.conf.get("spark.sql.shuffle.partitions")):
            # Each task writes a file for every day it holds rows of: over a long range, that is
            # tasks x days small files, which every later read opens one by one. With many days
            # per task, one task per day (one file per day) pays a shuffle and loses no
            # parallelism; a few big days (bench/etl.py's 10M events over 5) keep their plan.
            df = df.repartition("dt")
        df.write.partitionBy("dt").parquet(str(staged))
        written = {date.fromisoformat(p.name[3:]) for p in staged.glob("dt=*")}
        days = sorted(written) if days is None else days
        stray = written - set(days)
        if stray:
            raise WarehouseError(f"{table}: rows for days outside the run: {sorted(stray)[:5]}")
        stats: dict[date, dict[str, object]] = {d: {"rows": 0, "checksum": "0"} for d in days}
        if written:
            back = df.sparkSession.read.option("basePath", str(staged)).parquet(str(staged))
            cols = [c for c in back.columns if c != "dt"]
            agg = back.groupBy("dt").agg(
                F.count(F.lit(1)).alias("rows"),
                F.sum(F.xxhash64(*cols).cast("decimal(38,0)")).alias("checksum"),
            )
            for row in agg.collect():
                stats[row["dt"]] = {"rows": int(row["rows"]), "checksum": str(row["checksum"])}
        empty: Path | None = None  # one zero-row file, copied into every day without rows
        for d in days:
            part = staged / f"dt={d.isoformat()}"
            if not part.exists():
                empty = empty or _write_empty(df, staged / "_empty")
                part.mkdir(parents=True)
                shutil.copyfile(empty, part / empty.name)
            wh.swap_in(part, wh.table(table) / f"dt={d.isoformat()}")
        return stats
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def write_table(df: "DataFrame", wh: Warehouse, table: str) -> int:
    """Replace a whole (undated) table atomically; returns its row count."""
    staged = wh.staging_dir()
    try:
        df.write.parquet(str(staged))
        if not any(staged.glob("*.parquet")):
            _write_empty(df, staged / "empty")
        rows = df.sparkSession.read.parquet(str(staged)).count()
        wh.swap_in(staged, wh.table(table))
        return rows
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _write_empty(df: "DataFrame", part: Path) -> Path:
    """A zero-row Parquet file with the frame's schema (minus ``dt``) in the folder ``part``; its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    schema = StructType([f for f in df.schema.fields if f.name != "dt"])
    part.mkdir(parents=True, exist_ok=True)
    arrow_schema = to_arrow_schema(schema, timestamp_utc=True)
    path = part / "part-00000-empty.parquet"
    pq.write_table(pa.Table.from_batches([], schema=arrow_schema), path)
    return path
