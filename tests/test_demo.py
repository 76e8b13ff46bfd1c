"""The demo's methods learn: each method of the demo profile (``make demo``), trained on the demo's
synthetic days as its nightly trains it (a full run on the first day, a warm start on each later
one: ``seqrep backfill``), beats both floors of the last day, most-popular and Markov on the same
split: the run report's warning would otherwise greet every new user."""

from __future__ import annotations

import json
from datetime import timedelta

import yaml

from pipelines.cli import main
from pipelines.core.resources import CONFIGS_DIR


def test_every_demo_method_beats_most_popular_and_markov(spark, tmp_path):
    from pipelines.core.config import load_config
    from pipelines.modeling.compare import floors

    profile = yaml.safe_load((CONFIGS_DIR / "demo.yaml").read_text())
    profile.update(warehouse=str(tmp_path / "wh"), privacy={"pseudonymize": False})  # ids do not change learning
    profile["ingest"]["input"] = str(tmp_path / "logs" / "dt={date}")
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(profile))
    cfg = load_config(config)
    first = cfg.synthetic.start_date
    last = first + timedelta(days=cfg.synthetic.days - 1)
    common = ["--config", str(config)]
    assert main(["generate", "--out", str(tmp_path / "logs"), *common]) == 0
    assert main(["backfill", "--from", str(first), "--to", str(last), *common]) == 0

    floor = floors(cfg.warehouse, last, "loo")
    assert set(floor) == {"pop", "markov"} and max(floor.values()) > 0
    for method in cfg.nightly.methods:
        record = json.loads((tmp_path / f"wh/_manifests/stage=publish/model={method}/dt={last}.json").read_text())
        assert record["warm_start_from"]  # trained as the demo trains it
        assert record["test_ndcg@10"] > floor["pop"], (method, record["test_ndcg@10"], floor)
        assert record["test_ndcg@10"] > floor["markov"], (method, record["test_ndcg@10"], floor)
