"""Loss rules: NaN and blow-ups, a learning rate too low, the initial loss, the regularization check."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..schema import LOSS_REG_KEYS, Finding, nonfinite_tag
from ._base import Delta, Rule, RuleThresholds, fmt, is_bias, knob, register, regularization_of


# -- loss rules -------------------------------------------------------------------------------


def nan_loss_finding(step: int, tag: str, *, first: float | None = None,
                     exploded_at: int | None = None) -> Finding:
    """The ``nan_loss`` finding: the loss became ``tag`` (``"nan"``, ``"inf"``, ``"-inf"``) at ``step``.

    ``first`` (the first finite loss) and ``exploded_at`` (the step where it passed the blow-up
    threshold, see ``loss_explosion``) go into the message when known, so both steps are named.
    """
    word = {"nan": "NaN", "inf": "Inf", "-inf": "-Inf"}.get(tag.lower(), tag)
    start = f" (it started at {fmt(first)})" if first is not None else ""
    blew = f"; it had blown up from step {exploded_at} on (see loss_explosion)" if exploded_at is not None else ""
    return Finding(rule="nan_loss", severity="error", step=int(step), layers=(),
                   message=f"The loss became {word} at step {step}{start}{blew}: training diverged.",
                   fix=NanLoss.fix)


def loss_explosion_finding(step: int, value: float, first: float, factor: float) -> Finding:
    """The ``loss_explosion`` finding: the finite loss ``value`` at ``step`` is above ``factor`` x ``first``."""
    return Finding(
        rule="loss_explosion", severity="error", step=int(step), layers=(),
        message=(f"The loss reached {fmt(value)} at step {step}, {fmt(value / first)}x its first value "
                 f"{fmt(first)} (threshold {factor:g}x): training is diverging."),
        fix=LossExplosion.fix, value=value / first, threshold=factor)


class _FromFirstLoss(Rule):
    """Base of the rules that judge the loss against its first finite value (found once, kept)."""

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.first: float | None = None
        self.done = False

    def new_loss(self, d: Delta) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(steps, values, finite)`` of the new loss points; None when done or there are none."""
        steps, vals = d.loss()
        if self.done or not len(vals):
            return None
        fin = np.isfinite(vals)
        if self.first is None and fin.any():
            self.first = float(vals[np.argmax(fin)])
        return steps, vals, fin


@register
class NanLoss(_FromFirstLoss):
    id = "nan_loss"
    severity = "error"
    summary = "The loss became NaN/Inf: training diverged (a loss that only blew up is loss_explosion)."
    fix = "Lower the learning rate (often by 10x); check for log(0) or division by zero in the loss."

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.exploded_at: int | None = None
        self.factor = LossExplosionThresholds().explode_factor

    def configure(self, config: Any) -> None:
        """Name the blow-up step with the factor ``loss_explosion`` runs with."""
        self.factor = config.thresholds("loss_explosion").explode_factor

    def update(self, d: Delta) -> Iterator[Finding]:
        got = self.new_loss(d)
        if got is None:
            return
        steps, vals, fin = got
        bad = ~fin
        if self.exploded_at is None and self.first is not None and self.first > 0:
            big = fin & (vals > self.factor * self.first)
            if big.any():
                self.exploded_at = int(steps[np.argmax(big)])
        if not bad.any():
            return
        i = int(np.argmax(bad))
        self.done = True
        s, v = int(steps[i]), float(vals[i])
        blew = self.exploded_at if self.exploded_at is not None and self.exploded_at < s else None
        yield nan_loss_finding(s, nonfinite_tag(v) or "nan", first=self.first, exploded_at=blew)


@dataclass(frozen=True)
class LossExplosionThresholds(RuleThresholds):
    # A loss this many times its start is diverging: healthy runs stay below their first loss.
    explode_factor: float = knob(10.0, 1.5, 1e6, "x the first finite loss")


@register
class LossExplosion(_FromFirstLoss):
    id = "loss_explosion"
    severity = "error"
    summary = ("A finite loss rose above explode_factor x its first value: training is diverging (reported apart "
               "from nan_loss, which is the step where it became NaN/Inf).")
    fix = "Lower the learning rate (often by 10x), or clip gradients; check the loss for a missing normalisation."
    Thresholds = LossExplosionThresholds
    suppressed_by = ("nan_loss",)  # a blow-up after the NaN adds nothing

    def update(self, d: Delta) -> Iterator[Finding]:
        got = self.new_loss(d)
        if got is None:
            return
        steps, vals, fin = got
        if self.first is None or self.first <= 0:
            return
        big = fin & (vals > self.t.explode_factor * self.first)
        if big.any():
            i = int(np.argmax(big))
            self.done = True
            yield loss_explosion_finding(int(steps[i]), float(vals[i]), self.first, self.t.explode_factor)


@dataclass(frozen=True)
class LrTooLowThresholds(RuleThresholds):
    window_steps: int = knob(100, 2, 1e9, "training steps from the first loss", integer=True)  # span judged
    # Mini-batch noise makes two medians differ by a few percent; a straight-line fit over the
    # window is steadier, and healthy runs fall by far more than 5% in their first 100 steps.
    min_rel_change: float = knob(0.05, 0.0, 1.0, "fraction of the starting loss")  # smaller change = "barely moves"
    min_points: int = knob(10, 3, 1e6, "loss points needed in the window", integer=True)


@register
class LrTooLow(Rule):
    id = "lr_too_low"
    severity = "warning"
    summary = ("Over the first window_steps steps (or the whole run, if shorter) a straight line fitted to the loss "
               "changes by less than min_rel_change of its start: the learning rate is too low.")
    fix = "Raise the learning rate (try 10x steps: 1e-3, 1e-2, ...) until the loss clearly falls."
    Thresholds = LrTooLowThresholds
    # A layer with every unit dead passes no gradient: the loss stays flat whatever the rate.
    suppressed_by = ("nan_loss", "loss_explosion", "dead_relu:error")

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.steps: list[int] = []
        self.vals: list[float] = []
        self.first_step: int | None = None
        self.done = False

    def update(self, d: Delta) -> Iterator[Finding]:
        if self.done:
            return
        steps, vals = d.loss()
        closed = False
        for s, v in zip(steps.tolist(), vals.tolist()):
            if self.first_step is None:
                self.first_step = s
            if s > self.first_step + self.t.window_steps:
                closed = True
                break
            if not math.isfinite(v):  # nan_loss speaks for this run
                self.done = True
                return
            self.steps.append(s)
            self.vals.append(v)
            if s >= self.first_step + self.t.window_steps:  # the window is complete: judge now, not a step later
                closed = True
                break
        if not closed and not d.finished:
            return
        self.done = True
        st, vs = np.asarray(self.steps, np.float64), np.asarray(self.vals)
        self.steps, self.vals = [], []
        if len(vs) < self.t.min_points or st[-1] == st[0]:
            return
        slope, intercept = np.polyfit(st - st[0], vs, 1)
        start, end = intercept, intercept + slope * (st[-1] - st[0])
        if start == 0:
            return
        change = abs(start - end) / abs(start)
        if change < self.t.min_rel_change:
            s0, s_end = int(st[0]), int(st[-1])
            yield self.finding(
                s_end, f"The loss moved from {fmt(start)} to {fmt(end)} (fitted line) over steps {s0}-{s_end}, "
                       f"a change of {change:.2%} (threshold {self.t.min_rel_change:.0%}): the learning rate is too low.",
                value=change, threshold=self.t.min_rel_change)


@dataclass(frozen=True)
class InitialLossThresholds(RuleThresholds):
    max_rel_dev: float = knob(0.5, 0.01, 100.0, "fraction of the expected loss log(C)")  # |L0 - log C| / log C


@register
class InitialLoss(Rule):
    id = "initial_loss"
    severity = "warning"
    summary = ("The first loss is further than max_rel_dev from log(C) for C classes (softmax; C-1 for a hinge "
               "loss). With regularization on, a loss below log(C), or above log(C) plus the largest L2 penalty "
               "reg*sum||W||^2 by more than max_rel_dev, counts.")
    fix = ("Scale the initial weights (Xavier/He; a small last layer gives near-uniform scores) and check the loss "
           "function and the labels; compare with regularization off.")
    Thresholds = InitialLossThresholds

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.done = False
        self.first: tuple[int, float] | None = None
        self.waited = 0  # loss points seen while waiting for the first parameter record

    def update(self, d: Delta) -> Iterator[Finding]:
        if self.done:
            return
        steps, vals = d.loss()
        if self.first is None:
            if not len(vals):
                return
            self.first = (int(steps[0]), float(vals[0]))
        s0, l0 = self.first
        c = d.meta.num_classes
        if not c or c < 2 or not math.isfinite(l0):
            self.done = True
            return
        hinge = str(d.meta.hparams.get("loss", "")).lower() in ("svm", "hinge", "multiclass_hinge", "multi_margin")
        expected = (c - 1.0) if hinge else math.log(c)
        what = f"C-1 = {c - 1}" if hinge else f"log({c}) = {expected:.3g}"
        dev = (l0 - expected) / expected
        reg = regularization_of(d.meta.hparams, LOSS_REG_KEYS) or 0.0
        if reg <= 0:
            self.done = True
            if abs(dev) > self.t.max_rel_dev:
                yield self.finding(
                    s0, f"The first loss {fmt(l0)} is {abs(dev):.0%} {'above' if dev > 0 else 'below'} the expected "
                        f"{what} (threshold {self.t.max_rel_dev:.0%}).",
                    value=dev, threshold=self.t.max_rel_dev)
            return
        if dev < -self.t.max_rel_dev:
            self.done = True
            yield self.finding(
                s0, f"The first loss {fmt(l0)} is {-dev:.0%} below {what} although regularization is on "
                    f"(threshold {self.t.max_rel_dev:.0%}): the loss looks wrong.",
                value=dev, threshold=-self.t.max_rel_dev)
            return
        if dev <= self.t.max_rel_dev:
            self.done = True
            return
        # Above log(C) with regularization on: fine as long as the L2 penalty explains it. The
        # penalty is bounded by reg * sum ||W||^2 (covers both the reg and 0.5*reg conventions),
        # taken from the first parameter record; without one the rule stays silent.
        if not len(d.params_rows):
            self.waited += len(vals)
            if self.waited > 1000:
                self.done = True
            return
        self.done = True
        names = d.run.params.names
        wn = d.params("w_norm")[0]
        penalty = reg * sum(float(wn[j]) ** 2 for j, n in enumerate(names) if not is_bias(n) and math.isfinite(wn[j]))
        allowed = (expected + penalty) * (1 + self.t.max_rel_dev)
        if l0 > allowed:
            yield self.finding(
                s0, f"The first loss {fmt(l0)} is above {what} plus the largest L2 penalty reg*sum||W||^2 = "
                    f"{fmt(penalty)} by more than {self.t.max_rel_dev:.0%} (limit {fmt(allowed)}): the initial "
                    f"scores are far from uniform.",
                value=l0, threshold=allowed)


@dataclass(frozen=True)
class RegularizationThresholds(RuleThresholds):
    min_penalty: float = knob(0.1, 0.0, 1e6, "nats of expected L2 penalty")  # below this the check is silent
    min_rise_frac: float = knob(0.5, 0.0, 1.0, "fraction of the expected penalty")  # rise of the first loss over log C


@register
class RegularizationCheck(Rule):
    """Within one run: with ``reg > 0`` in the hyperparameters, the first loss should exceed log(C) by
    about the L2 penalty ``0.5 * reg * sum ||W||^2`` computed from the first parameter record (weights
    only, biases excluded). A softmax loss of random scores is at least log(C) on average, so a first
    loss below ``log(C) + min_rise_frac * penalty`` says the penalty never reached the loss. (The
    lecture's version compares two runs: see ``babysitter compare`` for the same signal across runs.)
    """

    id = "regularization_check"
    severity = "warning"
    summary = ("reg (or l2, lambda) > 0, yet the first loss is not above log(C) by at least min_rise_frac of the "
               "expected L2 penalty 0.5*reg*sum||W||^2: the regularization term is not in the loss. An optimizer's "
               "weight_decay is applied to the weights, not the loss, and is not judged.")
    fix = "Add the regularization term to the loss you report and differentiate (e.g. loss += 0.5*reg*sum(W**2))."
    Thresholds = RegularizationThresholds

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.first_loss: tuple[int, float] | None = None
        self.penalty: float | None = None
        self.done = False

    def update(self, d: Delta) -> Iterator[Finding]:
        if self.done:
            return
        reg = regularization_of(d.meta.hparams, LOSS_REG_KEYS) or 0.0
        c = d.meta.num_classes
        steps, vals = d.loss()
        if self.first_loss is None and len(vals):
            self.first_loss = (int(steps[0]), float(vals[0]))
        if self.penalty is None and len(d.params_rows):
            names = d.run.params.names
            wn = d.params("w_norm")[0]
            sq = sum(float(wn[j]) ** 2 for j, n in enumerate(names) if not is_bias(n) and math.isfinite(wn[j]))
            self.penalty = 0.5 * reg * sq
        if self.first_loss is None or self.penalty is None:
            return
        self.done = True
        s0, l0 = self.first_loss
        if reg <= 0 or not c or c < 2 or not math.isfinite(l0) or self.penalty < self.t.min_penalty:
            return
        expected = math.log(c) + self.t.min_rise_frac * self.penalty
        if l0 < expected:
            yield self.finding(
                s0, f"With reg={reg:g} the expected L2 penalty is {fmt(self.penalty)}, yet the first loss {fmt(l0)} "
                    f"is below log({c}) + {self.t.min_rise_frac:g} x penalty = {fmt(expected)}.",
                value=l0, threshold=expected)
