"""The search-level check: the lecture's "best value at the edge of the range".

``edge_of_range``: in a hyperparameter search the best run's value of a parameter lies in
the outer ``outer`` fraction (default 10%) of the sampled range at either end, measured in
log space for log-sampled parameters. The finding names the range to try next: the same
width, centred on the best value. With random sampling and no real effect, the best run
lands in the outer 10% at either end 20% of the time, so the rule is a warning and needs
``min_trials`` runs; 10% rather than 20% halves those false alarms while still catching a
best value squeezed against the end of the range.

``search_findings`` groups runs by the search space in their ``meta.json`` (one group per
search: a coarse and a fine search are judged apart) and runs ``edge_of_range`` on each.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .rules import Delta, Rule, RuleThresholds, knob, register
from .schema import Finding
from .summary import RunSummary

__all__ = ["EdgeOfRange", "EdgeOfRangeRule", "EdgeOfRangeThresholds", "DEFAULT_OUTER", "edge_of_range",
           "edge_thresholds", "search_findings"]


@dataclass(frozen=True)
class EdgeOfRangeThresholds(RuleThresholds):
    outer: float = knob(0.1, 0.01, 0.49, "fraction of the sampled range at each end")  # in log space for log params
    min_trials: int = knob(3, 1, 1_000_000, "runs with a value", integer=True)  # fewer: no verdict
    # The best run at the most extreme value sampled, though not in the outer fraction, counts
    # when the objective rises toward that end: Spearman's rank correlation between the value
    # (log for log params) and the objective at least min_trend, over at least min_trend_trials
    # runs. With no real effect, 10 random trials pass both about 3% of the time per parameter.
    min_trend: float = knob(0.6, 0.0, 1.0, "rank correlation of value and objective toward that end")
    min_trend_trials: int = knob(6, 3, 1_000_000, "runs with a value for the trend check", integer=True)


@register
class EdgeOfRangeRule(Rule):
    """The search-level rule in the diagnosis registry (ids, thresholds, ``babysitter check --rules``).

    It needs several runs, so it never fires on one run's records (``update`` yields
    nothing); ``search_findings`` and ``edge_of_range`` evaluate it over a log directory.
    """

    id = "edge_of_range"
    severity = "warning"
    summary = ("In a hyperparameter search, the best run's value of a parameter lies in the outer `outer` "
               "fraction of its sampled range (log space for log-sampled parameters), or it is the most extreme "
               "value sampled and the objective rises toward that end (rank correlation >= min_trend).")
    fix = "Shift the range: search again centred on the best value, with the same width."
    Thresholds = EdgeOfRangeThresholds

    def update(self, d: Delta) -> Iterable[Finding]:
        """A single run says nothing about a search: see ``search_findings``."""
        return ()


DEFAULT_OUTER = EdgeOfRangeThresholds().outer  # fraction of the (log-)range at each end counted as "the edge"


def edge_thresholds(config: Any = None, **given: float | None) -> EdgeOfRangeThresholds:
    """The thresholds ``edge_of_range`` runs with: ``config``'s (a ``DiagnosisConfig``; the defaults when
    None), with each keyword that is not None in place of the config's value.

    Every value is checked against its ``knob`` range, as any rule's override is.

    Raises:
        ConfigError: for a value out of its range (the message names it, its range and unit).
    """
    from .diagnose import DiagnosisConfig  # late: the diagnosis module imports every rule

    base = (config if config is not None else DiagnosisConfig()).thresholds(EdgeOfRangeRule.id)
    given = {k: v for k, v in given.items() if v is not None}
    return dataclasses.replace(base, **given) if given else base


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
        reason: ``"edge"`` (in the outer fraction) or ``"trend"`` (the most extreme value sampled,
            with the objective rising toward that end).
        trend: the rank correlation of value and objective, signed so that positive points toward ``side``.
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
    reason: str = "edge"
    trend: float | None = None

    @property
    def finding(self) -> Finding:
        """The ``edge_of_range`` ``Finding`` (severity warning)."""
        scale = "log-uniform" if self.log else "uniform"
        where = "top" if self.side == "high" else "bottom"
        pct = (1 - self.position if self.side == "high" else self.position) * 100
        rng = f"[{_fmt(self.low)}, {_fmt(self.high)}] ({scale}"
        if self.reason == "trend":
            most = "highest" if self.side == "high" else "lowest"
            message = (f"The best run ({self.best_run}) has {self.param}={_fmt(self.best_value)}, the {most} value "
                       f"sampled (at {self.position:.0%} of the range {rng}), and the objective rises toward that "
                       f"end (rank correlation {self.trend:.2f} over {self.runs} runs): the best value likely lies "
                       f"beyond the {most} sample, though nobody sampled the outer {self.outer:.0%}.")
        else:
            message = (f"The best run ({self.best_run}) has {self.param}={_fmt(self.best_value)}, in the {where} "
                       f"{pct:.0f}% of the sampled range {rng}, edge = outer {self.outer:.0%}); better values may "
                       f"lie beyond it.")
        return Finding(
            rule="edge_of_range", severity="warning", step=0, layers=(),
            message=message,
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
    config: Any = None,
    outer: float | None = None,
    min_trials: int | None = None,
    min_trend: float | None = None,
    min_trend_trials: int | None = None,
) -> list[EdgeOfRange]:
    """Parameters whose best value lies at the edge of the range they were sampled from.

    Two ways count: the best value lies in the outer ``outer`` fraction at either end; or it
    is the most extreme value any run sampled at that end (none sampled the outer fraction)
    and the objective rises toward that end (Spearman's rank correlation at least
    ``min_trend`` over at least ``min_trend_trials`` runs).

    Args:
        trials: ``(run name, hparams, objective)`` per run; runs without a finite objective
            (crashed, diverged) do not compete for best.
        search_space: ``{"lr": {"low": 1e-6, "high": 1e-3, "log": true}, ...}`` as in ``meta.json``.
            Choice parameters are skipped.
        mode: ``"max"`` (accuracy) or ``"min"`` (loss).
        config: a ``DiagnosisConfig`` whose ``edge_of_range.*`` thresholds apply (the defaults when None).
        outer: the fraction of the range at each end that counts as the edge (``edge_of_range.outer``).
        min_trials: fewer runs with an objective than this give no finding (``edge_of_range.min_trials``).
        min_trend: the rank correlation the trend check needs (``edge_of_range.min_trend``).
        min_trend_trials: fewer runs than this give no trend verdict (``edge_of_range.min_trend_trials``).
            Each of the four, when not None, replaces the config's value.

    Returns:
        One ``EdgeOfRange`` per parameter at an edge (empty when none is).

    Raises:
        ConfigError: for a bad ``mode`` or a threshold out of its range.
    """
    from .errors import ConfigError

    if mode not in ("max", "min"):
        raise ConfigError(f"mode must be 'max' or 'min', got {mode!r}")
    th = edge_thresholds(config, outer=outer, min_trials=min_trials, min_trend=min_trend,
                         min_trend_trials=min_trend_trials)
    outer, min_trials, min_trend, min_trend_trials = th.outer, th.min_trials, th.min_trend, th.min_trend_trials
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
        reason, trend = "edge", None
        if outer <= pos <= 1 - outer:
            got = _trend_toward_extreme(scored, param, best_name, f, mode, is_log)
            # (1e-9: a perfect rank order computes as 0.9999999...)
            if got is None or len(scored) < min_trend_trials or got[1] < min_trend - 1e-9:
                continue
            side, trend = got
            reason = "trend"
        else:
            side = "low" if pos < outer else "high"
        half = (b - a) / 2
        s_lo, s_hi = x - half, x + half
        inv = (lambda u: 10.0 ** u) if is_log else float
        out.append(EdgeOfRange(
            param=param, side=side, best_run=best_name, best_value=v, score=best_score, low=lo, high=hi,
            log=is_log, position=pos, outer=outer, suggest_low=inv(s_lo), suggest_high=inv(s_hi),
            runs=len(scored), search=prefix, reason=reason, trend=trend,
        ))
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for u in np.unique(x):
        tie = x == u
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def _trend_toward_extreme(scored: Sequence[tuple[str, Mapping[str, Any], float]], param: str, best: str, f: Any,
                          mode: str, is_log: bool) -> tuple[str, float] | None:
    """``(side, rank correlation toward it)`` when the best run holds the most extreme value of ``param``."""
    pts = [(f(float(hp[param])), score, name) for name, hp, score in scored
           if isinstance(hp.get(param), (int, float)) and not isinstance(hp.get(param), bool)
           and math.isfinite(float(hp[param])) and (not is_log or float(hp[param]) > 0)]
    if len(pts) < 3:
        return None
    xs = np.array([p[0] for p in pts])
    ys = np.array([p[1] for p in pts]) * (1 if mode == "max" else -1)
    bx = next(p[0] for p in pts if p[2] == best)
    if bx >= xs.max() and (xs < bx).any():
        side = "high"
    elif bx <= xs.min() and (xs > bx).any():
        side = "low"
    else:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    if rx.std() == 0 or ry.std() == 0:
        return None
    rho = float(np.corrcoef(rx, ry)[0, 1])
    return side, rho if side == "high" else -rho


def search_findings(
    summaries: Sequence[RunSummary],
    *,
    metric: str = "best_val_acc",
    mode: str = "max",
    config: Any = None,
    outer: float | None = None,
    min_trials: int | None = None,
    min_trend: float | None = None,
    min_trend_trials: int | None = None,
) -> list[EdgeOfRange]:
    """``edge_of_range`` for every search among ``summaries``.

    Runs are grouped by study (``meta.json``'s ``study``: each study is judged on its own,
    on the objective of its complete trials, in its direction; pruned and failed trials do
    not compete), and other runs by the search space in their ``meta.json``: runs of one
    search share it, and a coarse and a fine search (different ranges) are judged apart.
    Runs without a search space are not part of any search.

    Args:
        summaries: run summaries.
        metric: the ``RunSummary`` field to rank by (``"best_val_acc"``, ``"final_val_acc"``, ``"final_loss"``...).
            When no run of a group has it, ``final_loss`` (lower is better) is used instead.
        mode: ``"max"`` or ``"min"`` for ``metric``.
        config: the ``DiagnosisConfig`` of the thresholds, see ``edge_of_range``.
        outer: edge fraction, see ``edge_of_range``.
        min_trials: see ``edge_of_range``.
        min_trend: see ``edge_of_range``.
        min_trend_trials: see ``edge_of_range``.

    Raises:
        ConfigError: for a threshold out of its range (even when no run is part of a search).
    """
    th = edge_thresholds(config, outer=outer, min_trials=min_trials, min_trend=min_trend,
                         min_trend_trials=min_trend_trials)
    knobs = dict(outer=th.outer, min_trials=th.min_trials, min_trend=th.min_trend,
                 min_trend_trials=th.min_trend_trials)
    groups: dict[str, list[RunSummary]] = {}
    for s in summaries:
        if s.study is not None:
            groups.setdefault("study\0" + s.study.name, []).append(s)
        elif s.search_space:
            groups.setdefault(json.dumps(s.search_space, sort_keys=True, default=str), []).append(s)
    out: list[EdgeOfRange] = []
    for members in groups.values():
        study = members[0].study
        space = next((s.search_space for s in members if s.search_space), {})
        if study is not None:
            scored = [(s.run, s.hparams, s.study.value if s.study and s.study.state == "complete" else None)
                      for s in members]
            if any(v is not None for _, _, v in scored):
                found = edge_of_range(scored, space, mode="min" if study.direction == "minimize" else "max",
                                      **knobs)
                out.extend(dataclasses.replace(e, search=study.name) for e in found)
                continue
        m, md = metric, mode
        if not any(_finite(getattr(s, m, None)) for s in members):
            m, md = "final_loss", "min"
        trials = [(s.run, s.hparams, getattr(s, m, None) if _finite(getattr(s, m, None)) else None) for s in members]
        out.extend(edge_of_range(trials, space, mode=md, **knobs))
    return out


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
