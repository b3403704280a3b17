"""Diagnosis-driven pruning: the lecture's checks stop a failing trial while it trains.

Every Monitor a trial opens gets a ``TrialWatch`` in its ``on_log`` callbacks. On each
logged step (the steps with layer statistics, ``Monitor.stats_due``) and at once on a step
whose loss or another scalar is NaN/Inf, the watch reads the new records of the trial's
own run folder back (``core.reader.Run.update``, only the bytes appended since the last
look) and hands them to an incremental ``core.diagnose.Diagnoser``, the engine the
dashboard runs. A finding whose rule or severity is in ``prune_on`` (every ``error`` by
default: ``loss_explosion``, ``nan_loss``, ``nonfinite_values``, ...) closes the run with
the finding in its ``meta.json`` and raises ``optuna.TrialPruned`` from ``Monitor.log``,
so the training loop stops at that step without any code of its own.

An Optuna pruner (``MedianPruner``, ``SuccessiveHalvingPruner``, ...) given to the search
is fed with the metric the search optimises: each logged value of it is reported
(``Trial.report(value, step)``) and ``Trial.should_prune()`` asked.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from core.diagnose import DiagnosisConfig, Diagnoser
from core.errors import ConfigError
from core.schema import SEVERITIES, Finding, metric_key

log = logging.getLogger(__name__)


def prune_rules(prune: bool | str | Iterable[str] | None) -> frozenset[str]:
    """The rule ids and severities that prune a trial: ``True`` -> every error; ``False``/``None`` -> none.

    Raises:
        ConfigError: for a name that is neither a registered rule nor a severity.
    """
    from core.diagnose import rule_ids

    if prune is None or prune is False:
        return frozenset()
    if prune is True:
        return frozenset({"error"})
    items = {prune} if isinstance(prune, str) else set(prune)
    known = set(rule_ids()) | set(SEVERITIES)
    bad = sorted(str(x) for x in items - known)
    if bad:
        raise ConfigError(f"prune: unknown rule or severity {bad}; use True (every error), a severity "
                          f"({', '.join(SEVERITIES)}) or rule ids ({', '.join(rule_ids())})")
    return frozenset(items)


def pruning_config(config: DiagnosisConfig | None, prune_on: frozenset[str]) -> DiagnosisConfig:
    """``config`` with only the rules that can prune enabled (and those that suppress them).

    A trial is diagnosed at every logged step; rules whose findings could never prune it
    are not run (a rule reports at its own severity or lower, never higher).
    """
    from core.rules import RULES

    cfg = config or DiagnosisConfig()
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    limit = max((rank[s] for s in prune_on if s in rank), default=-1)
    keep = {rid for rid, cls in RULES.items() if rid in prune_on or rank.get(cls.severity, 9) <= limit}
    keep |= {sup for rid in keep for sup in RULES[rid].suppressed_by}
    return DiagnosisConfig(overrides=cfg.overrides, disable=set(cfg.disable) | (set(RULES) - keep))


def pruner_finding(pruner: Any, step: int, metric: str, value: float) -> Finding:
    """The finding recorded when an Optuna pruner stopped a trial."""
    name = type(pruner).__name__
    return Finding(rule="optuna_pruner", severity="info", step=step,
                   message=f"{name} stopped the trial at step {step}: {metric}={value:.4g} compares badly with "
                           f"the other trials at that step.",
                   fix="Nothing to fix in this run; the study spends its time on better trials.", value=value)


@dataclass
class TrialWatch:
    """Follows the runs of one trial and prunes it (see the module docstring).

    Attributes:
        otrial: the ``optuna.Trial``.
        prune_on: rule ids and severities that prune.
        config: thresholds of the diagnosis rules.
        metric: the scalar the search optimises (reported to ``pruner``).
        pruner: the study's Optuna pruner, or None.
        finding: what pruned the trial, once it was pruned.
        steps: the last step the trial logged.
    """

    otrial: Any
    prune_on: frozenset[str]
    config: DiagnosisConfig | None = None
    metric: str = "val_acc"
    pruner: Any = None
    study_meta: dict[str, Any] = field(default_factory=dict)
    finding: Finding | None = None
    steps: int | None = None
    monitors: list[Any] = field(default_factory=list)
    _runs: dict[int, tuple[Any, Diagnoser]] = field(default_factory=dict)
    _failed: bool = False

    def __call__(self, mon: Any, step: int, values: Mapping[str, float | None]) -> None:
        if mon not in self.monitors:
            self.monitors.append(mon)
        self.steps = step if self.steps is None else max(self.steps, step)
        if self.finding is not None:
            return
        if self.pruner is not None:
            key = metric_key(values, self.metric)  # val_acc logged as val_accuracy, eval_accuracy, ...
            v = values.get(key) if key is not None else None
            if v is not None and math.isfinite(v):
                self.otrial.report(float(v), step)
                if self.otrial.should_prune():
                    self._prune(mon, pruner_finding(self.pruner, step, self.metric, float(v)))
        if self.prune_on and not self._failed and (mon.stats_due(step) or None in values.values()):
            f = self._diagnose(mon)
            if f is not None:
                self._prune(mon, f)

    def _diagnose(self, mon: Any) -> Finding | None:
        from core.reader import Run

        try:
            mon.flush()  # this step's layer statistics are written before they are read back
            entry = self._runs.get(id(mon))
            if entry is None:
                entry = self._runs[id(mon)] = (Run(mon.run_dir), Diagnoser(pruning_config(self.config, self.prune_on)))
            run, dx = entry
            run.update()
            dx.update(run)
            for f in dx.findings():
                if f.rule in self.prune_on or f.severity in self.prune_on:
                    return f
        except Exception as err:  # pruning is an optimisation: a failure never stops the training
            self._failed = True
            log.warning("diagnosis of trial %d failed (%s: %s); it is not pruned by findings from now on",
                        self.otrial.number, type(err).__name__, err)
        return None

    def _prune(self, mon: Any, finding: Finding) -> None:
        import optuna

        self.finding = finding
        log.info("trial %d pruned at step %s by %s: %s", self.otrial.number, self.steps, finding.rule,
                 finding.message)
        for m in self.monitors:
            m.set_meta(study=self.outcome("pruned"))
            m.close()  # finished: the search stopped it; the training code's own close() is then a no-op
        raise optuna.TrialPruned(f"{finding.rule} at step {finding.step}: {finding.message}")

    def outcome(self, state: str, value: float | None = None) -> dict[str, Any]:
        """The ``study`` object of ``meta.json`` for this trial in ``state``."""
        out = dict(self.study_meta)
        out.update(state=state, steps=self.steps, value=value,
                   pruned_by=self.finding.to_json() if self.finding is not None and state == "pruned" else None)
        return out
