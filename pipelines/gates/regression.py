"""Gate ``regression`` (per method, nightly): no publish when the day's version ranks worse.

It passes when the new version's test NDCG@10 is at least ``(1 - nightly.max_ndcg_drop)`` x the
last published version's; exactly at that floor passes. A first version (nothing published
before) always passes. Results: ``_gates/stage=regression/model=M/dt=D.{json,md}``.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from pipelines.core.config import Config
from pipelines.core.warehouse import Warehouse
from pipelines.gates.check import CRITICAL, GateReport, Outcome, record_gate


def run_regression_gate(cfg: Config, method: str, day: date, *, wh: Warehouse | None = None) -> dict[str, Any]:
    """Judge the day's version of ``method`` (module docstring); raises ``GateFailed``."""
    from models.registry import method_config
    from pipelines.modeling.metrics import ndcg_at_10

    t0 = time.perf_counter()
    wh = wh or Warehouse(cfg.warehouse)
    version = method_config(method, cfg.methods.get(method)).version(day)
    new = ndcg_at_10(wh, method, day, version)
    last = wh.last_published(method, day)
    drop = cfg.nightly.max_ndcg_drop
    floor = None if last is None else (1 - drop) * last["test_ndcg@10"]
    ok = floor is None or new >= floor - 1e-12  # exactly at the floor passes (whatever the float rounding)
    outcome = Outcome(
        frame=f"metrics/method={method}", expectation="NdcgAtLeastPublished",
        kwargs={"version": version, "published": last and last["model_version"], "max_drop": drop},
        severity=CRITICAL, success=ok,
        observed=(f"test NDCG@10 {new:.4f}" + ("" if floor is None else
                  f" vs floor {floor:.4f} = (1 - {drop}) x {last['test_ndcg@10']:.4f} of {last['model_version']} "
                  f"(live since {last['asof']})")))
    record_gate(wh, GateReport("regression", [day], [outcome], time.perf_counter() - t0), f"model={method}")
    return {"version": version, "test_ndcg@10": new, "floor": floor}
