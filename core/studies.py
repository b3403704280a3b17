"""Hyperparameter-search studies as the run folders tell them: one ``StudySummary`` per study.

A trial of a search run as an Optuna study (``monitor.search.random_search``) writes a
``study`` object into its ``meta.json``: the study's name, the trial number, its state
(``running``, ``complete``, ``pruned``, ``fail``), the objective of a complete trial and,
for a pruned one, the finding that pruned it and the last step trained. ``study_summaries``
groups run summaries by study, so that ``babysitter compare`` and the compare page show
each study apart: how many trials finished, were pruned or failed, which one is best (the
study's own best trial: the best objective among complete trials), and what pruned the
others. The run folders are the source; the Optuna storage is not read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .summary import RunSummary
from .schema import TRIAL_STATES

__all__ = ["StudySummary", "study_summaries", "group_by_study"]


@dataclass(frozen=True)
class StudySummary:
    """One study, from the runs of its trials.

    Attributes:
        name: the study name.
        storage: where the study lives (as the trials recorded it).
        direction: ``"maximize"`` or ``"minimize"``.
        metric: the scalar the objective is read from.
        states: trials per state (every one of ``TRIAL_STATES``, 0 when none).
        best_run: the run of the best complete trial (None before one completes).
        best_value: its objective.
        best_hparams: its hyperparameters.
        pruned: ``(run, steps trained, finding)`` of each pruned trial, by trial number.
        runs: the study's run names, by trial number.
    """

    name: str
    storage: str | None
    direction: str
    metric: str | None
    states: dict[str, int]
    best_run: str | None
    best_value: float | None
    best_hparams: dict[str, Any]
    pruned: list[tuple[str, int | None, Any]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def trials(self) -> int:
        return sum(self.states.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "storage": self.storage, "direction": self.direction, "metric": self.metric,
            "trials": self.trials, "states": dict(self.states), "best_run": self.best_run,
            "best_value": self.best_value, "best_hparams": self.best_hparams,
            "pruned": [{"run": r, "steps": n, "finding": f.to_json() if f is not None else None}
                       for r, n, f in self.pruned],
            "runs": list(self.runs),
        }


def group_by_study(summaries: Sequence[RunSummary]) -> dict[str | None, list[RunSummary]]:
    """Summaries by study name, in trial order; runs outside any study under ``None`` (last)."""
    out: dict[str | None, list[RunSummary]] = {}
    for s in sorted(summaries, key=lambda s: (s.study is None, s.study.name if s.study else "",
                                              s.study.trial if s.study else 0, s.run)):
        out.setdefault(s.study.name if s.study else None, []).append(s)
    return out


def study_summaries(summaries: Sequence[RunSummary]) -> list[StudySummary]:
    """One ``StudySummary`` per study among ``summaries``, by study name."""
    out = []
    for name, members in group_by_study(summaries).items():
        if name is None:
            continue
        first = members[0].study
        assert first is not None
        states = {s: 0 for s in TRIAL_STATES}
        for m in members:
            # A trial whose meta.json still says running but whose process is gone failed.
            st = m.study.state if m.study else "running"
            if st == "running" and m.status == "crashed":
                st = "fail"
            states[st] += 1
        done = [m for m in members if m.study and m.study.state == "complete" and m.study.value is not None]
        sign = -1.0 if first.direction == "maximize" else 1.0
        # Ties go to the lowest trial number, as Optuna's best_trial does.
        best = min(done, key=lambda m: (sign * m.study.value, m.study.trial)) if done else None  # type: ignore[union-attr]
        out.append(StudySummary(
            name=name, storage=first.storage, direction=first.direction, metric=first.metric, states=states,
            best_run=best.run if best else None, best_value=best.study.value if best else None,  # type: ignore[union-attr]
            best_hparams=dict(best.hparams) if best else {},
            pruned=[(m.run, m.study.steps, m.study.pruned_by) for m in members if m.status == "pruned" and m.study],
            runs=[m.run for m in members],
        ))
    return out
