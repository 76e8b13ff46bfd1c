"""Warm starts (vocabularies grow), the regression gate at its threshold, the failure record and
the report on crafted cases; the DAG and backfill on real data are in test_dag.py."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from models.checkpoint import load_grown, save_model
from models.registry import method_config
from models.registry import build

DAY = date(2024, 1, 10)


def test_warm_start_keeps_old_rows_and_initializes_new_ones(tmp_path):
    mc = method_config("sasrec", sets=["model.dim=8", "model.max_len=5", "model.num_heads=1"])
    old = build(mc, n_items=10)
    with torch.no_grad():
        for p in old.parameters():
            p.add_(1.0)  # "trained": every weight differs from a fresh model's
    save_model(old, tmp_path)
    new = build(mc, n_items=14)
    fresh = build(mc, n_items=14)
    grown = load_grown(new, tmp_path)
    assert grown, "the item embedding grew"
    old_state, new_state, fresh_state = old.state_dict(), new.state_dict(), fresh.state_dict()
    for key, value in new_state.items():
        if key in grown:
            rows = old_state[key].shape[0]
            assert torch.equal(value[:rows], old_state[key]), key  # old indexes keep their rows
            assert torch.equal(value[rows:], fresh_state[key][rows:]), key  # new ones: a fresh init
        else:
            assert torch.equal(value, old_state[key]), key
    other = build(method_config("sasrec", sets=["model.dim=16", "model.max_len=5", "model.num_heads=1"]), n_items=14)
    with pytest.raises(ValueError, match="only a vocabulary's rows can grow"):
        load_grown(other, tmp_path)


def _published(cfg, ndcg: float, day: date) -> None:
    from pipelines.core.warehouse import Warehouse

    Warehouse(cfg.warehouse).write_manifest("publish", f"model=sasrec/dt={day}", {
        "model_version": f"{day}-00000000", "test_ndcg@10": ndcg, "asof": str(day), "full_day": str(day)})


def _metrics(cfg, ndcg: float) -> None:
    from pipelines.modeling.metrics import write_metrics
    from pipelines.nightly.steps import _version_folder

    version = _version_folder(cfg, "sasrec", DAY).name
    write_metrics(cfg.warehouse, [{"method": "sasrec", "dataset": "x", "protocol": "loo", "split": "test",
                                   "metric": "ndcg", "k": 10, "value": ndcg, "users": 5, "model_version": version,
                                   "seed": 42, "dt": DAY}])


@pytest.mark.parametrize("new,passes", [(0.18, True), (0.1799999, False), (0.5, True), (0.0, False)])
def test_regression_gate_at_its_threshold(cfg, new, passes):
    """Floor = (1 - 0.1) x 0.2 = 0.18: exactly the floor passes, just under it fails; the last
    published version is the latest one before the day (a later record is never read)."""
    from pipelines.gates.check import GateFailed
    from pipelines.nightly.steps import regression_gate

    _published(cfg, 0.2, date(2024, 1, 8))
    _published(cfg, 0.9, date(2024, 1, 7))  # older: not the one compared with
    _published(cfg, 0.01, date(2024, 1, 11))  # after the day: never read
    _metrics(cfg, new)
    gate = Path(cfg.warehouse) / "_gates/stage=regression/model=sasrec" / f"dt={DAY}"
    if passes:
        assert regression_gate(cfg, "sasrec", DAY)["floor"] == pytest.approx(0.18)
    else:
        with pytest.raises(GateFailed, match="floor 0.1800"):
            regression_gate(cfg, "sasrec", DAY)
    assert json.loads(gate.with_suffix(".json").read_text())["passed"] is passes
    assert "2024-01-08-00000000" in gate.with_suffix(".md").read_text()


def test_regression_gate_passes_the_first_version(cfg):
    from pipelines.nightly.steps import regression_gate

    _metrics(cfg, 0.0)
    assert regression_gate(cfg, "sasrec", DAY)["floor"] is None


def test_failure_callback_writes_the_process_reason(tmp_path, monkeypatch):
    from pipelines.nightly.failures import REASON_ENV, reason_file, record_failure, write_reason

    wh = tmp_path / "wh"
    path = reason_file(str(wh), "2024-01-10", "sasrec.regression_gate")
    monkeypatch.setenv(REASON_ENV, str(path))
    write_reason("seqrep validate: stopped by a quality gate\n  test NDCG@10 0.01 < floor 0.18")
    context = {"ti": SimpleNamespace(task_id="sasrec.regression_gate", try_number=1, log_url="http://x/log"),
               "params": {"warehouse": str(wh)}, "data_interval_start": datetime(2024, 1, 10, tzinfo=timezone.utc),
               "exception": RuntimeError("Bash command failed. The command returned a non-zero exit code 1.")}
    record_failure(context)
    record = json.loads(path.with_suffix(".json").read_text())
    assert "floor 0.18" in record["reason"] and record["task"] == "sasrec.regression_gate" and record["try"] == 1
    path.unlink()  # no reason from the process: the exception Airflow saw
    record_failure(context)
    assert "non-zero exit code" in json.loads(path.with_suffix(".json").read_text())["reason"]


def test_report_of_an_empty_day_and_of_a_failure(cfg):
    from pipelines.nightly.report import write_report

    page = write_report(cfg, DAY)
    assert page.name == "index.html" and "Stages" in page.read_text() and "none" in page.read_text()
    runs = Path(cfg.warehouse) / "_runs" / f"dt={DAY}"
    runs.mkdir(parents=True)
    (runs / "clean.json").write_text(json.dumps({"task": "clean", "reason": "seqrep etl: error: <bad> input"}))
    text = write_report(cfg, DAY).read_text()
    assert "&lt;bad&gt; input" in text and "<bad>" not in text  # escaped
    assert len(list(page.parent.parent.iterdir())) == 1  # replaced, not duplicated
