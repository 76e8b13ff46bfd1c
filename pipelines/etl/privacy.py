"""Pseudonymization at ingest, as Spark columns (``pipelines/core/privacy.py`` has the scheme).

The keyed hash runs in a pandas UDF: the key travels inside the UDF's serialized closure, so it
never appears in a query plan, an ``explain`` or Spark's event log, as a literal of a native
``sha2`` expression would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.core.privacy import pseudonymizer
from pipelines.etl.clean import BLANK

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

#: Columns of parsed events that can hold or embed a person's id: the user id, and a source's
#: own event and session ids (``"<user>-<n>"`` is a common shape). Item ids are not personal.
PERSONAL_COLUMNS = ("user_id", "event_id", "session_hint")


def pseudonym_column(col: "Column", key: bytes) -> "Column":
    """``col``'s values replaced by their pseudonyms; null and blank values stay as they are (they
    identify no one, and clean quarantines them as ``null_id`` by that rule)."""
    from pyspark.sql import functions as F

    hash_one = pseudonymizer(key)

    @F.pandas_udf("string")
    def pseudonyms(ids):  # a pandas Series of str (None for null)
        return ids.map(hash_one, na_action="ignore")

    return F.when(col.isNull() | col.rlike(BLANK), col).otherwise(pseudonyms(col))


def pseudonymize(events: "DataFrame", key: bytes) -> "DataFrame":
    """Parsed events with every personal column pseudonymized and the raw text withheld (an
    unplaceable row's raw line holds the plain user id)."""
    from pyspark.sql import functions as F

    out = events
    for name in PERSONAL_COLUMNS:
        out = out.withColumn(name, pseudonym_column(F.col(name), key))
    return out.withColumn("raw", F.lit(None).cast("string"))
