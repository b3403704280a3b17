"""Comparing runs: one summary per run, kept up to date cheaply, and the search-level checks.

* ``summarize(run)`` boils a ``Run`` down to a ``RunSummary``: status, steps, final and
  best validation accuracy, final training accuracy, the train-val gap, final loss,
  findings counted by severity, hyperparameters.
* ``SummaryCache`` computes each summary once and again only when the run's ``version``
  changed (new records or a new ``meta.json``), so a log directory of thousands of runs
  costs one pass on first open and then only the runs that moved.
* ``summarize_logdir(logdir)`` gives the table as a pandas DataFrame (hyperparameters as
  ``hp.<name>`` columns, so a hyperparameter can never shadow a summary column).
* ``edge_of_range`` is the lecture's "best value at the edge of the range" check: in a
  hyperparameter search the best run's value of a parameter lies in the outer
  ``outer`` fraction (default 10%) of the sampled range at either end, measured in log
  space for log-sampled parameters. The finding names the range to try next: the same
  width, centred on the best value. With random sampling and no real effect, the best run
  lands in the outer 10% at either end 20% of the time, so the rule is a warning and
  needs ``min_trials`` runs; 10% rather than 20% halves those false alarms while still
  catching a best value squeezed against the end of the range.
* ``search_findings`` groups runs by the search space in their ``meta.json`` (one group
  per search: a coarse and a fine search are judged apart) and runs ``edge_of_range``
  on each group.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ._rules import Delta, Rule, RuleThresholds, knob, register
from .diagnose import Diagnoser
from .reader import LogDir, Run
from .schema import SEVERITIES, Finding

log = logging.getLogger(__name__)

__all__ = [
    "RunSummary", "SummaryCache", "EdgeOfRange", "summarize", "summarize_logdir", "summaries_frame",
    "edge_of_range", "search_findings", "filter_frame", "sort_frame", "column_for", "hparam_specs", "run_findings",
    "SUMMARY_COLUMNS", "HP_PREFIX", "DEFAULT_OUTER", "EdgeOfRangeRule", "EdgeOfRangeThresholds",
]

HP_PREFIX = "hp."


@dataclass(frozen=True)
class EdgeOfRangeThresholds(RuleThresholds):
    outer: float = knob(0.1, 0.01, 0.49, "fraction of the sampled range at each end")  # in log space for log params
    min_trials: int = knob(3, 1, 1_000_000, "runs with a value", integer=True)  # fewer: no verdict


@register
class EdgeOfRangeRule(Rule):
    """The search-level rule in the diagnosis registry (ids, thresholds, ``babysitter check --rules``).

    It needs several runs, so it never fires on one run's records (``update`` yields
    nothing); ``search_findings`` and ``edge_of_range`` evaluate it over a log directory.
    """

    id = "edge_of_range"
    severity = "warning"
    summary = ("In a hyperparameter search, the best run's value of a parameter lies in the outer `outer` "
               "fraction of its sampled range (log space for log-sampled parameters).")
    fix = "Shift the range: search again centred on the best value, with the same width."
    Thresholds = EdgeOfRangeThresholds

    def update(self, d: Delta) -> Iterable[Finding]:
        """A single run says nothing about a search: see ``search_findings``."""
        return ()


DEFAULT_OUTER = EdgeOfRangeThresholds().outer  # fraction of the (log-)range at each end counted as "the edge"
SUMMARY_COLUMNS = (
    "run", "status", "steps", "final_val_acc", "best_val_acc", "best_val_step", "final_train_acc", "gap",
    "final_loss", "diverged", "errors", "warnings", "infos", "findings",
)


@dataclass(frozen=True)
class RunSummary:
    """One run in a few numbers.

    Attributes:
        run: the run's name.
        status: ``"live"``, ``"finished"`` or ``"crashed"``.
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
        version: the ``Run.version`` this summary was computed at.
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

    def row(self) -> dict[str, Any]:
        """A flat dict: the ``SUMMARY_COLUMNS`` then ``hp.<name>`` for each hyperparameter."""
        out: dict[str, Any] = {
            "run": self.run, "status": self.status, "steps": self.steps,
            "final_val_acc": self.final_val_acc, "best_val_acc": self.best_val_acc,
            "best_val_step": self.best_val_step, "final_train_acc": self.final_train_acc, "gap": self.gap,
            "final_loss": self.final_loss, "diverged": self.diverged,
            "errors": self.severities.get("error", 0), "warnings": self.severities.get("warning", 0),
            "infos": self.severities.get("info", 0), "findings": ", ".join(self.rules),
        }
        for k, v in self.hparams.items():
            out[HP_PREFIX + str(k)] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form: non-finite numbers become None (the ``diverged`` flag keeps the fact)."""
        d = dataclasses.asdict(self)
        d["rules"] = list(self.rules)
        for k, v in d.items():
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = None
        return d


def run_findings(run: Run, diagnoser: Diagnoser | None = None) -> list[Finding]:
    """The run's findings: the diagnosis engine's, merged with those written by training.

    Args:
        run: the run, as read so far (call ``run.update()`` first).
        diagnoser: this run's ``Diagnoser`` from an earlier call; given, only the records
            added since that call are examined.
    """
    try:
        dx = diagnoser if diagnoser is not None else Diagnoser()
        dx.update(run)
        return dx.findings()
    except Exception:  # a failing rule must not hide the whole comparison; it is logged
        log.exception("diagnosis of run %s failed; showing the findings written by training only", run.name)
        return list(run.findings)


def summarize(run: Run, *, status: str | None = None, diagnoser: Diagnoser | None = None) -> RunSummary:
    """Summarise ``run`` as read so far (call ``run.update()`` first).

    Args:
        run: the run.
        status: the status to record (default ``run.status()``).
        diagnoser: passed on to ``run_findings``.

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
    findings = run_findings(run, diagnoser)
    sev = {s: 0 for s in SEVERITIES}
    for f in findings:
        sev[f.severity] = sev.get(f.severity, 0) + 1
    if any(f.rule == "nan_loss" for f in findings):
        diverged = True
    order = {s: i for i, s in enumerate(SEVERITIES)}
    rules = tuple(dict.fromkeys(f.rule for f in sorted(findings, key=lambda f: order.get(f.severity, 9))))
    meta = run.meta
    return RunSummary(
        run=run.name, status=status or run.status(), steps=run.last_step,
        final_val_acc=final_val, best_val_acc=best_val, best_val_step=best_step,
        final_train_acc=final_train,
        gap=final_train - final_val if math.isfinite(final_train) and math.isfinite(final_val) else math.nan,
        final_loss=final_loss, diverged=diverged, severities=sev, rules=rules,
        hparams=dict(meta.hparams), search_space=dict(meta.search_space), error=meta.error,
        created=meta.created, version=run.version,
    )


class SummaryCache:
    """Summaries computed once per run version.

    ``get(run)`` returns the cached summary while ``run.version`` is unchanged (only the
    status, which can turn from live to crashed without a write, is looked at again).
    Thread-safe.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, int, RunSummary]] = {}
        # One Diagnoser per run object: a live run's new version costs its new records only.
        self._dx: dict[str, tuple[int, Diagnoser, threading.Lock]] = {}
        self._lock = threading.Lock()
        self.computed = 0  # summaries computed so far (the rest were served from the cache)

    def get(self, run: Run) -> RunSummary:
        """The summary of ``run`` at its current version."""
        status = run.status()
        with self._lock:
            hit = self._cache.get(run.name)
        if hit is not None and hit[0] == id(run) and hit[1] == run.version:
            s = hit[2]
            if s.status != status:
                s = dataclasses.replace(s, status=status)
                with self._lock:
                    self._cache[run.name] = (id(run), run.version, s)
            return s
        with self._lock:
            dx = self._dx.get(run.name)
            if dx is None or dx[0] != id(run):
                dx = self._dx[run.name] = (id(run), Diagnoser(), threading.Lock())
        with dx[2]:  # a Diagnoser follows one run from one thread at a time
            s = summarize(run, status=status, diagnoser=dx[1])
        with self._lock:
            self._cache[run.name] = (id(run), s.version, s)
            self.computed += 1
        return s

    def summaries(self, runs: Iterable[Run]) -> list[RunSummary]:
        """Summaries of ``runs`` in order; forgets runs no longer listed."""
        runs = list(runs)
        out = [self.get(r) for r in runs]
        names = {r.name for r in runs}
        with self._lock:
            for gone in set(self._cache) - names:
                del self._cache[gone]
            for gone in set(self._dx) - names:
                del self._dx[gone]
        return out


def summaries_frame(summaries: Sequence[RunSummary]):
    """The summaries as a pandas DataFrame: ``SUMMARY_COLUMNS`` then ``hp.<name>`` columns (sorted)."""
    import pandas as pd

    rows = [s.row() for s in summaries]
    hp_cols = sorted({k for r in rows for k in r if k.startswith(HP_PREFIX)})
    df = pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, *hp_cols])
    for col in ("steps", "best_val_step", "errors", "warnings", "infos"):
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


# -- edge of range ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeOfRange:
    """The best run of a search sits at the edge of one parameter's sampled range.

    Attributes:
        param: the hyperparameter.
        side: ``"low"`` or ``"high"``.
        best_run: the best run's name.
        best_value: its value of ``param``.
        score: its objective value.
        low: the sampled range's low end.
        high: the sampled range's high end.
        log: whether the range was sampled in log space.
        position: where ``best_value`` sits in the range, 0 (low) to 1 (high), in log space when ``log``.
        outer: the edge fraction used.
        suggest_low: low end of the range to try next.
        suggest_high: high end of the range to try next.
        runs: number of runs judged.
        search: the runs' common name prefix (may be empty).
    """

    param: str
    side: str
    best_run: str
    best_value: float
    score: float
    low: float
    high: float
    log: bool
    position: float
    outer: float
    suggest_low: float
    suggest_high: float
    runs: int
    search: str = ""

    @property
    def finding(self) -> Finding:
        """The ``edge_of_range`` ``Finding`` (severity warning)."""
        scale = "log-uniform" if self.log else "uniform"
        where = "top" if self.side == "high" else "bottom"
        pct = (1 - self.position if self.side == "high" else self.position) * 100
        return Finding(
            rule="edge_of_range", severity="warning", step=0, layers=(),
            message=(f"The best run ({self.best_run}) has {self.param}={_fmt(self.best_value)}, in the {where} "
                     f"{pct:.0f}% of the sampled range [{_fmt(self.low)}, {_fmt(self.high)}] ({scale}, "
                     f"edge = outer {self.outer:.0%}); better values may lie beyond it."),
            fix=(f"Shift the range: search {self.param} in [{_fmt(self.suggest_low)}, {_fmt(self.suggest_high)}]"
                 f"{' (log-uniform)' if self.log else ''}."),
            value=self.position, threshold=self.outer,
        )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["finding"] = self.finding.to_json()
        return d


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _range_of(spec: Any) -> tuple[float, float, bool] | None:
    if not isinstance(spec, Mapping) or "choices" in spec or spec.get("type") == "choice":
        return None
    lo, hi = spec.get("low"), spec.get("high")
    if isinstance(lo, bool) or isinstance(hi, bool) or not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)):
        return None
    lo, hi = float(lo), float(hi)
    is_log = bool(spec.get("log"))
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) or (is_log and lo <= 0):
        return None
    return lo, hi, is_log


def _common_prefix(names: Sequence[str]) -> str:
    # "<search>-t003" -> "<search>" when every run follows the trial naming; else the common prefix.
    bases = {m.group(1) if (m := _TRIAL_RE.match(n)) else None for n in names}
    if len(bases) == 1 and None not in bases:
        return bases.pop()
    return os.path.commonprefix(list(names))


_TRIAL_RE = re.compile(r"^(.*)-t\d+$", re.S)


def edge_of_range(
    trials: Iterable[tuple[str, Mapping[str, Any], float | None]],
    search_space: Mapping[str, Any],
    *,
    mode: str = "max",
    outer: float = DEFAULT_OUTER,
    min_trials: int = 3,
) -> list[EdgeOfRange]:
    """Parameters whose best value lies at the edge of the range they were sampled from.

    Args:
        trials: ``(run name, hparams, objective)`` per run; runs without a finite objective
            (crashed, diverged) do not compete for best.
        search_space: ``{"lr": {"low": 1e-6, "high": 1e-3, "log": true}, ...}`` as in ``meta.json``.
            Choice parameters are skipped.
        mode: ``"max"`` (accuracy) or ``"min"`` (loss).
        outer: the fraction of the range at each end that counts as the edge, in (0, 0.5).
        min_trials: fewer runs with an objective than this give no finding.

    Returns:
        One ``EdgeOfRange`` per parameter at an edge (empty when none is).

    Raises:
        ConfigError: for a bad ``mode``, ``outer`` or ``min_trials``.
    """
    from .errors import ConfigError

    if mode not in ("max", "min"):
        raise ConfigError(f"mode must be 'max' or 'min', got {mode!r}")
    if not 0 < outer < 0.5:
        raise ConfigError(f"outer must be a fraction in (0, 0.5) of the range at each end, got {outer!r}")
    if not isinstance(min_trials, int) or min_trials < 1:
        raise ConfigError(f"min_trials must be a positive integer, got {min_trials!r}")
    scored = [(n, hp, float(v)) for n, hp, v in trials
              if v is not None and not isinstance(v, bool) and math.isfinite(float(v))]
    if len(scored) < min_trials:
        return []
    best_name, best_hp, best_score = (max if mode == "max" else min)(scored, key=lambda t: t[2])
    prefix = _common_prefix([n for n, _, _ in scored])
    out: list[EdgeOfRange] = []
    for param, spec in search_space.items():
        rng = _range_of(spec)
        v = best_hp.get(param)
        if rng is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        lo, hi, is_log = rng
        v = float(v)
        if is_log and v <= 0:
            continue
        f = math.log10 if is_log else float
        a, b, x = f(lo), f(hi), f(v)
        pos = (x - a) / (b - a)
        if outer <= pos <= 1 - outer:
            continue
        side = "low" if pos < outer else "high"
        half = (b - a) / 2
        s_lo, s_hi = x - half, x + half
        inv = (lambda u: 10.0 ** u) if is_log else float
        out.append(EdgeOfRange(
            param=param, side=side, best_run=best_name, best_value=v, score=best_score, low=lo, high=hi,
            log=is_log, position=pos, outer=outer, suggest_low=inv(s_lo), suggest_high=inv(s_hi),
            runs=len(scored), search=prefix,
        ))
    return out


def search_findings(
    summaries: Sequence[RunSummary],
    *,
    metric: str = "best_val_acc",
    mode: str = "max",
    outer: float = DEFAULT_OUTER,
    min_trials: int = 3,
) -> list[EdgeOfRange]:
    """``edge_of_range`` for every search among ``summaries``.

    Runs are grouped by the search space in their ``meta.json``: runs of one search share
    it, and a coarse and a fine search (different ranges) are judged apart. Runs without a
    search space are not part of any search.

    Args:
        summaries: run summaries.
        metric: the ``RunSummary`` field to rank by (``"best_val_acc"``, ``"final_val_acc"``, ``"final_loss"``...).
            When no run of a group has it, ``final_loss`` (lower is better) is used instead.
        mode: ``"max"`` or ``"min"`` for ``metric``.
        outer: edge fraction, see ``edge_of_range``.
        min_trials: see ``edge_of_range``.
    """
    groups: dict[str, list[RunSummary]] = {}
    for s in summaries:
        if s.search_space:
            groups.setdefault(json.dumps(s.search_space, sort_keys=True, default=str), []).append(s)
    out: list[EdgeOfRange] = []
    for members in groups.values():
        m, md = metric, mode
        if not any(_finite(getattr(s, m, None)) for s in members):
            m, md = "final_loss", "min"
        trials = [(s.run, s.hparams, getattr(s, m, None) if _finite(getattr(s, m, None)) else None) for s in members]
        out.extend(edge_of_range(trials, members[0].search_space, mode=md, outer=outer, min_trials=min_trials))
    return out


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)



# -- table queries (one implementation for the CLI and the dashboard) ---------------------------

_FILTER_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|=|>|<)\s*(.*?)\s*$", re.S)


def column_for(df, name: str) -> str:
    """The DataFrame column ``name`` refers to: itself, or ``hp.<name>`` for a hyperparameter.

    Raises:
        ConfigError: for an unknown column, listing the ones there are.
    """
    from .errors import ConfigError

    if name in df.columns:
        return name
    if HP_PREFIX + name in df.columns:
        return HP_PREFIX + name
    raise ConfigError(f"no column {name!r}; columns: {', '.join(map(str, df.columns))}")


def filter_frame(df, text: str | None):
    """Rows of a summary DataFrame that match ``text``.

    ``COLUMN OP VALUE`` (``OP`` one of ``= != > < >= <=``; ``COLUMN`` a summary column or a
    hyperparameter name) compares numerically when ``VALUE`` is a number, else as text;
    anything else keeps the rows whose run name, status or findings contain ``text``
    (case-insensitive). Nothing is evaluated.

    Raises:
        ConfigError: for an unknown column.
    """
    import pandas as pd

    if not text or not text.strip():
        return df
    m = _FILTER_RE.match(text)
    if m is None or (m.group(1) not in df.columns and HP_PREFIX + m.group(1) not in df.columns
                     and m.group(1) not in SUMMARY_COLUMNS):
        needle = text.strip().lower()
        hay = (df["run"].astype(str) + "\n" + df["status"].astype(str) + "\n" + df["findings"].astype(str)).str.lower()
        return df[hay.str.contains(needle, regex=False)]
    col, op, raw = column_for(df, m.group(1)), m.group(2), m.group(3)
    try:
        val: Any = float(raw)
        series = pd.to_numeric(df[col], errors="coerce")
    except ValueError:
        val, series = raw, df[col].astype(str)
    ops = {"=": series.eq, "!=": series.ne, ">": series.gt, "<": series.lt, ">=": series.ge, "<=": series.le}
    mask = ops[op](val)
    return df[mask.fillna(False).astype(bool)]


def sort_frame(df, column: str | None = None, *, descending: bool | None = None):
    """Sort a summary DataFrame by ``column`` (default ``best_val_acc``), missing values last.

    Accuracies sort high to low and everything else low to high unless ``descending`` says otherwise.
    A leading ``-`` on ``column`` also asks for descending order.

    Raises:
        ConfigError: for an unknown column.
    """
    column = column or "best_val_acc"
    if column.startswith("-"):
        column, descending = column[1:], True
    col = column_for(df, column)
    if descending is None:
        descending = "acc" in col and col != "best_val_step"
    try:
        return df.sort_values(col, ascending=not descending, na_position="last", kind="stable")
    except TypeError:  # a hyperparameter holding numbers in some runs and text in others
        return df.sort_values(col, ascending=not descending, na_position="last", kind="stable",
                              key=lambda s: s.astype(str))


def hparam_specs(summaries: Sequence[RunSummary]) -> dict[str, dict[str, Any]]:
    """Each hyperparameter seen in ``summaries``: ``{"log", "numeric", "varying", "sampled", "low", "high"}``.

    ``log`` is taken from the search spaces when a run sampled the parameter, else guessed:
    positive numbers spanning more than a factor of 100 are drawn on a log axis.
    ``low``/``high`` are the widest sampled range (None outside a search); ``varying`` is
    False when every run has the same value (nothing to compare).
    """
    specs: dict[str, dict[str, Any]] = {}
    values: dict[str, list[Any]] = {}
    for s in summaries:
        for k, v in s.hparams.items():
            values.setdefault(k, []).append(v)
        for k, spec in s.search_space.items():
            rng = _range_of(spec)
            if rng is None:
                continue
            lo, hi, is_log = rng
            d = specs.setdefault(k, {"log": is_log, "low": lo, "high": hi, "sampled": True})
            d["log"] = d["log"] or is_log
            d["low"], d["high"] = min(d["low"], lo), max(d["high"], hi)
    out: dict[str, dict[str, Any]] = {}
    for k, vals in values.items():
        nums = [float(v) for v in vals if _finite(v)]
        numeric = len(nums) == len(vals) and bool(nums)
        d = specs.get(k)
        if d is None:
            guess = numeric and min(nums) > 0 and max(nums) / min(nums) > 100
            d = {"log": bool(guess), "low": None, "high": None, "sampled": False}
        distinct = {json.dumps(v, sort_keys=True, default=str) for v in vals}
        varying = len(distinct) > 1 or len(vals) < len(summaries)
        out[k] = {**d, "numeric": numeric, "log": bool(d["log"] and numeric), "varying": varying}
    return out
