"""Gate ``embeddings`` (per method): the embedding tables of a day against what inference said it
wrote: one row per user and per item of the model (ids present and unique), the model's
dimension and version on every row, every vector finite and non-zero. Vectors are checked
through their norms (pandas columns of scalars; a million vectors never become Python lists).
Results: ``_gates/stage=embeddings/model=M/version=V/dt=D.{json,md}``."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from pipelines.core.config import Config
from pipelines.core.errors import WarehouseError
from pipelines.core.warehouse import Warehouse
from pipelines.gates.check import CRITICAL, Frame
from pipelines.gates.expect import not_null

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.expectations import Expectation


def frames(cfg: Config, method: str, day: date, version: str, wh: Warehouse) -> list[Frame]:
    """The frames of the module docstring (``infer_manifest`` gives the rows inference wrote)."""
    import numpy as np
    import pyarrow.parquet as pq
    from great_expectations import expectations as gxe

    manifest = wh.read_manifest("infer", wh.infer_key(method, day, version))
    if manifest is None:
        raise WarehouseError(f"no embeddings of {method} version {version} as of {day} in {wh.root}: "
                             "run `seqrep infer` first")

    def frame(kind: str, ids: list[str]) -> "pd.DataFrame":
        t = pq.read_table(wh.embeddings(kind, method, day, version), columns=[*ids, "vector", "dim", "model_version", "n_events"])
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

    return [
        Frame("embeddings/users", frame("users", ["user_id", "user_idx"]),
              common(manifest["users"]) + not_null("user_id", "user_idx") + [
                  (gxe.ExpectColumnValuesToBeUnique(column="user_id"), CRITICAL),
                  (gxe.ExpectColumnValuesToBeBetween(column="n_events", min_value=1), CRITICAL)]),
        Frame("embeddings/items", frame("items", ["domain", "item_id", "item_idx"]),
              common(manifest["items"]) + not_null("item_id", "item_idx") + [
                  (gxe.ExpectCompoundColumnsToBeUnique(column_list=["domain", "item_id"]), CRITICAL),
                  (gxe.ExpectColumnValuesToBeBetween(column="n_events", min_value=0), CRITICAL)]),
    ]
