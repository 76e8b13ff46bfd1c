"""Cross-domain pair runs: a method trained on a view of a pair, how it is named, and which
version of it a configuration gives as of a day (no data is read here).

A model trained on a pair is stored like any other (``models/<method>/<version>``), its version
hashed with the pair and view (``pair_scope``). A run that reads other runs (EMCDR's
``source_run`` and ``target_run``) may name them by method alone: that method's run on the
pair's source (target) view with the config's settings as of the same day, resolved to
``method@version`` before the version is hashed (so it changes with theirs);
``pipelines.modeling.cross_domain.train_on_pair`` trains such runs first.

Published, a :class:`PairRun` (a method on a pair's view, ``cross_domain.methods``) is named
``METHOD.PAIR`` (its entry ``METHOD``: the method's own view) or ``METHOD.VIEW.PAIR`` (its entry
``METHOD:VIEW``): ``seqrep infer``, ``validate
--stage embeddings``, ``publish`` and ``query`` take that name where they take a method; its
user table holds the users of the view, its item table the items its rankings cover (the
target's; a source-view run's, the source's). The names come from the config alone
(``run_names``: the DAG file reads them when it is parsed, without torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import DataError
from pipelines.core.config import PAIR_VIEWS, Config, CrossDomainPair

if TYPE_CHECKING:
    from models.registry import MethodConfig


def find_pair(cfg: Config, name: str) -> CrossDomainPair:
    """The configured pair called ``name``; a clear error naming the configured ones otherwise."""
    for pair in cfg.cross_domain.pairs:
        if pair.name == name:
            return pair
    known = ", ".join(p.name for p in cfg.cross_domain.pairs) or "none (cross_domain.pairs is empty)"
    raise DataError(f"no cross-domain pair {name!r} in the config; pairs: {known}")


def pair_scope(pair: str, view: str) -> str:
    """The data scope of a pair's view (``MethodConfig.version``), e.g. ``pair=a_to_b/view=target``."""
    return f"pair={pair}/view={view}"


#: Parameters that name another run of the pair, and the view that run is on.
RUN_VIEWS = {"source_run": "source", "target_run": "target"}


@dataclass(frozen=True)
class PairRun:
    """A method trained on a view of a pair (the published unit of ``cross_domain.methods``)."""

    pair: str
    method: str
    view: str
    #: Its published name (``run_names``; empty for a run trained by hand, never published).
    name: str = ""

    @property
    def scope(self) -> str:
        return pair_scope(self.pair, self.view)


def ranked_domains(cfg: Config, run: PairRun) -> list[str]:
    """The domain whose items ``run`` ranks and publishes: the target's (a source-view run's: the source's)."""
    pair = find_pair(cfg, run.pair)
    return [pair.source if run.view == "source" else pair.target]


def run_names(cfg: Config) -> list[str]:
    """The published names of ``cross_domain.methods`` on every pair, pair by pair (module docstring)."""
    return [f"{method}.{view}.{pair.name}" if view else f"{method}.{pair.name}"
            for pair in cfg.cross_domain.pairs for method, _, view in (e.partition(":") for e in cfg.cross_domain.methods)]


def pair_runs(cfg: Config) -> list[PairRun]:
    """The runs of ``run_names``."""
    return [parse_run(cfg, name) for name in run_names(cfg)]


def parse_run(cfg: Config, name: str) -> PairRun | None:
    """The pair run a published name stands for (``METHOD.PAIR`` or ``METHOD.VIEW.PAIR``); None
    for a plain method name. The pair must be configured and the method registered."""
    from models.registry import get_method

    if "." not in name:
        return None
    parts = name.split(".")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[1] not in PAIR_VIEWS):
        raise DataError(f"{name!r}: a cross-domain run's name is METHOD.PAIR or METHOD.VIEW.PAIR "
                        f"(VIEW one of {', '.join(PAIR_VIEWS)})")
    method, pair = parts[0], parts[-1]
    find_pair(cfg, pair)
    view = parts[1] if len(parts) == 3 else get_method(method).pair_view
    return PairRun(pair, method, view, name)


def needed_runs(cfg: Config, run: PairRun, sets: list[str] = ()) -> dict[str, PairRun]:
    """The runs ``run`` reads that its parameters name by method alone: {parameter: run}."""
    from models.registry import method_config

    params = method_config(run.method, cfg.methods.get(run.method), list(sets)).params()
    return {key: PairRun(run.pair, ref, view) for key, view in RUN_VIEWS.items()
            if (ref := getattr(params, key, "")) and "@" not in ref}


def run_config(cfg: Config, run: PairRun, day: date, sets: list[str] = ()) -> tuple["MethodConfig", list[str]]:
    """``run``'s configuration as of ``day``, runs named by method resolved to their versions
    (module docstring): (MethodConfig, the sets that resolve them)."""
    from models.registry import method_config

    resolved = [f"model.{key}={need.method}@{run_config(cfg, need, day)[0].version(day, need.scope)}"
                for key, need in needed_runs(cfg, run, sets).items()]
    sets = [*sets, *resolved]
    return method_config(run.method, cfg.methods.get(run.method), sets), sets


def run_folder(cfg: Config, run: PairRun, day: date, sets: list[str] = ()) -> tuple["MethodConfig", Path]:
    """(MethodConfig, the folder of ``run``'s version as of ``day``)."""
    from pipelines.core.warehouse import Warehouse

    mc, _ = run_config(cfg, run, day, sets)
    return mc, Warehouse(cfg.warehouse).model_folder(run.method, mc.version(day, run.scope))
