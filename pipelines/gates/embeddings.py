"""Gate ``embeddings`` (per method): a version's embedding tables of a day against the
warehouse's own tables, not against what inference said it wrote:

- users: exactly the users of the sequences as of the day that have an event on an item the model
  knows (``item_idx <= n_items`` of the model's ``config.json``), each with its id and event count
  as the sequences give them;
- items: exactly the item vocabulary up to the model's training day, each with its domain and id;
- a cross-domain pair run's tables (``METHOD.PAIR``): the users of its view of the pair with an
  event the model knows (``pipelines.modeling.data.pair_users``), and the items of the domain it
  ranks;
- on every row the version's name and one dimension, every vector finite and non-zero (checked
  through the norms: pandas columns of scalars; a million vectors never become Python lists).

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
    """The frames of the module docstring."""
    import numpy as np
    import pyarrow.parquet as pq
    from great_expectations import expectations as gxe

    manifest = wh.read_manifest("infer", wh.infer_key(method, day, version))
    if manifest is None:
        raise WarehouseError(f"no embeddings of {method} version {version} as of {day} in {wh.root}: "
                             "run `seqrep infer` first")
    users, items = expected_rows(wh, method, day, version, cfg)

    def frame(kind: str, ids: list[str], expected: "pd.DataFrame") -> "pd.DataFrame":
        t = pq.read_table(wh.embeddings(kind, method, day, version), columns=[*ids, "vector", "dim", "model_version", "n_events"])
        vec = t.column("vector").combine_chunks()
        norms = np.linalg.norm(vec.values.to_numpy(zero_copy_only=False).reshape(len(vec), -1), axis=1)
        df = t.drop_columns(["vector"]).to_pandas()
        df["norm"] = np.where(np.isfinite(norms), norms, np.nan)  # NaN: counted as null below
        key, fields = ids[-1], ids[:-1] + (["n_events"] if kind == "users" else [])
        known = df[[key, *fields]].merge(expected, on=key, how="left", suffixes=("", "_expected"), indicator=True)
        df["as_in_the_warehouse"] = ((known["_merge"] == "both")
                                     & np.logical_and.reduce([_same(known[f], known[f + "_expected"]) for f in fields])).to_numpy()
        return df

    def common(rows: int) -> list[tuple["Expectation", str]]:
        return [(gxe.ExpectTableRowCountToEqual(value=rows), CRITICAL),
                (gxe.ExpectColumnValuesToBeInSet(column="as_in_the_warehouse", value_set=[True]), CRITICAL),
                (gxe.ExpectColumnValuesToBeInSet(column="dim", value_set=[manifest["dim"]]), CRITICAL),
                (gxe.ExpectColumnValuesToBeInSet(column="model_version", value_set=[version]), CRITICAL),
                (gxe.ExpectColumnValuesToNotBeNull(column="norm"), CRITICAL),
                (gxe.ExpectColumnValuesToBeBetween(column="norm", min_value=0, strict_min=True), CRITICAL)]

    return [
        Frame("embeddings/users", frame("users", ["user_id", "user_idx"], users),
              common(len(users)) + not_null("user_id", "user_idx") + [
                  (gxe.ExpectColumnValuesToBeUnique(column="user_idx"), CRITICAL),
                  (gxe.ExpectColumnValuesToBeBetween(column="n_events", min_value=1), CRITICAL)]),
        Frame("embeddings/items", frame("items", ["domain", "item_id", "item_idx"], items),
              common(len(items)) + not_null("item_id", "item_idx") + [
                  (gxe.ExpectColumnValuesToBeUnique(column="item_idx"), CRITICAL),
                  (gxe.ExpectColumnValuesToBeBetween(column="n_events", min_value=0), CRITICAL)]),
    ]


def _same(a: "pd.Series", b: "pd.Series") -> "pd.Series":
    return (a == b) | (a.isna() & b.isna())


def expected_rows(wh: Warehouse, method: str, day: date, version: str,
                  cfg: Config | None = None) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """The users (``user_idx``, ``user_id``, ``n_events``) and items (``item_idx``, ``domain``,
    ``item_id``) a version's tables of ``day`` must hold, from the sequences (a pair run's: its
    pair's) and the vocabulary."""
    import pandas as pd

    from models.checkpoint import read_json
    from pipelines.core import warehouse as layout
    from pipelines.core.sqlfiles import duckdb_sql
    from pipelines.modeling.pair_runs import find_pair, parse_run, ranked_domains
    from pipelines.modeling.data import connect, pair_users

    model = read_json(wh.model_folder(method, version) / "config.json")
    trained, n = date.fromisoformat(str(model["day"])), int(model["n_items"])
    run = parse_run(cfg, method) if cfg is not None else None
    domains = ranked_domains(cfg, run) if run is not None else None
    with connect(wh, {"sequences": layout.SEQUENCES, "vocab_items": layout.VOCAB_ITEMS}) as con:
        if run is None:
            users = con.sql(f"SELECT user_idx, user_id, n_events FROM ({duckdb_sql('sequences_asof')}) "
                            "WHERE list_min(item_idx) <= $n", params={"asof": day, "n": n}).df()
        items = con.sql("SELECT item_idx, domain, item_id FROM vocab_items WHERE dt <= $trained AND item_idx <= $n "
                        "AND ($domains IS NULL OR list_contains($domains, domain))",
                        params={"trained": trained, "n": n, "domains": domains}).df()
    if run is not None:
        rows = pd.DataFrame(pair_users(wh.root, day, find_pair(cfg, run.pair), run.view, n))
        users = rows.loc[rows["n_known"] > 0, ["user_idx", "user_id", "n_events"]].reset_index(drop=True)
    return users, items
