"""Accuracy rules: overfitting, underfitting and the overfit-a-tiny-subset sanity check."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..schema import SANITY_OVERFIT, Finding
from ._base import Delta, Rule, RuleThresholds, knob, register, regularization_of


# -- accuracy -----------------------------------------------------------------------------------


class _AccPairs:
    """Pairs each ``val_acc`` point with the mean ``train_acc`` logged since the previous one."""

    def __init__(self) -> None:
        self.sum = 0.0
        self.n = 0
        self.last_train: float | None = None
        self.evals = 0

    def feed(self, d: Delta) -> list[tuple[int, float, float, int]]:
        """New ``(step, train_acc, val_acc, eval_index)`` tuples, in step order."""
        ts, tv = d.scalar("train_acc")
        vs, vv = d.scalar("val_acc")
        events = sorted([(int(s), 0, float(v)) for s, v in zip(ts, tv)] + [(int(s), 1, float(v)) for s, v in zip(vs, vv)])
        out = []
        for s, kind, v in events:
            if kind == 0:
                if math.isfinite(v):
                    self.sum += v
                    self.n += 1
                    self.last_train = v
                continue
            train = self.sum / self.n if self.n else self.last_train
            self.sum, self.n = 0.0, 0
            if train is None or not math.isfinite(v):
                continue
            self.evals += 1
            out.append((s, train, v, self.evals))
        return out


@dataclass(frozen=True)
class OverfittingThresholds(RuleThresholds):
    max_gap: float = knob(0.15, 0.0, 1.0, "train_acc - val_acc")  # a larger gap is "large"
    min_growth: float = knob(0.05, 0.0, 1.0, "increase of the gap over its smallest value")  # "growing"
    patience: int = knob(2, 1, 1000, "consecutive validation points", integer=True)


@register
class Overfitting(Rule):
    id = "overfitting"
    severity = "warning"
    summary = ("train_acc - val_acc is above max_gap and has grown by min_growth since its smallest value, for "
               "patience validation points (train_acc: mean since the previous validation).")
    fix = "Add regularization (raise reg / weight decay, dropout, data augmentation), use more data, or stop earlier."
    Thresholds = OverfittingThresholds
    suppressed_by = ("nan_loss", "loss_explosion")

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.pairs = _AccPairs()
        self.min_gap = math.inf
        self.streak: list[int] = []
        self.done = False

    def update(self, d: Delta) -> Iterator[Finding]:
        if d.meta.sanity == SANITY_OVERFIT:  # overfitting the tiny subset is the goal of that check
            return
        for s, tr, va, _ in self.pairs.feed(d):
            if self.done:
                continue
            gap = tr - va
            self.min_gap = min(self.min_gap, gap)
            if gap > self.t.max_gap and gap - self.min_gap >= self.t.min_growth:
                self.streak.append(s)
            else:
                self.streak = []
            if len(self.streak) >= self.t.patience:
                self.done = True
                yield self.finding(
                    self.streak[0], f"Train accuracy {tr:.1%} vs validation {va:.1%} at step {s}: a gap of {gap:.1%} "
                                    f"(threshold {self.t.max_gap:.0%}), above the threshold and growing since step "
                                    f"{self.streak[0]}, up from {self.min_gap:.1%}.",
                    value=gap, threshold=self.t.max_gap)


@dataclass(frozen=True)
class UnderfittingThresholds(RuleThresholds):
    min_train_acc: float = knob(0.6, 0.0, 1.0, "training accuracy")  # below this after min_evals is "low"
    min_evals: int = knob(5, 1, 100_000, "validation points (epochs) before judging", integer=True)
    max_gap: float = knob(0.1, 0.0, 1.0, "train_acc - val_acc")  # "no gap"


@register
class Underfitting(Rule):
    id = "underfitting"
    severity = "warning"
    summary = ("After min_evals validation points, training accuracy is still below min_train_acc with no gap to "
               "validation (or, without validation, at the end of the run).")
    fix = "Use a bigger model (wider or deeper), train longer, lower the regularization, or tune the learning rate."
    Thresholds = UnderfittingThresholds
    suppressed_by = ("nan_loss", "loss_explosion", "lr_too_low")

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.pairs = _AccPairs()
        self.done = False
        self.last_train: tuple[int, float] | None = None

    def update(self, d: Delta) -> Iterator[Finding]:
        ts, tv = d.scalar("train_acc")
        fin = np.isfinite(tv)
        if fin.any():
            j = int(np.nonzero(fin)[0][-1])
            self.last_train = (int(ts[j]), float(tv[j]))
        for s, tr, va, k in self.pairs.feed(d):
            if self.done or k < self.t.min_evals:
                continue
            if tr < self.t.min_train_acc and tr - va < self.t.max_gap:
                self.done = True
                yield self.finding(
                    s, f"After {k} evaluations, training accuracy is {tr:.1%} (threshold {self.t.min_train_acc:.0%}) "
                       f"and validation {va:.1%}: the model underfits.",
                    value=tr, threshold=self.t.min_train_acc)
        if (not self.done and d.finished and self.pairs.evals == 0 and self.last_train is not None
                and d.meta.sanity is None and self.last_train[1] < self.t.min_train_acc):
            self.done = True
            s, tr = self.last_train
            yield self.finding(
                s, f"The run ended with training accuracy {tr:.1%} (threshold {self.t.min_train_acc:.0%}): "
                   f"the model underfits.", value=tr, threshold=self.t.min_train_acc)


@dataclass(frozen=True)
class CannotOverfitThresholds(RuleThresholds):
    min_train_acc: float = knob(1.0, 0.0, 1.0, "best training accuracy on the tiny subset")


@register
class CannotOverfit(Rule):
    id = "cannot_overfit"
    severity = "error"
    summary = ("In the overfit-a-tiny-subset sanity mode (meta sanity='overfit_small'), the finished run's best "
               "training accuracy stayed below min_train_acc.")
    fix = ("The model, the loss or the gradient is broken: check the backward pass (gradient check), the labels "
           "and that the optimizer updates every parameter; keep regularization off for this check.")
    Thresholds = CannotOverfitThresholds

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.best: float = -math.inf
        self.last_step: int | None = None
        self.done = False

    def update(self, d: Delta) -> Iterator[Finding]:
        if self.done or d.meta.sanity != SANITY_OVERFIT:
            return
        ts, tv = d.scalar("train_acc")
        fin = np.isfinite(tv)
        if fin.any():
            self.best = max(self.best, float(tv[fin].max()))
        steps, _ = d.loss()
        for arr in (ts, steps):
            if len(arr):
                self.last_step = max(self.last_step or 0, int(arr.max()))
        if not d.finished:
            return
        self.done = True
        if self.last_step is None:
            return
        if self.best == -math.inf:
            yield self.finding(self.last_step, "The overfit-a-tiny-subset run logged no train_acc, so it cannot be "
                                               "judged.", severity="warning",
                               fix="Log train_acc with Monitor.log(step, train_acc=...).")
            return
        if self.best < self.t.min_train_acc:
            reg = regularization_of(d.meta.hparams) or 0.0
            note = f" Regularization is on (reg={reg:g}): turn it off for this check." if reg > 0 else ""
            yield self.finding(
                self.last_step, f"On the tiny training subset the best training accuracy was {self.best:.1%} "
                                f"(threshold {self.t.min_train_acc:.0%}): the model cannot overfit it.{note}",
                value=self.best, threshold=self.t.min_train_acc)
