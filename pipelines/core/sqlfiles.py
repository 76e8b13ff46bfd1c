"""The SQL in ``sql/``: loaded by name, run by Spark or DuckDB with bound parameters.

Files use ``:name`` parameter markers (Spark SQL's syntax); for DuckDB they become ``$name``.
Values are always bound by the engine, never formatted into the text.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import InternalError
from pipelines.core.resources import SQL_DIR

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_MARKER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@cache
def load_sql(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise InternalError(f"no SQL file {path} (a broken install?)")
    return path.read_text()


def spark_sql(spark: "SparkSession", name: str, **params: Any) -> "DataFrame":
    return spark.sql(load_sql(name), args=params)


def duckdb_sql(name: str) -> str:
    """The file's text with ``:name`` markers rewritten to DuckDB's ``$name``."""
    return _MARKER.sub(r"$\1", load_sql(name))


def sql_literal(text: str) -> str:
    """A string as a SQL literal, for the one place a value cannot be a parameter: a path inside a
    view's definition (DuckDB binds no parameters there). Quotes are doubled."""
    return "'" + text.replace("'", "''") + "'"
