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

from ._rules import Delta, Rule, RuleThresholds, knob, register
from .schema import Finding
from .summary import RunSummary

__all__ = ["EdgeOfRange", "EdgeOfRangeRule", "EdgeOfRangeThresholds", "DEFAULT_OUTER", "edge_of_range",
           "search_findings"]


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
