"""``random_search``: the trials of one Optuna study, each trained as its own run and told back to the study.

Each trial is its own run folder ``<logdir>/<study>-t003``; its ``meta.json`` holds the
trial's hyperparameters, the search space and the ``study`` object (study name, trial
number, storage, state, objective, and the finding that pruned it). See ``_trials`` for
what a search returns and how it is read back (``load_search``), ``_study`` for how N
workers share one study, ``_prune`` for how the diagnoses prune a trial, ``_refine`` for
the fine search that follows a coarse one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from core.diagnose import DiagnosisConfig
from core.errors import ConfigError
from core.schema import Finding, StudyTrial

from .._monitor import Monitor, validate_run_name
from ._prune import TrialWatch, prune_rules
from ._space import Choice, IntUniform, LogUniform, Sampler, Uniform, check_space, space_to_json
from ._trials import TRIAL_ATTR, SearchResult, Trial, from_study, trial_run_name, trial_width

log = logging.getLogger(__name__)

_MODES = ("max", "min")
_DIRECTION = {"max": "maximize", "min": "minimize"}


def _has_runs(logdir: Path, name: str) -> bool:
    try:
        return any(e.name.startswith(name + "-t") for e in os.scandir(logdir))
    except OSError:
        return False


def _free_search_name(logdir: Path, name: str) -> str:
    # A search name is free when no run folder starts with "<name>-t".
    if not _has_runs(logdir, name):
        return name
    for i in range(2, 10_000):
        cand = f"{name}-{i}"
        if not _has_runs(logdir, cand):
            log.info("search %r exists in %s; this one is called %r", name, logdir, cand)
            return cand
    raise ConfigError(f"no free search name near {name!r} in {logdir}")


def _value_from_run(run_dir: Path, metric: str, mode: str) -> float | None:
    from core.reader import Run

    try:
        run = Run(run_dir)
    except OSError:
        return None
    run.update()
    v = run.metric(metric).values
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    return float(v.max() if mode == "max" else v.min())


def _as_value(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def _suggest(otrial: Any, name: str, s: Sampler) -> Any:
    if isinstance(s, (LogUniform, Uniform)):
        return otrial.suggest_float(name, s.low, s.high, log=s.log)
    if isinstance(s, IntUniform):
        return otrial.suggest_int(name, s.low, s.high, log=s.log)
    if isinstance(s, Choice):
        return otrial.suggest_categorical(name, s.choices)
    raise ConfigError(f"cannot sample {name!r}: {type(s).__name__} is not a sampler")


def random_search(
    train_fn: Callable[[Trial], Any],
    space: Mapping[str, Sampler],
    n_trials: int,
    *,
    logdir: str | os.PathLike[str],
    name: str = "search",
    seed: int = 0,
    metric: str = "val_acc",
    mode: str = "max",
    storage: Any = None,
    study_name: str | None = None,
    sampler: Any = None,
    pruner: Any = None,
    prune: bool | str | Sequence[str] = True,
    diagnosis: DiagnosisConfig | None = None,
    wait: bool = True,
) -> SearchResult:
    """Run ``train_fn`` on ``n_trials`` random draws of ``space`` as one Optuna study, each trial its own run.

    The same call in N processes or on N machines with the same ``storage`` makes N workers
    of one study: together they run ``n_trials`` trials, each exactly once.

    Args:
        train_fn: called as ``train_fn(trial)`` with a ``Trial``. It records its run with
            ``trial.monitor(...)`` or with its own ``Monitor(logdir, trial.name,
            **trial.monitor_kwargs)``. It may return the objective (a number) or the run
            folder; otherwise the objective is read from the run: the best ``metric`` it logged.
        space: name -> sampler, e.g. ``{"lr": LogUniform(1e-6, 1e-3), "reg": LogUniform(1e-5, 1)}``.
        n_trials: trials in the whole study (all workers together).
        logdir: where the runs go (a shared folder when workers run on several machines).
        name: the study name; trial runs are ``<name>-t000``, ``<name>-t001``, ... Without
            ``storage``, when runs of that name exist already, ``<name>-2`` is used (and so
            on); with ``storage`` the name is the study's and is never changed.
        seed: seeds the draws (trial ``k`` gets the same values whichever worker runs it)
            and the per-trial seeds.
        metric: scalar to read the objective from when ``train_fn`` returns none; also fed
            to ``pruner``.
        mode: ``"max"`` (accuracy) or ``"min"`` (loss).
        storage: None (this process only), a journal file path (a shared filesystem), a
            database URL (``sqlite:///search.db``, ``postgresql://...``) or an Optuna storage.
        study_name: the study name, if other than ``name``.
        sampler: an Optuna sampler (default: random sampling, trial ``k`` getting the ``k``-th draw of the seed).
        pruner: an Optuna pruner (``MedianPruner()``, ...), fed with ``metric`` as it is logged.
        prune: which findings prune a trial while it trains: ``True`` every error finding
            (blow-up or NaN of the loss, non-finite values, symmetric weights, ...), rule ids or
            severities (``("error", "dead_relu")``), or ``False``.
        diagnosis: thresholds of the diagnosis rules used for pruning.
        wait: with ``storage``, once no trial is left to start, wait for the other workers'
            trials to end, so every worker returns the whole study (and a ``refine`` that
            follows computes the same space everywhere).

    Returns:
        A ``SearchResult`` of the whole study. A trial that raised an ``Exception`` has
        status ``"crashed"``, its error, and a run folder marked crashed (Optuna state
        ``FAIL``); a pruned trial has status ``"pruned"``, ``pruned_by`` and ``steps``
        (state ``PRUNED``); ``KeyboardInterrupt`` fails the running trial and stops.

    Raises:
        ConfigError: for a bad space, trial count, name, mode or storage, or a study of
            that name that describes another search.
    """
    from . import _study

    samplers = check_space(space)
    if mode not in _MODES:
        raise ConfigError(f"mode must be one of {_MODES}, got {mode!r}")
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ConfigError(f"the number of trials must be a positive integer, got {n_trials!r}")
    name = validate_run_name(study_name or name)
    prune_on = prune_rules(prune)
    optuna = _study._optuna()
    root = Path(logdir)
    root.mkdir(parents=True, exist_ok=True)  # first: a journal file may live inside it
    st, label = _study.open_storage(storage)
    if storage is None:
        name = _free_search_name(root, name)
    elif _has_runs(root, name) and not _study.study_exists(st, name):
        # Folders first, then the study: a worker that created the study made it before any folder.
        raise ConfigError(f"runs named {name}-t... exist in {root}, but storage has no study {name!r}: "
                          "pick another study name")
    space_json = space_to_json(samplers)
    direction = _DIRECTION[mode]
    desc = _study.describe(space_json, n_trials, seed, metric, mode)
    sampler = sampler or _study.make_sampler(seed, samplers, n_trials)
    study, _ = _study.create_or_join(st, name, desc, sampler=sampler, pruner=pruner, direction=direction)
    width = trial_width(n_trials)
    while (trial_id := _study.claim(study, st)) is not None:
        otrial = optuna.Trial(study, trial_id)
        meta = StudyTrial(name, otrial.number, "running", label, direction, metric).to_json()
        watch = TrialWatch(otrial, prune_on, diagnosis, metric, pruner, meta)
        hp = {k: _suggest(otrial, k, s) for k, s in samplers.items()}
        trial = Trial(otrial.number, f"{name}-t{otrial.number:0{width}d}", root, hp,
                      _study.trial_seed(seed, otrial.number), space_json, meta, otrial, _watch=watch)
        _run_trial(train_fn, trial, study, watch, metric, mode)
    if wait and storage is not None:
        _wait_for_others(study, root)
    return from_study(study, root, samplers, metric, mode, label, seed)


def _run_trial(train_fn: Callable[[Trial], Any], trial: Trial, study: Any, watch: TrialWatch, metric: str,
               mode: str) -> None:
    import optuna

    try:
        _train_and_tell(train_fn, trial, study, watch, metric, mode)
    except optuna.exceptions.UpdateFinishedTrialError as err:
        # Another worker took this worker for dead and failed the trial (see _wait_for_others).
        log.warning("trial %s was finished by another worker meanwhile: %s", trial.name, err)


def _train_and_tell(train_fn: Callable[[Trial], Any], trial: Trial, study: Any, watch: TrialWatch, metric: str,
                    mode: str) -> None:
    import optuna

    otrial = trial.optuna_trial
    run_dir = trial.logdir / trial.name
    log.info("trial %s: %s", trial.name, json.dumps(trial.hparams, default=str))
    error: BaseException | None = None
    pruned: BaseException | None = None
    ret: Any = None
    try:
        ret = train_fn(trial)
    except optuna.TrialPruned as err:
        pruned = err
    except Exception as err:  # a crashed trial is a result, not the end of the search
        error = err
        log.warning("trial %s crashed: %s: %s", trial.name, type(err).__name__, err)
    except BaseException:
        study.tell(otrial, state=optuna.trial.TrialState.FAIL)
        for mon in trial._monitors:
            mon.close(error=KeyboardInterrupt("search interrupted"))
        raise
    for mon in trial._monitors:
        mon.close(error=error)
    if error is not None and not run_dir.exists():
        # Crashed before its run was opened: record it anyway, so the dashboard shows it.
        mon = Monitor(trial.logdir, trial.name, hparams=trial.hparams, search_space=trial.search_space,
                      study=trial.study, heartbeat=0, on_exists="error")
        mon.open()
        mon.close(error=error)
        trial._monitors.append(mon)
    if isinstance(ret, (str, os.PathLike)) and Path(ret).is_dir():
        run_dir = Path(ret)
    value = None
    if pruned is not None:
        if watch.finding is None:  # the training code raised TrialPruned itself
            watch.finding = Finding(rule="trial_pruned", severity="info", step=watch.steps or 0,
                                    message=f"The training code pruned the trial: {pruned}"[:2000])
        attrs = {"status": "pruned", "pruned_by": watch.finding.to_json()}
        state, tell = "pruned", dict(state=optuna.trial.TrialState.PRUNED)
    elif error is not None:
        attrs = {"status": "crashed", "error": f"{type(error).__name__}: {error}"[:2000]}
        state, tell = "fail", dict(state=optuna.trial.TrialState.FAIL)
    else:
        value = _as_value(ret)
        if value is None and run_dir.is_dir():
            value = _value_from_run(run_dir, metric, mode)
        attrs = {"status": "finished"}
        if value is None:  # Optuna keeps no COMPLETE trial without a value
            attrs["error"] = f"no finite value of {metric!r} was logged or returned"
            state, tell = "fail", dict(state=optuna.trial.TrialState.FAIL)
        else:
            state, tell = "complete", dict(values=value)
    # One user attribute, written once: every storage write is a locked, fsynced append to a journal.
    otrial.set_user_attr(TRIAL_ATTR, {"run": trial.name, "seed": trial.seed, "steps": watch.steps, **attrs})
    for mon in dict.fromkeys([*trial._monitors, *watch.monitors]):
        mon.set_meta(study=watch.outcome(state, value))
    study.tell(otrial, **tell)


def _wait_for_others(study: Any, root: Path, poll: float = 0.5) -> None:
    """Wait until no trial of ``study`` is running; one whose worker is gone is marked failed.

    Gone: its run folder shows crashed (the same-host pid check, or a stale heartbeat), or its
    worker ran on this host and has exited before it opened the run folder.
    """
    import optuna

    from core.reader import Run

    from ._study import running_trials, worker_died

    said = False
    while running := running_trials(study):
        if not said:
            log.info("waiting for %d trials of other workers", len(running))
            said = True
        for t in running:
            run_name = trial_run_name(study, t.number)
            if (root / run_name).is_dir():
                run = Run(root / run_name)
                run.update()
                # No meta.json yet: the run is starting, unless its worker (on this host) is gone.
                # Else: same-host pid check, or a stale heartbeat.
                dead = worker_died(t) if run.meta.created is None else run.status() == "crashed"
            else:
                dead = worker_died(t)  # died before it opened its run folder
            if dead:
                log.warning("trial %d (%s): its worker is gone; marked failed", t.number, run_name)
                try:
                    study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                except Exception as err:  # another worker got there first
                    log.info("trial %d: %s", t.number, err)
        time.sleep(poll)
