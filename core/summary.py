"""Run summaries: one ``RunSummary`` per run, and the per-run cache that owns its diagnosis.

* ``summarize(run)`` boils a ``Run`` down to a ``RunSummary``: status, steps, final and
  best validation accuracy, final training accuracy, the train-val gap, final loss,
  findings counted by severity, hyperparameters.
* ``SummaryCache`` keeps one ``Diagnoser`` per run and computes each run's findings and
  summary once per run ``data_version`` (new records, problems, a new ``meta.json``, the end
  of a search; not a search step that found nothing): a log directory of
  thousands of runs costs one pass on first open and then only the runs that moved, and the
  dashboard's run pages and its compare page share one diagnosis per run.
* ``summarize_logdir(logdir)`` gives the table as a pandas DataFrame (hyperparameters as
  ``hp.<name>`` columns, so a hyperparameter can never shadow a summary column).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .diagnose import Diagnoser
from .reader import Run
from .logdir import LogDir
from .schema import SEVERITY_RANK, Finding, StudyTrial, severity_counts

log = logging.getLogger(__name__)

__all__ = ["RunSummary", "SummaryCache", "summarize", "summarize_logdir", "summaries_frame", "run_findings",
           "SUMMARY_COLUMNS", "HP_PREFIX"]

HP_PREFIX = "hp."
SUMMARY_COLUMNS = (
    "run", "status", "steps", "final_val_acc", "best_val_acc", "best_val_step", "final_train_acc", "gap",
    "final_loss", "diverged", "errors", "warnings", "infos", "findings", "study", "trial", "pruned_by",
)


@dataclass(frozen=True)
class RunSummary:
    """One run in a few numbers.

    Attributes:
        run: the run's name.
        status: ``"live"``, ``"finished"``, ``"stopped"`` or ``"crashed"`` (``Run.status``).
        steps: the last step recorded (None for an empty run).
        final_val_acc: the last validation accuracy (NaN when never logged).
        best_val_acc: the highest finite validation accuracy (NaN when none).
        best_val_step: the step of ``best_val_acc``.
        final_train_acc: the last training accuracy logged at or before the last
            validation step (so the gap compares the same moment), else the last one.
        gap: ``final_train_acc - final_val_acc`` (overfitting shows as a large gap).
        final_loss: the last training loss, NaN/Inf when it diverged.
        diverged: True when the loss was ever NaN or Inf.
        severities: number of findings per severity (``{"error": 1, "warning": 0, "info": 0}``).
        rules: the rule ids found, most severe first.
        hparams: hyperparameters from ``meta.json``.
        search_space: the search space from ``meta.json`` (empty outside a search).
        error: the error recorded for a crashed run.
        created: start time (seconds since the epoch).
        version: the ``Run.data_version`` this summary was computed at.
        study: for a trial of a search run as a study, its ``meta.json`` ``study`` object
            (``core.schema.StudyTrial``); then ``status`` is ``"pruned"`` for a pruned trial.
    """

    run: str
    status: str
    steps: int | None
    final_val_acc: float
    best_val_acc: float
    best_val_step: int | None
    final_train_acc: float
    gap: float
    final_loss: float
    diverged: bool
    severities: dict[str, int]
    rules: tuple[str, ...]
    hparams: dict[str, Any]
    search_space: dict[str, Any]
    error: str | None
    created: float | None
    version: int
    study: StudyTrial | None = None

    def row(self) -> dict[str, Any]:
        """A flat dict: the ``SUMMARY_COLUMNS`` then ``hp.<name>`` for each hyperparameter."""
        out: dict[str, Any] = {
            "run": self.run, "status": self.status, "steps": self.steps,
            "final_val_acc": self.final_val_acc, "best_val_acc": self.best_val_acc,
            "best_val_step": self.best_val_step, "final_train_acc": self.final_train_acc, "gap": self.gap,
            "final_loss": self.final_loss, "diverged": self.diverged,
            "errors": self.severities.get("error", 0), "warnings": self.severities.get("warning", 0),
            "infos": self.severities.get("info", 0), "findings": ", ".join(self.rules),
            "study": self.study.name if self.study else None, "trial": self.study.trial if self.study else None,
            "pruned_by": (f"{self.study.pruned_by.rule} at step {self.study.pruned_by.step}"
                          if self.study and self.study.pruned_by else None),
        }
        for k, v in self.hparams.items():
            out[HP_PREFIX + str(k)] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
        return out

    def to_json(self, *, finite: bool = True) -> dict[str, Any]:
        """JSON-safe form: non-finite numbers become None (the ``diverged`` flag keeps the fact).

        ``finite=False`` keeps NaN and Inf (for ``json.dumps(allow_nan=True)``, as the summary
        index stores it), so ``from_json`` gives back an equal summary.
        """
        # Field by field, not ``dataclasses.asdict``: its deep copies were most of the time of
        # ``compare --json`` over 10,000 runs. The nested dicts are copied one level down.
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["severities"], d["hparams"] = dict(self.severities), dict(self.hparams)
        d["search_space"] = {k: dict(v) if isinstance(v, dict) else v for k, v in self.search_space.items()}
        d["rules"] = list(self.rules)
        d["study"] = self.study.to_json() if self.study else None
        if finite:
            for k, v in d.items():
                if isinstance(v, float) and not math.isfinite(v):
                    d[k] = None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunSummary":
        """The summary ``to_json`` wrote (None for a missing number).

        Raises:
            KeyError, TypeError, ValueError: for anything that is not one.
        """
        def num(v: Any) -> float:
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan

        def int_or_none(v: Any) -> int | None:
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        return cls(
            run=str(d["run"]), status=str(d["status"]), steps=int_or_none(d["steps"]),
            final_val_acc=num(d["final_val_acc"]), best_val_acc=num(d["best_val_acc"]),
            best_val_step=int_or_none(d["best_val_step"]), final_train_acc=num(d["final_train_acc"]),
            gap=num(d["gap"]), final_loss=num(d["final_loss"]), diverged=bool(d["diverged"]),
            severities={str(k): int(v) for k, v in d["severities"].items()}, rules=tuple(str(r) for r in d["rules"]),
            hparams=dict(d["hparams"]), search_space=dict(d["search_space"]),
            error=d["error"] if isinstance(d["error"], str) else None,
            created=num(d["created"]) if d["created"] is not None else None, version=int(d["version"]),
            study=StudyTrial.from_json(d["study"]) if d.get("study") else None)


def run_findings(run: Run, diagnoser: Diagnoser | None = None) -> list[Finding]:
    """The run's findings: the diagnosis engine's, merged with those written by training.

    Args:
        run: the run, as read so far (call ``run.update()`` first).
        diagnoser: this run's ``Diagnoser`` from an earlier call; given, only the records
            added since that call are examined.
    """
    try:
        dx = diagnoser if diagnoser is not None else Diagnoser()
        with run._lock:  # a refresh on another thread must not append while the rules read
            dx.update(run)
        return dx.findings()
    except Exception:  # a failing rule must not hide the whole comparison; it is logged
        log.exception("diagnosis of run %s failed; showing the findings written by training only", run.name)
        return list(run.findings)


def trial_status(run: Run, status: str | None = None) -> str:
    """``run.status()``, or ``"pruned"`` for a trial that a search pruned (the compare views show it apart)."""
    return pruned_or(status or run.status(), run.meta.study.get("state"))


def pruned_or(status: str, study_state: Any) -> str:
    """``"pruned"`` for a run that is not live and whose study trial was pruned, else ``status``."""
    return "pruned" if status != "live" and study_state == "pruned" else status


def summarize(run: Run, *, status: str | None = None, diagnoser: Diagnoser | None = None,
              findings: Sequence[Finding] | None = None) -> RunSummary:
    """Summarise ``run`` as read so far (call ``run.update()`` first).

    Args:
        run: the run.
        status: the status to record (default ``run.status()``).
        diagnoser: passed on to ``run_findings``.
        findings: the run's findings when the caller has them (no diagnosis then).

    Returns:
        The ``RunSummary``.
    """
    val, train, loss = run.metric("val_acc"), run.metric("train_acc"), run.metric("loss")
    final_val = best_val = math.nan
    best_step = None
    last_val_step = None
    if len(val):
        final_val = float(val.values[-1])
        last_val_step = int(val.steps[-1])
        fin = np.isfinite(val.values)
        if fin.any():
            i = int(np.flatnonzero(fin)[np.argmax(val.values[fin])])
            best_val, best_step = float(val.values[i]), int(val.steps[i])
    final_train = math.nan
    if len(train):
        vals = train.values
        if last_val_step is not None:
            upto = int(np.searchsorted(train.steps, last_val_step, side="right"))
            if upto:
                vals = vals[:upto]
        final_train = float(vals[-1])
    final_loss = math.nan
    diverged = False
    if len(loss):
        final_loss = float(loss.values[-1])
        diverged = bool((~np.isfinite(loss.values)).any())
    if findings is None:
        findings = run_findings(run, diagnoser)
    sev = severity_counts(findings)
    if any(f.rule == "nan_loss" for f in findings):
        diverged = True
    rules = tuple(dict.fromkeys(f.rule for f in sorted(findings, key=lambda f: SEVERITY_RANK.get(f.severity, 9))))
    meta = run.meta
    return RunSummary(
        run=run.name, status=trial_status(run, status), steps=run.last_step,
        final_val_acc=final_val, best_val_acc=best_val, best_val_step=best_step,
        final_train_acc=final_train,
        gap=final_train - final_val if math.isfinite(final_train) and math.isfinite(final_val) else math.nan,
        final_loss=final_loss, diverged=diverged, severities=sev, rules=rules,
        hparams=dict(meta.hparams), search_space=dict(meta.search_space), error=meta.error,
        created=meta.created, version=run.data_version, study=StudyTrial.from_json(meta.study),
    )


@dataclass
class _Entry:
    run_id: int
    diagnoser: Diagnoser
    lock: threading.Lock
    version: int = -1
    findings: list[Finding] = dataclasses.field(default_factory=list)
    summary: RunSummary | None = None


class SummaryCache:
    """Each run's diagnosis, findings and summary, computed once per run data version.

    One ``Diagnoser`` per run: a live run's new version costs its new records only, and the
    run pages (``findings``) and the comparison (``get``/``summaries``) of one process share it
    instead of diagnosing every run twice. A cached summary is served while ``run.data_version``
    is unchanged (only the status, which can turn from live to crashed without a write, is
    looked at again). Thread-safe.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.computed = 0  # summaries computed so far (the rest were served from the cache)

    def _entry(self, run: Run) -> _Entry:
        with self._lock:
            e = self._entries.get(run.name)
            if e is None or e.run_id != id(run):  # a new Run object (re-created folder): start over
                e = self._entries[run.name] = _Entry(id(run), Diagnoser(), threading.Lock())
            return e

    def _update(self, run: Run, e: _Entry) -> None:
        """Bring ``e`` to the run's current version (hold ``e.lock``)."""
        version = run.data_version
        if e.version != version:
            e.findings = run_findings(run, e.diagnoser)
            e.version, e.summary = version, None

    def findings(self, run: Run) -> list[Finding]:
        """The run's findings (the engine's merged with the written ones), oldest step first."""
        e = self._entry(run)
        # The run's lock first, then the entry's: a page holding the run (Run.reading) and asking
        # for its findings takes them in this order, so every caller must (else two threads deadlock).
        with run._lock, e.lock:  # a Diagnoser follows one run from one thread at a time
            self._update(run, e)
            return e.findings

    def get(self, run: Run) -> RunSummary:
        """The summary of ``run`` at its current version."""
        status = trial_status(run)
        e = self._entry(run)
        with run._lock, e.lock:  # in this order: see findings()
            self._update(run, e)
            s = e.summary
            if s is None:
                s = e.summary = summarize(run, status=status, findings=e.findings)
                self.computed += 1
            elif s.status != status:
                s = e.summary = dataclasses.replace(s, status=status)
            return s

    def summaries(self, runs: Iterable[Run]) -> list[RunSummary]:
        """Summaries of ``runs`` in order; forgets runs no longer listed."""
        runs = list(runs)
        out = [self.get(r) for r in runs]
        self.forget_except({r.name for r in runs})
        return out

    def forget_except(self, names: set[str]) -> None:
        """Drop the cached state of every run not in ``names``."""
        with self._lock:
            for gone in set(self._entries) - names:
                del self._entries[gone]


def summaries_frame(summaries: Sequence[RunSummary]):
    """The summaries as a pandas DataFrame: ``SUMMARY_COLUMNS`` then ``hp.<name>`` columns (sorted)."""
    import pandas as pd

    rows = [s.row() for s in summaries]
    hp_cols = sorted({k for r in rows for k in r if k.startswith(HP_PREFIX)})
    df = pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, *hp_cols])
    for col in ("steps", "best_val_step", "errors", "warnings", "infos", "trial"):
        df[col] = df[col].astype("Int64")  # integers with missing values, not floats
    return df


def summarize_logdir(logdir: LogDir | str | os.PathLike[str], cache: SummaryCache | None = None, *,
                     refresh: bool = True):
    """One row per run of ``logdir`` (a ``LogDir`` or a path), as a pandas DataFrame.

    Args:
        logdir: the log directory.
        cache: keep one between calls to summarise only the runs that changed.
        refresh: call ``logdir.refresh()`` first (reads what was appended).

    Returns:
        The DataFrame, sorted by run name.
    """
    ld = logdir if isinstance(logdir, LogDir) else LogDir(logdir)
    if refresh:
        ld.refresh()
    return summaries_frame((cache or SummaryCache()).summaries(ld.runs()))
