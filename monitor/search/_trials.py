"""The records of a search: what the training function gets for a trial (``Trial``), what a search
returns (``TrialResult``, ``SearchResult``), and a search read back from its study or its run
folders (``load_search``).

A trial's run is ``<logdir>/<study>-t003`` (``trial_run_name``); its outcome is one Optuna user
attribute (``TRIAL_ATTR``) next to the study's own trial state, and ``from_study`` reads both.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.schema import Finding, StudyTrial

from .._monitor import Monitor
from ._prune import TrialWatch
from ._space import Sampler, space_from_json, space_to_json

TRIAL_ATTR = "babysitter"  # each trial's user attribute: run, seed, status, steps, pruned_by, error


@dataclass
class Trial:
    """What the training function gets for one trial.

    Attributes:
        index: the trial number in the study (0-based).
        name: the run's folder name, ``<study>-t003``.
        logdir: the log directory.
        hparams: this trial's sampled values.
        seed: a seed for this trial's own randomness (initialisation, shuffling), a function
            of the search's seed and ``index`` only.
        search_space: the space in ``meta.json`` form.
        study: the ``study`` object for ``meta.json`` (name, trial number, storage, state).
        optuna_trial: the ``optuna.Trial`` (for ``report``/``should_prune`` of your own, or user attributes).
    """

    index: int
    name: str
    logdir: Path
    hparams: dict[str, Any]
    seed: int
    search_space: dict[str, dict[str, Any]]
    study: dict[str, Any] = field(default_factory=dict)
    optuna_trial: Any = None
    _monitors: list[Monitor] = field(default_factory=list, repr=False)
    _watch: TrialWatch | None = field(default=None, repr=False)

    @property
    def monitor_kwargs(self) -> dict[str, Any]:
        """``hparams``, ``search_space``, ``study`` and the pruning callback, for a ``Monitor`` of your own."""
        out: dict[str, Any] = {"hparams": dict(self.hparams), "search_space": dict(self.search_space)}
        if self.study:
            out["study"] = dict(self.study)
        if self._watch is not None:
            out["on_log"] = [self._watch]
        return out

    def monitor(self, **kwargs: Any) -> Monitor:
        """A ``Monitor`` for this trial's run, with its hyperparameters, the search space and the study.

        Args:
            **kwargs: other ``Monitor`` options (``num_classes``, ``every``, ...); ``hparams``
                given here are added to the sampled ones.

        Returns:
            The Monitor (not yet opened; use it as a context manager).
        """
        mk = self.monitor_kwargs
        mk["hparams"].update(kwargs.pop("hparams", None) or {})
        mk["on_log"] = [*mk.get("on_log", ()), *kwargs.pop("on_log", ())]
        kwargs.setdefault("on_exists", "error")
        mon = Monitor(self.logdir, self.name, **mk, **kwargs)
        self._monitors.append(mon)
        return mon


@dataclass
class TrialResult:
    """One trial of a search.

    Attributes:
        index: the trial number.
        name: run folder name.
        hparams: sampled values.
        seed: the trial's seed.
        status: ``"finished"``, ``"crashed"`` or ``"pruned"`` (``"running"``/``"waiting"`` for
            trials of other workers still in progress).
        value: the objective (returned by the training function, or read from the run);
            None when unknown (crashed, pruned, NaN, never reported).
        error: ``"ExceptionType: message"`` for a crashed trial.
        run_dir: the run folder.
        pruned_by: the finding that pruned the trial.
        steps: the last step the trial logged.
    """

    index: int
    name: str
    hparams: dict[str, Any]
    seed: int
    status: str
    value: float | None
    error: str | None
    run_dir: Path | None
    pruned_by: Finding | None = None
    steps: int | None = None


@dataclass
class SearchResult:
    """The trials of one search (one study), with the space they were drawn from.

    Attributes:
        name: the study name (prefix of every trial's run name).
        logdir: the log directory.
        space: the samplers.
        trials: every trial, in trial-number order.
        metric: the scalar the objective was read from when the training function returned none.
        mode: ``"max"`` or ``"min"``.
        storage: where the study lives (None: this process only).
        study: the ``optuna.Study`` (None when read from run folders).
    """

    name: str
    logdir: Path
    space: dict[str, Sampler]
    trials: list[TrialResult]
    metric: str = "val_acc"
    mode: str = "max"
    storage: str | None = None
    study: Any = None

    def ranked(self) -> list[TrialResult]:
        """Finished trials with a value, best first."""
        ok = [t for t in self.trials if t.value is not None and math.isfinite(t.value) and t.status == "finished"]
        return sorted(ok, key=lambda t: t.value, reverse=self.mode == "max")  # type: ignore[arg-type,return-value]

    @property
    def best(self) -> TrialResult | None:
        """The best trial, or None when no trial produced a value."""
        r = self.ranked()
        return r[0] if r else None

    def to_frame(self):
        """The trials as a pandas DataFrame (one row per trial, one column per hyperparameter)."""
        import pandas as pd

        rows = [{"trial": t.index, "run": t.name, "status": t.status, "value": t.value, "seed": t.seed,
                 **t.hparams, "steps": t.steps, "pruned_by": t.pruned_by.rule if t.pruned_by else None,
                 "error": t.error} for t in self.trials]
        return pd.DataFrame(rows)

    def edge_findings(self, *, outer: float | None = None):
        """``edge_of_range`` checks of this search (see ``core.compare.edge_of_range``; ``outer``
        defaults to the rule's threshold, ``DiagnosisConfig``'s ``edge_of_range.outer``)."""
        from core.compare import edge_of_range

        return edge_of_range(
            [(t.name, t.hparams, t.value if t.status == "finished" else None) for t in self.trials],
            space_to_json(self.space), mode=self.mode, outer=outer,
        )


def trial_width(n: int) -> int:
    """Digits of the trial number in the run names of a study of ``n`` trials (``t007`` or ``t0007``)."""
    return max(3, len(str(n - 1)))


def trial_run_name(study: Any, number: int) -> str:
    """The run folder name of trial ``number`` of ``study``."""
    from ._study import STUDY_ATTR

    n = (study.user_attrs.get(STUDY_ATTR) or {}).get("n_trials") or 1
    return f"{study.study_name}-t{number:0{trial_width(n)}d}"


_STATUS = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "crashed", "RUNNING": "running",
           "WAITING": "waiting"}


def from_study(study: Any, root: Path, samplers: dict[str, Sampler], metric: str, mode: str,
               label: str | None, seed: int | None) -> SearchResult:
    """The ``SearchResult`` of an Optuna study: its trials' states with the outcome each worker recorded."""
    from ._study import trial_seed

    out = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        ua = t.user_attrs.get(TRIAL_ATTR) or {}
        run_name = ua.get("run") or trial_run_name(study, t.number)
        status = _STATUS.get(t.state.name, t.state.name.lower())
        if t.state.name == "FAIL":
            status = ua.get("status", "crashed")
        pb = ua.get("pruned_by")
        out.append(TrialResult(
            index=t.number, name=run_name, hparams=dict(t.params),
            seed=int(ua.get("seed", trial_seed(seed or 0, t.number))), status=status,
            value=float(t.value) if t.state.name == "COMPLETE" and t.value is not None else None,
            error=ua.get("error") if status == "crashed" else None,
            run_dir=root / run_name, pruned_by=Finding.from_json(pb) if isinstance(pb, dict) else None,
            steps=ua.get("steps"),
        ))
    return SearchResult(study.study_name, root, samplers, out, metric, mode, label, study)


def load_search(name: str, *, storage: Any = None, logdir: str | os.PathLike[str] = "runs") -> SearchResult:
    """A finished (or running) search back: from its Optuna ``storage``, else from the run folders in ``logdir``.

    The result can be handed to ``refine`` to start the fine search from a coarse one run
    elsewhere (``refine(load_search("coarse", storage=URL))``).

    Raises:
        ConfigError: when there is no such study (storage) or no run of it (``logdir``).
    """
    from . import _study

    root = Path(logdir)
    if storage is not None:
        optuna = _study._optuna()
        st, label = _study.open_storage(storage)
        if not _study.study_exists(st, name):
            raise ConfigError(f"storage has no study {name!r}")
        study = optuna.load_study(study_name=name, storage=st)
        desc = study.user_attrs.get(_study.STUDY_ATTR)
        if not isinstance(desc, dict):
            raise ConfigError(f"study {name!r} was not run by random_search (no {_study.STUDY_ATTR!r} attribute)")
        return from_study(study, root, space_from_json(desc["space"]), desc.get("metric", "val_acc"),
                                  desc.get("mode", "max"), label, desc.get("seed"))
    from core.logdir import LogDir

    ld = LogDir(root)
    ld.refresh()
    trials, space, mode, metric, label = [], None, "max", "val_acc", None
    for run in ld.runs():
        st = StudyTrial.from_json(run.meta.study)
        if st is None or st.name != name:
            continue
        space = space or run.meta.search_space
        mode, metric, label = ("min" if st.direction == "minimize" else "max"), st.metric or metric, st.storage
        status = {"complete": "finished", "pruned": "pruned", "fail": "crashed"}.get(st.state, "running")
        trials.append(TrialResult(st.trial, run.name, dict(run.meta.hparams), 0, status, st.value, run.meta.error,
                                  run.path, st.pruned_by, st.steps))
    if not trials or not space:
        raise ConfigError(f"no run of study {name!r} in {root}")
    trials.sort(key=lambda t: t.index)
    return SearchResult(name, root, space_from_json(space), trials, metric, mode, label)

