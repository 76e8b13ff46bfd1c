"""Ingest: the parquet adapter's mapping, and clear errors or quarantine for bad input."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.etl import clean, ingest
from pipelines.cli import main
from pipelines.etl.ingest import InputError
from pipelines.core.warehouse import Warehouse

D = date(2024, 3, 1)
MAPPING = {"user_id": "uid", "item_id": "sku", "event_type": "action", "ts": "t", "value": "price"}


def _cfg(cfg, **ingest_over):
    return cfg.with_overrides(ingest={"source": "parquet", "columns": MAPPING, "ts_unit": "ms",
                                      "event_type_map": {"page_view": "view"}, **ingest_over})


def _log(path, **cols):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path


T0 = 1709251200000  # 2024-03-01 00:00:00 UTC in ms


def test_mapping_event_ids_and_item_metadata(spark, cfg, tmp_path):
    logs = tmp_path / "logs"
    _log(logs / "a.parquet", uid=["ü-1", "ü-1", "x"], sku=["ŝku", "b", "c"], action=["page_view", "buy", "view"],
         t=[T0 + 1000, T0 + 2000, T0 + 3000], price=[1.5, 2.0, None])
    items = _log(tmp_path / "items" / "i.parquet", item_id=["ŝku", "b"], title=["Ŝ Title", "B"], category=["c1", "c2"])
    cfg = _cfg(cfg, items=str(items.parent))
    m = ingest.run(spark, cfg, input_path=logs, domain="shop")
    assert (m["rows_in"], m["rows_out"], m["rows_quarantined"], m["items"]) == (3, 3, 0, 2)
    wh = Warehouse(cfg.warehouse)
    rows = sorted(spark.read.parquet(str(wh.partition("raw/events/source=parquet", D))).collect(), key=lambda r: r.ts)
    assert [r.user_id for r in rows] == ["ü-1", "ü-1", "x"] and rows[0].item_id == "ŝku"
    assert [r.event_type for r in rows] == ["view", "buy", "view"] and rows[0].domain == "shop"
    assert len({r.event_id for r in rows}) == 3 and all(len(r.event_id) == 24 for r in rows)
    again = ingest.run(spark, cfg, input_path=logs, domain="shop")
    assert again["days"] == m["days"], "re-ingesting gives the same rows and event ids"
    meta = spark.read.parquet(str(wh.table("items/source=parquet"))).where("item_id = 'ŝku'").collect()[0]
    assert meta.title == "Ŝ Title" and meta.tags == ["c1"]


def test_row_faults_are_quarantined_with_their_reason(spark, cfg, tmp_path):
    logs = tmp_path / "logs"
    _log(logs / "a.parquet", uid=["u", "u", "u"], sku=["a", "b", "c"], action=["view"] * 3,
         t=["2024-03-01T10:00:00Z", "yesterday", "2024-03-01T11:00:00Z"], price=["1", "2", "cheap"])
    cfg = _cfg(cfg, columns=MAPPING)
    # Bulk import: a row without a usable time cannot be placed on a day.
    m = ingest.run(spark, cfg, input_path=logs)
    assert (m["rows_in"], m["rows_out"], m["rows_quarantined"]) == (3, 2, 1)
    wh = Warehouse(cfg.warehouse)
    q = spark.read.parquet(str(wh.table("quarantine/ingest/source=parquet"))).collect()
    assert len(q) == 1 and "yesterday" in q[0].reason and "yesterday" in q[0].raw and q[0].source_file.endswith("a.parquet")
    clean.run(spark, cfg, [D])
    cq = spark.read.parquet(str(wh.partition("quarantine/events", D))).collect()
    assert [(r.item_id, r.reason, r.parse_error) for r in cq] == [("c", "parse_error", "value: not a number: cheap")]
    # Nightly path (--date): every row lands in the day; clean judges it.
    m = ingest.run(spark, cfg, input_path=logs, day=D, name="nightly")
    assert (m["rows_in"], m["rows_out"]) == (3, 3)
    clean.run(spark, cfg, [D])
    reasons = sorted(r.reason for r in spark.read.parquet(str(wh.partition("quarantine/events", D))).collect())
    # Both sources now hold 'a' (the same content, so the same event id) and the bad rows.
    assert reasons == ["duplicate", "parse_error", "parse_error", "parse_error"]
    mc = wh.read_manifest("clean", f"dt={D}")
    assert (mc["rows_in"], mc["rows_out"], mc["rows_quarantined"]) == (5, 1, 4)


@pytest.mark.parametrize("case, message", [
    ("missing_column", r"b.parquet has no column 'sku' \(mapped from 'item_id'\)"),
    ("renamed_column", r"has no column 'uid' \(mapped from 'user_id'\); its columns are \['user'"),
    ("corrupt", r"c.parquet is not a readable Parquet file"),
    ("empty_file", r"e.parquet is empty \(0 bytes\)"),
    ("mixed_types", r"column 't' has type int64 in .*a.parquet but string in .*m.parquet"),
    ("no_files", r"no input files under"),
    ("missing_input", r"does not exist"),
])
def test_file_faults_are_clear_errors_and_write_nothing(spark, cfg, tmp_path, case, message):
    logs = tmp_path / "logs"
    good = dict(uid=["u"], sku=["a"], action=["view"], t=[T0], price=[1.0])
    if case != "no_files":
        _log(logs / "a.parquet", **good)
    if case == "missing_column":
        _log(logs / "b.parquet", **{k: v for k, v in good.items() if k != "sku"})
    elif case == "renamed_column":
        (logs / "a.parquet").unlink()
        _log(logs / "a.parquet", user=["u"], **{k: v for k, v in good.items() if k != "uid"})
    elif case == "corrupt":
        (logs / "c.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 50)
    elif case == "empty_file":
        (logs / "e.parquet").write_bytes(b"")
    elif case == "mixed_types":
        _log(logs / "m.parquet", **{**good, "t": ["2024-03-01T00:00:00Z"]})
    elif case == "no_files":
        logs.mkdir()
    path = tmp_path / "nowhere" if case == "missing_input" else logs
    with pytest.raises(InputError, match=message):
        ingest.run(spark, _cfg(cfg), input_path=path, day=D)
    assert not Warehouse(cfg.warehouse).table("raw").exists(), "nothing written"


def test_cli_reports_bad_input_without_a_traceback(cfg, tmp_path, capsys, spark):
    code = main(["ingest", "--source", "parquet", "--input", str(tmp_path / "nothing"), "--warehouse", str(cfg.warehouse)])
    err = capsys.readouterr().err
    assert code == 2 and "seqrep ingest: error: parquet: input" in err and "does not exist" in err
    assert "Traceback" not in err
    code = main(["etl", "--date", "2024-03-01", "--stages", "sessionize", "--warehouse", str(cfg.warehouse)])
    err = capsys.readouterr().err
    assert code == 2 and "clean/events has no partition for ['2024-03-01']; run clean first" in err
