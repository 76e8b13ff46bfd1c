"""``seqrep config show``: every setting with the layer it came from (defaults < file < env < flags)."""

from __future__ import annotations

import json

import pytest

from pipelines.cli import main


def test_each_setting_names_its_layer(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("warehouse: wh\nsessionize: {gap_minutes: 10}\nmethods: {sasrec: {model: {dim: 32}}}\n")
    monkeypatch.setenv("SEQREP_SPARK_MASTER", "local[1]")
    monkeypatch.delenv("SEQREP_WAREHOUSE", raising=False)
    assert main(["config", "show", "--config", str(cfg), "--json"]) == 0
    got = {r["setting"]: (r["value"], r["from"]) for r in json.loads(capsys.readouterr().out)}
    assert got["warehouse"] == (str(tmp_path / "wh"), f"file {cfg}")  # relative to the file
    assert got["sessionize.gap_minutes"] == (10, f"file {cfg}")
    assert got["sessionize.max_events"][1] == "default"
    assert got["spark.master"] == ("local[1]", "env SEQREP_SPARK_MASTER")
    assert got["methods.sasrec.model.dim"] == (32, f"file {cfg}")
    assert main(["config", "show", "--config", str(cfg), "--warehouse", "/elsewhere", "--json"]) == 0
    assert {r["setting"]: r["from"] for r in json.loads(capsys.readouterr().out)}["warehouse"] == "--warehouse"
    # a method: its YAML < the config's methods.<name> < --set
    assert main(["config", "show", "--config", str(cfg), "--method", "sasrec", "--set", "train.seed=3", "--json"]) == 0
    got = {r["setting"]: (r["value"], r["from"]) for r in json.loads(capsys.readouterr().out)}
    assert got["model.dim"] == (32, "config methods.sasrec") and got["train.seed"] == (3, "--set")
    assert got["model.max_len"] == (50, "file sasrec.yaml") and got["train.weight_decay"] == (0.0, "default")


def test_unknown_keys_stay_errors(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sessionize: {gap_minute: 10}\n")
    assert main(["config", "show", "--config", str(cfg)]) == 2
    assert "sessionize.gap_minute" in capsys.readouterr().err
    assert main(["config", "show", "--method", "sasrec", "--set", "model.nope=1"]) == 2
    with pytest.raises(SystemExit):
        main(["config", "show", "--method"])
