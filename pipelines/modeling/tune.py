"""Hyper-parameter search (``seqrep tune``): Optuna over a method's declared search space.

Each method declares what may be searched beside its defaults, in ``models/configs/<method>.yaml``
(or a file of the same form given with ``--space``)::

    search:
      model.dim: [32, 64, 128]                        # one of these values
      model.dropout: {low: 0.0, high: 0.5}            # a float in the range
      model.num_layers: {low: 1, high: 3}             # an int (both bounds ints)
      train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}

The first trial of a new study is the run's configuration as it stands (when its values lie in
the space), so the best trial is never worse than it on validation. A trial trains the method on
the day's data (loaded once for the whole study) with the sampled
settings over the run's configuration (``methods.<name>`` of the config file, then ``--set``),
and its score is the trained model's validation NDCG@10: the test split is never read, so the
selection is on validation only. Optuna's TPE sampler (Bergstra et al., NeurIPS 2011) proposes
the settings; its median pruner stops a trial whose validation NDCG@10 after an epoch (from the
``prune_after``-th, default 10) is below the median of the earlier trials' at that epoch. A
trial that fails (a combination the model rejects,
a loss that diverges, memory) is recorded as failed with its reason, and the study goes on.

The study lives in SQLite under ``tuning/method=M/study=S/study.db``: the same command run again
continues it (``--trials`` is the study's total; a trial cut short by a kill is recorded as
failed, "interrupted"). Beside it: ``best.yaml``, the run's config file with the best trial's
settings under ``methods.<name>`` (``seqrep train --config best.yaml``, and the nightly with it as
``SEQREP_CONFIG``), ``trials.csv``, ``summary.json`` (what the run report shows) and Optuna's
plots (``history.png``, ``importances.png``).
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from models.data import SequenceData
from models.registry import TrainParams, config_file, get_method, method_config
from pipelines.core import locks
from pipelines.core.config import Config
from pipelines.core.errors import UsageError
from pipelines.core.warehouse import Warehouse

if TYPE_CHECKING:
    import optuna

Echo = Callable[[str], None]

#: Settings a search may not vary: they define what is compared (the split, the protocol, the
#: seed of every trial) or only where it runs.
FIXED = {"train.seed", "train.protocol", "train.valid_split", "train.mask_seen", "train.device", "train.threads",
         "train.eval_batch_size", "train.amp"}


@dataclass(frozen=True)
class Dimension:
    """One searched setting: ``choices``, or a range ``low``..``high`` (ints when both bounds are)."""

    key: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    def suggest(self, trial: "optuna.Trial") -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=int(self.step or 1))
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log, step=self.step)

    def spec(self) -> Any:
        """As written in the YAML (what a study records to refuse a changed space on resume)."""
        if self.choices is not None:
            return list(self.choices)
        return {k: v for k, v in (("low", self.low), ("high", self.high), ("log", self.log), ("step", self.step)) if v}


def search_space(method: str, path: Path | None = None) -> list[Dimension]:
    """The ``search:`` mapping of ``path`` (default: the method's defaults YAML), checked: every key
    a setting of the method, none of ``FIXED``, every range well formed."""
    cls = get_method(method)
    source = path or config_file(method)
    tree = (yaml.safe_load(source.read_text()) or {}) if source is not None else {}
    search = tree.get("search") if isinstance(tree, dict) else None
    where = source.name if source is not None else f"method {method}"
    if not search:
        raise UsageError(f"{where} declares no search space (a `search:` mapping of settings to ranges); "
                         f"add one, or give a file with --space")
    known = {"model": set(cls.Params.model_fields), "train": set(TrainParams.model_fields)}
    return [_dimension(where, key, spec, known) for key, spec in search.items()]


def _dimension(where: str, key: str, spec: Any, known: dict[str, set[str]]) -> Dimension:
    section, _, name = str(key).partition(".")
    if name not in known.get(section, ()):
        raise UsageError(f"{where}: search key {key!r} is not a setting (model.<name> or train.<name> of the method)")
    if key in FIXED:
        raise UsageError(f"{where}: {key} cannot be searched: it fixes what the trials are compared on")
    if isinstance(spec, list) and spec:
        return Dimension(key, choices=tuple(spec))
    if isinstance(spec, dict) and {"low", "high"} <= set(spec) and set(spec) <= {"low", "high", "log", "step"}:
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
            raise UsageError(f"{where}: search {key}: low and high must be numbers with low < high (got {spec})")
        if spec.get("log") and low <= 0:
            raise UsageError(f"{where}: search {key}: a log range needs low > 0 (got {low})")
        return Dimension(key, low=low, high=high, log=bool(spec.get("log")), step=spec.get("step"))
    raise UsageError(f"{where}: search {key}: expected a list of values or {{low, high[, log, step]}} (got {spec!r})")


def _with_params(base: dict[str, dict[str, Any]] | None, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The run config's ``methods.<name>`` with a trial's settings on top."""
    tree = copy.deepcopy(base or {})
    for key, value in params.items():
        section, _, name = key.partition(".")
        tree.setdefault(section, {})[name] = value
    return tree


@dataclass
class Tuning:
    """One ``seqrep tune`` run: what it trains, on which data, where its study lives."""

    cfg: Config
    method: str
    day: date
    space: list[Dimension]
    sets: list[str]
    data: SequenceData
    folder: Path
    echo: Echo = print

    def current(self) -> dict[str, Any] | None:
        """The searched settings' values in the run's configuration, if every one lies in its range."""
        mc = method_config(self.method, self.cfg.methods.get(self.method), self.sets)
        tree = {"model": mc.params().model_dump(), "train": mc.train.model_dump()}
        values = {d.key: tree[d.key.split(".", 1)[0]][d.key.split(".", 1)[1]] for d in self.space}
        inside = all(v in d.choices if d.choices is not None else d.low <= v <= d.high
                     for d, v in zip(self.space, values.values()))
        return values if inside else None

    def objective(self, trial: "optuna.Trial") -> float:
        """Train with the trial's settings; the validation NDCG@10 of the best epoch's weights."""
        import optuna

        from models.evaluate import evaluate
        from models.registry import build
        from models.trainer import pick_device, train

        params = {d.key: d.suggest(trial) for d in self.space}
        work, started = self.folder / f"trial-{trial.number}.partial", time.perf_counter()
        try:
            mc = method_config(self.method, _with_params(self.cfg.methods.get(self.method), params), self.sets)
            model = build(mc, self.data.n_items, self.data.user_vocab)
            train(model, self.data, mc, work, echo=lambda _: None, progress=False, on_epoch=self._pruner(trial))
            result = evaluate(model, self.data, mc.train.valid_split, mask_seen=mc.train.mask_seen,
                              batch_size=mc.train.eval_batch_size, device=pick_device(mc.train)).mean()
            return float(result[("ndcg", 10)])
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # recorded with its reason; Optuna marks the trial failed and goes on
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:1000])
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _pruner(trial: "optuna.Trial") -> Callable[[dict[str, Any]], None]:
        import optuna

        def report(row: dict[str, Any]) -> None:
            trial.report(row["valid_ndcg@10"], row["epoch"])
            if trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", row["epoch"])
                raise optuna.TrialPruned(f"epoch {row['epoch']}: valid NDCG@10 {row['valid_ndcg@10']:.4f} "
                                         "below the median of earlier trials")
        return report


def study_name(method: str, day: date, protocol: str, pair: str | None = None, view: str | None = None) -> str:
    return f"{method}-{pair}-{view}-{day}" if pair else f"{method}-{protocol}-{day}"


def open_study(folder: Path, name: str, tuning: Tuning, seed: int, prune_after: int = 10) -> "optuna.Study":
    """The study in ``folder/study.db`` (created, or continued: its trials cut short by a kill
    recorded as failed). A study created with another space, method or day is refused. The pruner
    judges a trial from its ``prune_after``-th epoch on: early epochs say little of where a run
    ends (a small learning rate starts slowly and may end best)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'study.db'}")
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=prune_after))
    identity = {"method": tuning.method, "day": str(tuning.day), "space": {d.key: d.spec() for d in tuning.space},
                "sets": list(tuning.sets)}
    if not study.user_attrs:
        for k, v in identity.items():
            study.set_user_attr(k, v)
        current = tuning.current()
        if current is not None:  # the configuration as it stands is trial 0: the best is never worse on validation
            study.enqueue_trial(current)
    elif {k: study.user_attrs.get(k) for k in identity} != identity:
        raise UsageError(f"study {name} in {folder} was created with other settings "
                         f"({ {k: study.user_attrs.get(k) for k in identity} }); name another with --study")
    # A continued study draws new random proposals, not the first run's again.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=5)
    study_id = storage.get_study_id_from_name(name)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "error", "interrupted: the process ended during the trial")
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        shutil.rmtree(folder / f"trial-{t.number}.partial", ignore_errors=True)
    return study


def describe(t: "optuna.trial.FrozenTrial") -> str:
    """One line per finished trial, as printed after it."""
    state = t.state.name.lower()
    seconds = t.user_attrs.get("seconds", float("nan"))
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
    if state == "complete":
        return f"trial {t.number:>3}  valid NDCG@10 {t.value:.4f}  {seconds:7.1f}s  {params}"
    if state == "pruned":
        return f"trial {t.number:>3}  pruned after epoch {t.user_attrs.get('pruned_at_epoch', '?')}  {seconds:7.1f}s  {params}"
    return f"trial {t.number:>3}  {state}: {t.user_attrs.get('error', '?')}  {params}"


def tune(cfg: Config, method: str, day: date, *, trials: int, timeout: float | None = None, study: str | None = None,
         space_file: Path | None = None, sets: list[str] = (), seed: int = 0, pair: str | None = None,
         view: str | None = None, config_path: Path | None = None, prune_after: int = 10,
         echo: Echo = print) -> dict[str, Any]:
    """Run (or continue) the study until it holds ``trials`` finished trials or ``timeout`` seconds
    pass; write ``best.yaml``, ``trials.csv`` and the plots. Returns the summary."""
    space = search_space(method, space_file)
    clash = sorted({s.partition("=")[0] for s in sets} & {d.key for d in space})
    if clash:
        raise UsageError(f"--set {', '.join(clash)}: searched settings cannot also be fixed")
    mc = method_config(method, cfg.methods.get(method), list(sets))
    name = study or study_name(method, day, mc.train.protocol, pair, view)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UsageError(f"--study {name!r}: letters, digits, '_', '.' and '-' only")
    wh = Warehouse(cfg.warehouse)
    folder = wh.tuning_folder(method, name)
    folder.mkdir(parents=True, exist_ok=True)
    with locks.writer(wh.root, f"tune.{method}.{name}"):
        tuning = Tuning(cfg, method, day, space, list(sets), _data(cfg, method, day, mc.train.protocol, pair, view),
                        folder, echo)
        return _run(tuning, open_study(folder, name, tuning, seed, prune_after), trials, timeout, config_path)


def _data(cfg: Config, method: str, day: date, protocol: str, pair: str | None, view: str | None) -> SequenceData:
    """The day's sequences, or a cross-domain pair's view (a method that reads no other run)."""
    if pair is None:
        from pipelines.modeling.data import load

        return load(cfg.warehouse, day, protocol)
    from pipelines.modeling.cross_domain import load_pair_data
    from pipelines.modeling.pair_runs import PairRun, find_pair, needed_runs

    view = view or get_method(method).pair_view
    needs = needed_runs(cfg, PairRun(find_pair(cfg, pair).name, method, view), [])
    if needs:
        raise UsageError(f"{method} reads other runs ({', '.join(needs)}): tune those, then train {method} on them")
    return load_pair_data(cfg, day, pair, view)


def _run(tuning: Tuning, study: "optuna.Study", trials: int, timeout: float | None,
         config_path: Path | None) -> dict[str, Any]:
    echo, done = tuning.echo, [t for t in study.trials if t.state.is_finished()]
    left = trials - len(done)
    echo(f"tune {tuning.method} as of {tuning.day}: study {study.study_name}, {len(done)} of {trials} trial(s) done; "
         f"searching {', '.join(d.key for d in tuning.space)} ({len(tuning.data.users):,} users, "
         f"{tuning.data.n_items:,} items) -> {tuning.folder}")
    if left > 0:
        study.optimize(tuning.objective, n_trials=left, timeout=timeout, catch=(Exception,), gc_after_trial=True,
                       callbacks=[lambda _, t: echo(describe(t))])
    return finish(tuning, study, config_path)


def finish(tuning: Tuning, study: "optuna.Study", config_path: Path | None) -> dict[str, Any]:
    """The study's outputs beside it, and its summary."""
    import optuna

    finished = [t for t in study.trials if t.state.is_finished()]
    complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        reasons = sorted({t.user_attrs.get("error", t.state.name.lower()) for t in finished})
        raise UsageError(f"study {study.study_name}: no trial completed ({len(finished)} finished): {'; '.join(reasons)}")
    best = study.best_trial
    study.trials_dataframe().to_csv(tuning.folder / "trials.csv", index=False)
    _plots(study, tuning.folder)
    path = write_best(tuning, best, config_path)
    seconds = [t.user_attrs["seconds"] for t in finished if "seconds" in t.user_attrs]
    summary = {"method": tuning.method, "day": str(tuning.day), "study": study.study_name, "trials": len(finished),
               "best_trial": best.number,
               "best_valid_ndcg@10": best.value, "best_params": best.params, "config": str(path),
               "states": {s: sum(t.state.name.lower() == s for t in finished) for s in ("complete", "pruned", "fail")},
               "median_trial_s": sorted(seconds)[len(seconds) // 2] if seconds else math.nan}
    (tuning.folder / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    tuning.echo(f"best: trial {best.number}, valid NDCG@10 {best.value:.4f} ({summary['states']}, median "
                f"{summary['median_trial_s']:.1f}s a trial); its settings: {path}\n"
                f"  seqrep train --method {tuning.method} --date {tuning.day} --config {path}")
    return summary


def write_best(tuning: Tuning, best: "optuna.trial.FrozenTrial", config_path: Path | None) -> Path:
    """``best.yaml``: the run's config file (if any) with the best settings, and those ``--set``
    fixed for every trial, under ``methods.<name>``."""
    tree = (yaml.safe_load(config_path.read_text()) or {}) if config_path is not None else {}
    methods = tree.setdefault("methods", {}) or {}
    tree["methods"] = methods
    # The settings --set fixed for every trial are part of what was selected: written too.
    fixed = {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in tuning.sets)}
    methods[tuning.method] = _with_params(methods.get(tuning.method), {**fixed, **best.params})
    header = (f"# seqrep tune: study {tuning.folder.name.removeprefix('study=')}, trial {best.number}, "
              f"valid NDCG@10 {best.value:.4f} as of {tuning.day}"
              f"{f'; the rest is {config_path}' if config_path is not None else ''}\n")
    path = tuning.folder / "best.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(header + yaml.safe_dump(tree, sort_keys=False))
    tmp.replace(path)
    return path


def _plots(study: "optuna.Study", folder: Path) -> None:
    """Optuna's optimization history and (from two completed trials) parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    for name, plot in (("history", ovm.plot_optimization_history), ("importances", ovm.plot_param_importances)):
        try:
            with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
                warnings.simplefilter("ignore")
                ax = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few completed trials for importances
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=100)
        plt.close(fig)
