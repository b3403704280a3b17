"""The diagnosis rules: CS231n's "babysitting the learning process" checklist, one class each.

Every rule is a subclass of ``Rule`` registered with ``@register``. A rule is incremental:
``Rule.update(delta)`` sees only the records added since its previous call (``Delta``) and
keeps whatever small state it needs between calls, so re-evaluating a growing run costs
time proportional to the new records. Rules process points in step order and report the
first step at which they held, so one call over a whole run (post hoc) and many calls over
its growing prefix (live) give the same findings.

Each rule declares its thresholds as a frozen dataclass (a ``RuleThresholds`` subclass whose
fields are made with ``knob``: default, allowed range, unit), so defaults, validation, the
command line (``rule.field=value``) and the README table all come from one place.

Reference: Stanford CS231n, "Training Neural Networks I" (activation statistics versus
depth, dead ReLUs, the update:weight ratio around 1e-3, the initial loss log(C), the
overfit-a-tiny-subset sanity check).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterable, Iterator

import numpy as np

from .errors import ConfigError
from .schema import (
    LOSS_REG_KEYS, NORM_KINDS, REG_KEYS, RELU_FAMILY, SANITY_OVERFIT, SATURATING, Finding, Meta, metric_key,
    nonfinite_tag,
)

__all__ = [
    "Rule", "RuleThresholds", "NoThresholds", "Delta", "knob", "register", "RULES",
    "is_bias", "regularization_of", "nan_loss_finding", "loss_explosion_finding", "weights_by_depth",
    "activation_layers", "UPDATE_RATIO_RELATIVE",
]

# The words by which an update_ratio finding says it compares a layer with its siblings (the
# dashboard's evidence plot draws that threshold relative to the siblings' median).
UPDATE_RATIO_RELATIVE = "the other hidden weight tensors"
_BIAS_RE = re.compile(r"(^|[._/])(bias|b\d*|beta|.*_bias)$", re.IGNORECASE)
_WEIGHT_RE = re.compile(r"(^|[._/])(weight|kernel|w\d*)$", re.IGNORECASE)


def is_bias(name: str) -> bool:
    """True for parameter names that look like biases (``b1``, ``fc.bias``, ``bn.beta``).

    Biases start at 0 by design, so ratios to their norm and their spread say nothing.
    """
    return bool(_BIAS_RE.search(name))


def regularization_of(hparams: dict[str, Any], keys: tuple[str, ...] = REG_KEYS) -> float | None:
    """The L2 regularization strength from ``hparams`` (``reg``, ``weight_decay``, ...), or None.

    ``keys=LOSS_REG_KEYS`` reads only a penalty that is part of the loss (not an optimizer's weight decay).
    """
    for k in keys:
        v = hparams.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


# -- thresholds -------------------------------------------------------------------------------


def knob(default: float, lo: float, hi: float, unit: str, *, integer: bool = False) -> Any:
    """A threshold field: its default, the allowed closed range ``[lo, hi]`` and its unit."""
    return field(default=default, metadata={"range": (lo, hi), "unit": unit, "integer": integer})


@dataclass(frozen=True)
class RuleThresholds:
    """Base of every rule's thresholds. ``__post_init__`` checks each field against its range.

    Raises:
        ConfigError: naming the threshold (``rule.field``), its allowed range and unit.
    """

    rule: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            lo, hi = f.metadata["range"]
            v = getattr(self, f.name)
            kind = "an integer" if f.metadata["integer"] else "a number"
            what = f"threshold {self.rule}.{f.name} ({f.metadata['unit']}) must be {kind} in [{lo:g}, {hi:g}]"
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{what}, got {v!r}")
            if f.metadata["integer"] and int(v) != v:
                raise ConfigError(f"{what}, got {v!r}")
            if not lo <= v <= hi:
                raise ConfigError(f"{what}, got {v!r}")

    @classmethod
    def describe(cls) -> list[tuple[str, float, tuple[float, float], str]]:
        """``(field, default, (lo, hi), unit)`` for every threshold."""
        return [(f.name, f.default, f.metadata["range"], f.metadata["unit"]) for f in fields(cls)]


@dataclass(frozen=True)
class NoThresholds(RuleThresholds):
    """For rules without thresholds."""


# -- what a rule sees -------------------------------------------------------------------------


class Delta:
    """The records added to one run since the previous evaluation.

    Attributes:
        run: the ``core.reader.Run`` (for its tables; read only ``acts_rows``/``params_rows`` of them).
        meta: the run's ``meta.json``.
        finished: True when the run is marked finished (rules that judge the end fire then).
        acts_rows: ``range`` of new rows of ``run.acts``.
        params_rows: ``range`` of new rows of ``run.params``.
        input: new input-batch rows (``step``, ``mean``, ``std``, ...).
    """

    def __init__(self, run: Any, scalars: dict[str, tuple[np.ndarray, np.ndarray]], acts_rows: range,
                 params_rows: range, input_rows: dict[str, np.ndarray], finished: bool) -> None:
        self.run = run
        self.meta: Meta = run.meta
        self.finished = finished
        self._scalars = scalars
        self.acts_rows = acts_rows
        self.params_rows = params_rows
        self.input = input_rows
        kinds = run.layer_kinds()
        self.layer_kinds: dict[str, str] = kinds
        self._param_layer = {p: li.name for li in run.meta.layers for p in li.params}

    @classmethod
    def of(cls, run: Any) -> "Delta":
        """A Delta with no new records: for the helpers that read a run's layout (``weights_by_depth``)."""
        return cls(run, {}, range(0, 0), range(0, 0), {}, finished=run.meta.status == "finished")

    def scalar(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """New ``(steps, values)`` of scalar or metric ``name`` (empty arrays when none).

        A canonical metric (``"val_acc"``, ``"loss"``...) is read under whichever alias the run
        logged it (``schema.METRIC_ALIASES``), chosen from every name the run has so that the
        choice does not change between calls.
        """
        key = metric_key(self.run.scalar_names(self.run.stats_rank or 0), name)
        got = self._scalars.get(key) if key is not None else None
        if got is None:
            return np.empty(0, np.int64), np.empty(0)
        return got

    def loss(self) -> tuple[np.ndarray, np.ndarray]:
        """New points of the training loss (``loss``, else ``train_loss``)."""
        return self.scalar("loss")

    def acts(self, name: str) -> np.ndarray:
        """``[new row, layer]`` values of an activation field."""
        r = self.acts_rows
        return self.run.acts.field(name)[r.start:r.stop]

    def params(self, name: str) -> np.ndarray:
        """``[new row, param]`` values of a parameter field."""
        r = self.params_rows
        return self.run.params.field(name)[r.start:r.stop]

    def layer_of(self, param: str) -> str:
        """The layer owning parameter ``param`` (from ``meta.json``), else ``param`` itself."""
        return self._param_layer.get(param, param)


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return str(x)
    a = abs(x)
    if a != 0 and (a < 1e-3 or a >= 1e4):
        return f"{x:.2e}"
    return f"{x:.3g}"


# -- the base class and registry ------------------------------------------------------------


class Rule:
    """One diagnosis. Subclasses set the class attributes and implement ``update``.

    Class attributes:
        id: stable id users script against (``"dead_relu"``).
        severity: default severity of its findings (``error``, ``warning``, ``info``).
        summary: what it means, one sentence (README, ``babysitter check --rules``).
        fix: the concrete change to try.
        Thresholds: its ``RuleThresholds`` subclass.
        suppressed_by: ids of rules whose finding at an earlier or equal step makes this one
            moot (accuracy is at chance once the loss is NaN: no separate underfitting).
    """

    id: ClassVar[str] = ""
    severity: ClassVar[str] = "warning"
    summary: ClassVar[str] = ""
    fix: ClassVar[str] = ""
    Thresholds: ClassVar[type[RuleThresholds]] = NoThresholds
    suppressed_by: ClassVar[tuple[str, ...]] = ()

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        self.t: Any = thresholds if thresholds is not None else self.Thresholds()

    def configure(self, config: Any) -> None:
        """Called once with the whole ``DiagnosisConfig`` (a rule that reads another rule's thresholds)."""

    def update(self, d: Delta) -> Iterable[Finding]:
        """Look at the new records in ``d``; yield the findings that now hold (each once)."""
        return ()

    def finding(self, step: int, message: str, *, layers: Iterable[str] = (), value: float | None = None,
                threshold: float | None = None, severity: str | None = None, fix: str | None = None) -> Finding:
        """A ``Finding`` of this rule."""
        return Finding(rule=self.id, severity=severity or self.severity, step=int(step), layers=tuple(layers),
                       message=message, fix=fix or self.fix,
                       value=None if value is None else float(value),
                       threshold=None if threshold is None else float(threshold))


RULES: dict[str, type[Rule]] = {}


def register(cls: type[Rule]) -> type[Rule]:
    """Class decorator adding a rule to the registry (``RULES``), in evaluation order.

    Raises:
        ConfigError: when the id is empty or taken by another class.
    """
    if not cls.id:
        raise ConfigError(f"rule class {cls.__name__} needs a non-empty id")
    if cls.id in RULES and RULES[cls.id] is not cls:
        raise ConfigError(f"rule id {cls.id!r} is registered already (by {RULES[cls.id].__name__})")
    cls.Thresholds.rule = cls.id
    RULES[cls.id] = cls
    return cls


class _NewLayers:
    """Remembers which layers a per-layer rule has reported, so each is reported once."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def new(self, names: Iterable[str]) -> list[str]:
        out = [n for n in dict.fromkeys(names) if n not in self.seen]
        self.seen.update(out)
        return out


def _streaks(flags: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive-row counters per column.

    ``flags[row, col]`` says whether the condition held; ``state[col]`` is the running count
    before these rows. Returns ``(counts [row, col], new state)``.
    """
    counts = np.empty(flags.shape, np.int64)
    run = state.copy()
    for i in range(flags.shape[0]):
        run = np.where(flags[i], run + 1, 0)
        counts[i] = run
    return counts, run


def _patience(patience: int, d: Delta, rows: int) -> int:
    """The streak length a rule needs: ``patience``, or every logged row of a finished run with fewer.

    A finished run of one logged step (the lecture's single forward pass) is judged on what it has.
    """
    return max(1, min(patience, rows)) if d.finished else patience


def _grow(state: np.ndarray, n: int) -> np.ndarray:
    if len(state) >= n:
        return state
    return np.concatenate([state, np.zeros(n - len(state), state.dtype)])


# -- loss rules -------------------------------------------------------------------------------


def nan_loss_finding(step: int, tag: str, *, first: float | None = None,
                     exploded_at: int | None = None) -> Finding:
    """The ``nan_loss`` finding: the loss became ``tag`` (``"nan"``, ``"inf"``, ``"-inf"``) at ``step``.

    ``first`` (the first finite loss) and ``exploded_at`` (the step where it passed the blow-up
    threshold, see ``loss_explosion``) go into the message when known, so both steps are named.
    """
    word = {"nan": "NaN", "inf": "Inf", "-inf": "-Inf"}.get(tag.lower(), tag)
    start = f" (it started at {_fmt(first)})" if first is not None else ""
    blew = f"; it had blown up from step {exploded_at} on (see loss_explosion)" if exploded_at is not None else ""
    return Finding(rule="nan_loss", severity="error", step=int(step), layers=(),
                   message=f"The loss became {word} at step {step}{start}{blew}: training diverged.",
                   fix=NanLoss.fix)


def loss_explosion_finding(step: int, value: float, first: float, factor: float) -> Finding:
    """The ``loss_explosion`` finding: the finite loss ``value`` at ``step`` is above ``factor`` x ``first``."""
    return Finding(
        rule="loss_explosion", severity="error", step=int(step), layers=(),
        message=(f"The loss reached {_fmt(value)} at step {step}, {_fmt(value / first)}x its first value "
                 f"{_fmt(first)} (threshold {factor:g}x): training is diverging."),
        fix=LossExplosion.fix, value=value / first, threshold=factor)


@register
class NanLoss(Rule):
    id = "nan_loss"
    severity = "error"
    summary = "The loss became NaN/Inf: training diverged (a loss that only blew up is loss_explosion)."
    fix = "Lower the learning rate (often by 10x); check for log(0) or division by zero in the loss."

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.first: float | None = None
        self.exploded_at: int | None = None
        self.factor = LossExplosionThresholds().explode_factor
        self.done = False

    def configure(self, config: Any) -> None:
        """Name the blow-up step with the factor ``loss_explosion`` runs with."""
        self.factor = config.thresholds("loss_explosion").explode_factor

    def update(self, d: Delta) -> Iterator[Finding]:
        steps, vals = d.loss()
        if self.done or not len(vals):
            return
        fin = np.isfinite(vals)
        if self.first is None and fin.any():
            self.first = float(vals[np.argmax(fin)])
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
class LossExplosion(Rule):
    id = "loss_explosion"
    severity = "error"
    summary = ("A finite loss rose above explode_factor x its first value: training is diverging (reported apart "
               "from nan_loss, which is the step where it became NaN/Inf).")
    fix = "Lower the learning rate (often by 10x), or clip gradients; check the loss for a missing normalisation."
    Thresholds = LossExplosionThresholds
    suppressed_by = ("nan_loss",)  # a blow-up after the NaN adds nothing

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.first: float | None = None
        self.done = False

    def update(self, d: Delta) -> Iterator[Finding]:
        steps, vals = d.loss()
        if self.done or not len(vals):
            return
        fin = np.isfinite(vals)
        if self.first is None and fin.any():
            self.first = float(vals[np.argmax(fin)])
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
    suppressed_by = ("nan_loss", "loss_explosion")

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
                s_end, f"The loss moved from {_fmt(start)} to {_fmt(end)} (fitted line) over steps {s0}-{s_end}, "
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
                    s0, f"The first loss {_fmt(l0)} is {abs(dev):.0%} {'above' if dev > 0 else 'below'} the expected "
                        f"{what} (threshold {self.t.max_rel_dev:.0%}).",
                    value=dev, threshold=self.t.max_rel_dev)
            return
        if dev < -self.t.max_rel_dev:
            self.done = True
            yield self.finding(
                s0, f"The first loss {_fmt(l0)} is {-dev:.0%} below {what} although regularization is on "
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
                s0, f"The first loss {_fmt(l0)} is above {what} plus the largest L2 penalty reg*sum||W||^2 = "
                    f"{_fmt(penalty)} by more than {self.t.max_rel_dev:.0%} (limit {_fmt(allowed)}): the initial "
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
                s0, f"With reg={reg:g} the expected L2 penalty is {_fmt(self.penalty)}, yet the first loss {_fmt(l0)} "
                    f"is below log({c}) + {self.t.min_rise_frac:g} x penalty = {_fmt(expected)}.",
                value=l0, threshold=expected)


# -- activation rules -------------------------------------------------------------------------


def activation_layers(d: Delta) -> list[str]:
    """The layers compared across depth, input to output: the activation layers, else every recorded layer."""
    order = d.run.layer_order()
    acts = [n for n in order if d.layer_kinds.get(n) in RELU_FAMILY | SATURATING]
    return acts if acts else [n for n in order if d.layer_kinds.get(n, "other") != "input"]


@dataclass(frozen=True)
class VanishingThresholds(RuleThresholds):
    min_std_ratio: float = knob(0.05, 0.0, 1.0, "deep layer std / first activation layer std")


@register
class VanishingActivations(Rule):
    id = "vanishing_activations"
    severity = "warning"
    summary = ("A deeper layer's activation std fell below min_std_ratio x the first activation layer's std "
               "(the lecture's 10-layer net with 0.01*randn weights). Pre-activations are ignored when "
               "activation layers are recorded.")
    fix = "Initialise with Xavier (tanh) or He (ReLU) scaling instead of a small constant scale, or add batch norm."
    Thresholds = VanishingThresholds

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.reported = _NewLayers()

    def update(self, d: Delta) -> Iterator[Finding]:
        if not len(d.acts_rows):
            return
        layers = activation_layers(d)
        if len(layers) < 2:
            return
        idx = [d.run.acts.index[n] for n in layers]
        std = d.acts("std")[:, idx]
        for i, row in enumerate(std):
            base = row[0]
            if not (math.isfinite(base) and base > 0):
                continue
            ratio = row[1:] / base
            low = [layers[1 + j] for j in np.nonzero(ratio < self.t.min_std_ratio)[0]]
            new = self.reported.new(low)
            if new:
                step = int(d.run.acts.steps[d.acts_rows.start + i])
                worst = float(np.nanmin(ratio))
                yield self.finding(
                    step, f"Activation std falls with depth: {len(new)} layer(s) from {new[0]} on are below "
                          f"{self.t.min_std_ratio:g}x the std of {layers[0]} ({_fmt(base)}); lowest ratio "
                          f"{_fmt(worst)} at step {step}.",
                    layers=new, value=worst, threshold=self.t.min_std_ratio)


@dataclass(frozen=True)
class SaturationThresholds(RuleThresholds):
    max_sat_frac: float = knob(0.25, 0.0, 1.0, "share of outputs within 1% of an asymptote")
    patience: int = knob(2, 1, 1000, "consecutive logged steps", integer=True)


class _FractionStreak(Rule):
    """A per-layer fraction (an acts field) above a threshold for ``patience`` logged steps in a row."""

    field = ""      # the acts field, e.g. "sat_frac"
    limit = ""      # the threshold's name in Thresholds

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.count = np.zeros(0, np.int64)
        self.reported = _NewLayers()

    def describe(self, layers: str, worst: float, limit: float, step: int) -> str:
        raise NotImplementedError

    def update(self, d: Delta) -> Iterator[Finding]:
        table = d.run.acts
        names, n = table.names, len(table)
        limit = getattr(self.t, self.limit)
        need = _patience(self.t.patience, d, n)
        if len(d.acts_rows):
            frac = d.acts(self.field)
            self.count = _grow(self.count, len(names))
            counts, self.count = _streaks(np.nan_to_num(frac, nan=0.0) > limit, self.count)
            for i in range(len(frac)):
                yield from self._report(d, [names[j] for j in np.nonzero(counts[i] >= need)[0]],
                                        d.acts_rows.start + i, need, limit)
        if d.finished and n and need < self.t.patience:
            # A finished run shorter than the patience: a streak over all its logged steps counts.
            yield from self._report(d, [names[j] for j in np.nonzero(self.count >= need)[0]], n - 1, need, limit)

    def _report(self, d: Delta, hit: list[str], row: int, need: int, limit: float) -> Iterator[Finding]:
        new = self.reported.new(hit)
        if not new:
            return
        table = d.run.acts
        step = int(table.steps[max(row - (need - 1), 0)])
        worst = float(np.nanmax(table.field(self.field)[row, [table.index[x] for x in new]]))
        yield self.finding(step, self.describe(", ".join(new), worst, limit, step),
                           layers=new, value=worst, threshold=limit)


@register
class Saturation(_FractionStreak):
    id = "saturation"
    severity = "warning"
    summary = ("More than max_sat_frac of a tanh/sigmoid layer's outputs sit within 1% of the asymptotes for "
               "patience logged steps: their gradient is ~0 (the lecture's 1.0*randn init).")
    fix = "Use smaller initial weights (Xavier: randn/sqrt(fan_in)), batch norm, or ReLU."
    Thresholds = SaturationThresholds
    field, limit = "sat_frac", "max_sat_frac"

    def describe(self, layers: str, worst: float, limit: float, step: int) -> str:
        return f"{layers}: up to {worst:.0%} of outputs are saturated (threshold {limit:.0%}) since step {step}."


@dataclass(frozen=True)
class DeadReluThresholds(RuleThresholds):
    # Healthy He-initialised nets have a few percent of dead units per batch and the lecture
    # calls 10-20% common; half of a layer dead for several logged steps is a problem.
    max_dead_frac: float = knob(0.4, 0.0, 1.0, "share of a layer's units <= 0 for the whole batch")
    patience: int = knob(3, 1, 1000, "consecutive logged steps", integer=True)


@register
class DeadRelu(_FractionStreak):
    id = "dead_relu"
    severity = "warning"
    summary = ("More than max_dead_frac of a ReLU-family layer's units output <= 0 for every example of the "
               "batch, for patience logged steps: those units no longer learn.")
    fix = ("Lower the learning rate, use He initialisation, a small positive bias (e.g. 0.01), or Leaky ReLU; "
           "check the input scaling.")
    Thresholds = DeadReluThresholds
    field, limit = "dead_frac", "max_dead_frac"

    def describe(self, layers: str, worst: float, limit: float, step: int) -> str:
        return (f"{layers}: {worst:.0%} of units are dead (<= 0 for the whole batch; threshold {limit:.0%}) "
                f"since step {step}.")


@dataclass(frozen=True)
class SymmetricThresholds(RuleThresholds):
    max_unit_spread: float = knob(1e-6, 0.0, 1.0, "std across units of unit means / activation std")


@register
class SymmetricWeights(Rule):
    id = "symmetric_weights"
    severity = "error"
    summary = ("All units of a layer compute the same output (the spread of per-unit means is below "
               "max_unit_spread x the activation std), or a weight tensor has all-equal entries: a constant "
               "initialisation; the units stay identical.")
    fix = "Initialise weights randomly (Xavier/He: randn(fan_in, fan_out) / sqrt(fan_in)); never with a constant."
    Thresholds = SymmetricThresholds

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.reported = _NewLayers()

    def update(self, d: Delta) -> Iterator[Finding]:
        if len(d.acts_rows):
            names = d.run.acts.names
            unit, std = d.acts("unit_std"), d.acts("std")
            # A normalisation layer's output has the same (zero) mean in every unit by construction;
            # an embedding's output is one table row per id, the same everywhere when the ids are
            # (BERT's token_type_ids are all 0 for single sentences): its table is judged instead.
            judged = np.array([d.layer_kinds.get(n) not in NORM_KINDS | {"embedding"} for n in names], bool)
            with np.errstate(invalid="ignore", divide="ignore"):
                spread = unit / std
                flag = (std > 0) & np.isfinite(unit) & (unit <= self.t.max_unit_spread * std) & judged[None, :]
            for i in np.nonzero(flag.any(axis=1))[0]:
                new = self.reported.new(names[j] for j in np.nonzero(flag[i])[0])
                if new:
                    step = int(d.run.acts.steps[d.acts_rows.start + i])
                    value = float(max(spread[i, d.run.acts.index[n]] for n in new))  # the flagged layers' own
                    yield self.finding(
                        step, f"{', '.join(new)}: every unit computes the same output at step {step} (spread across "
                              f"units {_fmt(value)} of the std, threshold {self.t.max_unit_spread:g}).",
                        layers=new, value=value, threshold=self.t.max_unit_spread)
        if len(d.params_rows):
            names = d.run.params.names
            wstd, wnorm = d.params("w_std"), d.params("w_norm")
            weights = np.array([_looks_like_matrix(d, n) for n in names], bool)
            flag = (wstd == 0) & (wnorm > 0) & weights[None, :]
            for i in np.nonzero(flag.any(axis=1))[0]:
                params = [names[j] for j in np.nonzero(flag[i])[0]]
                new = self.reported.new(d.layer_of(p) for p in params)
                if new:
                    step = int(d.run.params.steps[d.params_rows.start + i])
                    yield self.finding(
                        step, f"{', '.join(params)}: all weights are equal at step {step} (std 0): every unit of the "
                              f"layer computes the same output.", layers=new, value=0.0, threshold=0.0)


def _looks_like_matrix(d: Delta, param: str) -> bool:
    if is_bias(param):
        return False
    layer = d._param_layer.get(param)
    if layer is not None:  # a norm layer's gain or a PReLU slope may be constant by design
        return d.layer_kinds.get(layer) not in NORM_KINDS | {"prelu"}
    return bool(_WEIGHT_RE.search(param))


# Layer kinds whose parameters are not compared across layers (sparse rows, per-channel gains).
_NOT_COMPARED = NORM_KINDS | frozenset({"embedding", "prelu"})


def weights_by_depth(d: Delta) -> list[tuple[str, int]]:
    """``(parameter, column of run.params)`` of the weight matrices and kernels, input to output.

    Depth order is the order of the owning layers in ``meta.json``; parameters of unknown
    layers keep the order in which they were first recorded.
    """
    table = d.run.params
    order = {li.name: k for k, li in enumerate(d.meta.layers)}
    out = []
    for col, name in enumerate(table.names):
        layer = d.layer_of(name)
        if not _looks_like_matrix(d, name) or d.layer_kinds.get(layer) in _NOT_COMPARED:
            continue
        out.append((order.get(layer, len(order)), col, name))
    out.sort()
    return [(name, col) for _, col, name in out]


# -- parameter rules --------------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateRatioThresholds(RuleThresholds):
    # The lecture's rule of thumb is ~1e-3. Measured on the digits example after step 50: healthy
    # learning rates give 2e-4..2e-2 per weight tensor, 30x too high ~0.9, 100x too low ~3e-6.
    min_ratio: float = knob(1e-4, 0.0, 1.0, "||update|| / ||weight|| per logged step")
    max_ratio: float = knob(5e-2, 0.0, 1e3, "||update|| / ||weight|| per logged step")
    window: int = knob(5, 1, 10_000, "logged steps in the rolling median", integer=True)
    # A layer initialised small (often the last one) has large ratios for its first updates.
    skip_steps: int = knob(50, 0, 1e9, "training steps before judging", integer=True)
    # A network that has fitted its data takes tiny steps by design: "too low" is judged only
    # while the loss is above this fraction of its first value.
    low_while_loss_above: float = knob(0.5, 0.0, 1.0, "fraction of the first loss")
    # The lecture's target is ~1e-3 for every layer: one weight tensor far from its siblings
    # (the others' median) has a learning rate out of line even inside the absolute band.
    # The healthy bank (SGD, momentum, Adam/AdamW, OneCycle/cosine, MLPs, CNNs, transformers)
    # stays within 0.31x..3.0x of the siblings' median; the lecture's "one layer's lr 10x off" is
    # 10x by construction.
    # A learning rate annealed toward 0 (cosine, OneCycle, step decay) makes every ratio tiny by
    # design at the end: "too low" is judged only while the logged lr is above this fraction of
    # the largest lr logged so far (runs that log no lr are always judged).
    low_while_lr_above: float = knob(0.1, 0.0, 1.0, "fraction of the largest logged learning rate")
    max_rel_factor: float = knob(10.0, 1.0, 1e6, "x the median ratio of the other weight tensors")
    min_siblings: int = knob(2, 1, 10_000, "other weight tensors needed for the relative check", integer=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_ratio >= self.max_ratio:
            raise ConfigError(f"threshold update_ratio.min_ratio ({self.min_ratio:g}) must be below "
                              f"update_ratio.max_ratio ({self.max_ratio:g})")


@register
class UpdateRatio(Rule):
    id = "update_ratio"
    severity = "warning"
    summary = ("After skip_steps, the median update:weight ratio (||dW|| / ||W||) of a weight tensor over window "
               "logged steps is above max_ratio (learning rate too high) or below min_ratio (too low, judged while the "
               "loss is above low_while_loss_above of its first value and the lr above low_while_lr_above of its "
               "largest value), or max_rel_factor times above or below the median of the other hidden weight tensors "
               "(that layer's learning rate is out of line; the output layer is not compared); healthy is ~1e-3. "
               "Biases are skipped.")
    fix = "Scale that layer's learning rate toward an update:weight ratio of ~1e-3."
    Thresholds = UpdateRatioThresholds

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.reported = {side: _NewLayers() for side in ("high", "low", "rel_high", "rel_low")}
        self.first_row: int | None = None  # first row at or after skip_steps
        self.loss0: float | None = None
        self.loss_last: float | None = None
        self.lr_max = 0.0
        self.lr_last: float | None = None
        # Loss and lr points not yet consumed: each weight row is judged with the points up to its
        # own step, so live and post-hoc evaluation agree.
        self.queue: list[tuple[int, int, float]] = []

    def _still_learning(self) -> bool:
        if self.lr_last is not None and self.lr_max > 0 and self.lr_last < self.t.low_while_lr_above * self.lr_max:
            return False  # the schedule has annealed the learning rate
        if self.loss0 is None or self.loss_last is None or self.loss0 <= 0:
            return True
        return self.loss_last > self.t.low_while_loss_above * self.loss0

    def _advance(self, step: int) -> None:
        k = 0
        for k, (s, kind, v) in enumerate(self.queue):
            if s > step:
                break
            if kind == 0:
                if self.loss0 is None:
                    self.loss0 = v
                self.loss_last = v
            else:
                self.lr_max = max(self.lr_max, v)
                self.lr_last = v
        else:
            k = len(self.queue)
        del self.queue[:k]

    def update(self, d: Delta) -> Iterator[Finding]:
        new: list[tuple[int, int, float]] = []
        for kind, (st, vals) in enumerate((d.loss(), d.scalar("lr"))):
            ok = np.isfinite(vals)
            new.extend(zip(st[ok].tolist(), [kind] * int(ok.sum()), vals[ok].tolist()))
        if new:
            self.queue = sorted(self.queue + new, key=lambda t: (t[0], t[1]))
        table = d.run.params
        try:
            yield from self._judge(d)
        finally:
            # Points up to the last weight row are consumed; without weight rows the queue stays
            # bounded (a run that logs only the loss).
            if len(table):
                self._advance(int(table.steps[len(table) - 1]))
            elif len(self.queue) > 10_000:
                self._advance(self.queue[-5_000][0])

    def _judge(self, d: Delta) -> Iterator[Finding]:
        rows = d.params_rows
        if not len(rows):
            return
        w = self.t.window
        table = d.run.params
        names = table.names
        cols = [j for j, n in enumerate(names) if not is_bias(n)]
        if not cols:
            return
        full = table.field("upd_ratio")
        if self.first_row is None:
            later = np.nonzero(table.steps[rows.start:rows.stop] >= self.t.skip_steps)[0]
            if not len(later):
                return
            self.first_row = rows.start + int(later[0])
        first = max(rows.start, self.first_row + w - 1)
        if first >= rows.stop:
            return
        # Rows first-w+1 .. stop-1: the new rows plus the w-1 before them (cost ~ new rows x window).
        block = full[first - w + 1: rows.stop][:, cols]
        wins = np.lib.stride_tricks.sliding_window_view(block, w, axis=0)  # [k, col, w]
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(wins, axis=2)
        # The output layer is left out of the relative check: a small last layer (the lecture's
        # advice for a near-uniform initial loss) has large ratios for many steps by design.
        hidden = {name for name, _ in weights_by_depth(d)[:-1]}
        matrix = np.array([names[c] in hidden for c in cols], bool)
        for k in range(med.shape[0]):
            row = first + k
            step = int(table.steps[row])
            self._advance(step)
            m = med[k]
            for side in ("high", "low"):
                if side == "low" and not self._still_learning():
                    continue
                bad = m > self.t.max_ratio if side == "high" else m < self.t.min_ratio
                yield from self._report(d, side, step, [names[cols[j]] for j in np.nonzero(bad)[0]],
                                        {names[cols[j]]: float(m[j]) for j in np.nonzero(bad)[0]})
            yield from self._relative(d, step, m, matrix, [names[c] for c in cols])

    def _relative(self, d: Delta, step: int, m: np.ndarray, matrix: np.ndarray, names: list[str]) -> Iterator[Finding]:
        ok = matrix & np.isfinite(m) & (m > 0)
        idx = np.nonzero(ok)[0]
        if len(idx) < self.t.min_siblings + 1:
            return
        logm = np.log(m[idx])
        rel: dict[str, tuple[float, float]] = {}
        for pos, j in enumerate(idx):
            ref = float(np.exp(np.median(np.delete(logm, pos))))
            rel[names[j]] = (float(m[j]) / ref, ref)
        f = self.t.max_rel_factor
        # Relative to its siblings, a layer's ratio does not fall as the network fits or the schedule
        # anneals (all layers slow down together): both sides are judged throughout.
        for side in ("rel_high", "rel_low"):
            hit = [p for p, (r, _) in rel.items() if (r > f if side == "rel_high" else r < 1 / f)]
            # Already reported as outside the absolute band: the relative finding would repeat it.
            absolute = self.reported["high" if side == "rel_high" else "low"].seen
            hit = [p for p in hit if d.layer_of(p) not in absolute]
            yield from self._report(d, side, step, hit, {p: rel[p][0] for p in hit}, refs={p: rel[p][1] for p in hit})

    def _report(self, d: Delta, side: str, step: int, hit: list[str], value: dict[str, float],
                refs: dict[str, float] | None = None) -> Iterator[Finding]:
        if not hit:
            return
        layers = self.reported[side].new(d.layer_of(p) for p in hit)
        if not layers:
            return
        hit = [p for p in hit if d.layer_of(p) in layers]
        high = side.endswith("high")
        v = (max if high else min)(value[p] for p in hit)
        w = self.t.window
        fix = ("Lower the learning rate for these layers (aim for an update:weight ratio of ~1e-3)." if high else
               "Raise the learning rate for these layers (aim for an update:weight ratio of ~1e-3).")
        if refs is None:
            th = self.t.max_ratio if high else self.t.min_ratio
            yield self.finding(
                step, f"{', '.join(hit)}: median update:weight ratio {_fmt(v)} over {w} logged steps up to step "
                      f"{step} is {'above' if high else 'below'} {th:g}: the learning rate is "
                      f"{'too high' if high else 'too low'}.",
                layers=layers, value=v, threshold=th, fix=fix)
            return
        f = self.t.max_rel_factor
        p = max(hit, key=lambda q: value[q]) if high else min(hit, key=lambda q: value[q])
        times = f"{v:.1f}x" if high else f"1/{1 / v:.1f}"
        yield self.finding(
            step, f"{', '.join(hit)}: median update:weight ratio {_fmt(value[p] * refs[p])} over {w} logged steps up "
                  f"to step {step} is {times} the median {_fmt(refs[p])} of {UPDATE_RATIO_RELATIVE} (threshold "
                  f"{f:g}x): this layer's learning rate is out of line with the others'.",
            layers=layers, value=v, threshold=f if high else 1 / f,
            fix=("Lower the learning rate of these layers (their own parameter group) until their ratio is near "
                 "the others' (~1e-3)." if high else
                 "Raise the learning rate of these layers (or check they are not frozen by mistake) so their "
                 "ratio comes near the others' (~1e-3)."))


@register
class NonfiniteValues(Rule):
    id = "nonfinite_values"
    severity = "error"
    summary = "A layer's activations, weights or gradients contain NaN or Inf."
    fix = ("Lower the learning rate (often 10x), clip gradients, and look for log(0), division by zero or "
           "overflow in the layer named.")

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.reported = _NewLayers()

    def update(self, d: Delta) -> Iterator[Finding]:
        for table_name, rows, fields_, label in (
            ("acts", d.acts_rows, ("nan", "inf"), "activations"),
            ("params", d.params_rows, ("w_nan", "w_inf", "grad_nan", "grad_inf"), "weights/gradients"),
        ):
            if not len(rows):
                continue
            table = getattr(d.run, table_name)
            names = table.names
            get = d.acts if table_name == "acts" else d.params
            bad = np.zeros((len(rows), len(names)), bool)
            for f in fields_:
                bad |= np.nan_to_num(get(f), nan=0.0) > 0
            for i in np.nonzero(bad.any(axis=1))[0]:
                items = [names[j] for j in np.nonzero(bad[i])[0]]
                layers = items if table_name == "acts" else [d.layer_of(p) for p in items]
                new = self.reported.new(layers)
                if new:
                    step = int(table.steps[rows.start + i])
                    # The message names what the finding's layer list holds: the newly affected ones.
                    fresh = [it for it, layer in zip(items, layers) if layer in new]
                    yield self.finding(step, f"NaN/Inf in the {label} of {', '.join(fresh)} at step {step}.",
                                       layers=new)


# -- data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputsThresholds(RuleThresholds):
    # Standardised data gives |mean|/std ~ 0.01-0.1 per batch; raw pixels 0..255 give ~0.4 (MNIST)
    # to ~2 (natural images), digits 0..16 about 0.8.
    max_mean_std_ratio: float = knob(0.3, 0.0, 1e6, "|batch mean| / batch std of the first layer's input")


@register
class InputsNotCentered(Rule):
    id = "inputs_not_centered"
    severity = "warning"
    summary = "The first layer's input batch has |mean| above max_mean_std_ratio x its std: the data is not zero-centred."
    fix = ("Subtract the training set's mean (per feature, per channel or the mean image) and divide by its std, "
           "using statistics of the training set only.")
    Thresholds = InputsThresholds

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.done = False

    def update(self, d: Delta) -> Iterator[Finding]:
        if self.done or not len(d.input.get("step", ())):
            return
        mean, std = d.input["mean"], d.input["std"]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.abs(mean) / std
        ratio = np.where((std == 0) & (mean != 0), np.inf, ratio)
        bad = np.nan_to_num(ratio, nan=0.0) > self.t.max_mean_std_ratio
        if bad.any():
            i = int(np.argmax(bad))
            self.done = True
            step = int(d.input["step"][i])
            yield self.finding(
                step, f"The input batch at step {step} has mean {_fmt(float(mean[i]))} and std {_fmt(float(std[i]))}: "
                      f"|mean|/std = {_fmt(float(ratio[i]))} (threshold {self.t.max_mean_std_ratio:g}).",
                value=float(ratio[i]), threshold=self.t.max_mean_std_ratio)


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
