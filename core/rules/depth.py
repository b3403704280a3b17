"""Rules that compare layers across depth: exploding activations, vanishing and exploding gradients.

The lecture's 10-layer experiment: with 0.01*randn weights the activations collapse toward
0 with depth (``vanishing_activations``), with 1.0*randn and ReLU they grow by a constant
factor per layer (the std reaches ~1e12 after 10 layers of 500 units), and with tanh
they saturate. Saturated or collapsed layers pass back ~0 gradient, so the gradient norm
shrinks layer by layer toward the input (an 8-layer sigmoid net: the first layer's
gradient is ~1e-6 of the last layer's); a too-large init makes it grow instead.

Gradient norms come from the parameter records (``grad_norm``; the PyTorch adapter takes
them before gradient clipping). Only weight matrices and convolution kernels are compared:
biases, norm-layer gains and embedding tables have gradients of another scale by design.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..schema import Finding
from ._base import (
    Delta, Rule, RuleThresholds, fmt, grow, knob, NewLayers, patience, register, std_by_depth, streaks,
    weights_by_depth,
)

__all__ = ["ExplodingActivations", "VanishingGradients", "ExplodingGradients"]


@dataclass(frozen=True)
class ExplodingThresholds(RuleThresholds):
    # He/Xavier-initialised nets keep the std within ~3x of the first layer's across depth; the
    # lecture's ReLU net with 1.0*randn grows ~16x per layer (500 units), 1e12 after 10 layers.
    max_std_ratio: float = knob(100.0, 1.0, 1e300, "deep layer std / first activation layer std")
    max_growth: float = knob(2.0, 1.0, 1e6, "std growth factor per layer (fitted over depth)")
    min_layers: int = knob(4, 3, 100_000, "activation layers needed for the growth fit", integer=True)


@register
class ExplodingActivations(Rule):
    id = "exploding_activations"
    severity = "warning"
    summary = ("A deeper layer's activation std is above max_std_ratio x the first activation layer's, or the std "
               "grows geometrically with depth (a line fitted to log std over >= min_layers layers gives more than "
               "max_growth x per layer): the weights are too large (the lecture's ReLU net with 1.0*randn).")
    fix = ("Initialise with He (ReLU: randn*sqrt(2/fan_in)) or Xavier (tanh) scaling instead of 1.0*randn, "
           "or add batch norm.")
    Thresholds = ExplodingThresholds

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.reported = NewLayers()

    def update(self, d: Delta) -> Iterator[Finding]:
        for i, layers, row, base in std_by_depth(d):
            with np.errstate(all="ignore"):
                ratio = row / base
            ok = np.isfinite(ratio) & (ratio > 0)
            growth = 1.0
            if ok.sum() >= self.t.min_layers:
                x = np.nonzero(ok)[0].astype(np.float64)
                growth = float(np.exp(np.polyfit(x, np.log(ratio[ok]), 1)[0]))
            if growth > self.t.max_growth:
                bad = ok & (ratio > self.t.max_growth)
                why = f"it grows {growth:.1f}x per layer (threshold {self.t.max_growth:g}x)"
            else:
                bad = ok & (ratio > self.t.max_std_ratio)
                why = f"threshold {self.t.max_std_ratio:g}x"
            new = self.reported.new(layers[j] for j in np.nonzero(bad)[0])
            if not new:
                continue
            step = int(d.run.acts.steps[d.acts_rows.start + i])
            j = int(np.nanargmax(np.where(ok, ratio, np.nan)))
            worst = float(ratio[j])
            yield self.finding(
                step, f"Activation std grows with depth: {layers[j]} has {fmt(float(row[j]))}, {fmt(worst)}x the "
                      f"std of {layers[0]} ({fmt(base)}) at step {step}; {why}.",
                layers=new, value=worst, threshold=self.t.max_std_ratio if growth <= self.t.max_growth
                else self.t.max_growth)


# Attention query/key projections (BERT's ``attention.self.query``, ``q_proj``/``k_proj``...).
# While the attention softmax is near uniform, as it is at initialisation, their gradients are
# small by construction (1e-5 to 1e-4 of the classifier's on a fresh 2-layer BERT): a small
# gradient there is no sign of a gradient vanishing with depth.
_ATTENTION_QK = re.compile(r"(^|[._])(query|key|q_proj|k_proj|to_q|to_k|wq|wk)([._]|$)", re.IGNORECASE)


class _GradientDepth(Rule):
    """A weight tensor's gradient norm relative to the last (output) weight tensor's, for ``patience`` logged steps."""

    high = False  # exploding (ratio above the threshold) or vanishing (below)
    skip: re.Pattern[str] | None = None  # parameter names never judged (the output layer is always the reference)

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.count = np.zeros(0, np.int64)
        self.reported = NewLayers()
        self.last_ratio: np.ndarray | None = None

    def update(self, d: Delta) -> Iterator[Finding]:
        table = d.run.params
        ws = weights_by_depth(d)
        if self.skip is not None:
            ws = [w for w in ws[:-1] if not self.skip.search(w[0])] + ws[-1:]
        n = len(table)
        need = patience(self.t.patience, d, n)
        if len(ws) < 2:
            return
        names = [p for p, _ in ws]
        cols = [c for _, c in ws]
        limit = self.t.max_ratio if self.high else self.t.min_ratio
        if len(d.params_rows):
            g = d.params("grad_norm")[:, cols]
            with np.errstate(all="ignore"):
                ratio = g[:, :-1] / g[:, -1:]
            # No gradient at the output (frozen, NaN, zero) is no verdict on depth.
            ratio = np.where(np.isfinite(ratio) & (g[:, -1:] > 0), ratio, np.nan)
            flags = (ratio > limit) if self.high else (ratio < limit)
            self.count = grow(self.count, len(names) - 1)[: len(names) - 1]
            counts, self.count = streaks(flags, self.count)
            self.last_ratio = ratio[-1]
            for i in range(len(ratio)):
                yield from self._report(d, names, np.nonzero(counts[i] >= need)[0], ratio[i],
                                        d.params_rows.start + i, need, limit)
        if d.finished and n and need < self.t.patience and self.last_ratio is not None:
            yield from self._report(d, names, np.nonzero(self.count >= need)[0], self.last_ratio, n - 1, need, limit)

    def _report(self, d: Delta, names: list[str], hit: np.ndarray, ratio: np.ndarray, row: int, need: int,
                limit: float) -> Iterator[Finding]:
        if not len(hit):
            return
        new = self.reported.new(d.layer_of(names[j]) for j in hit)
        if not new:
            return
        step = int(d.run.params.steps[max(row - (need - 1), 0)])
        pick = [j for j in hit if d.layer_of(names[j]) in new]
        j = max(pick, key=lambda k: ratio[k]) if self.high else min(pick, key=lambda k: ratio[k])
        v = float(ratio[j])
        yield self.finding(step, self.describe(names[j], names[-1], v, limit, step, len(pick)),
                           layers=new, value=v, threshold=limit)

    def describe(self, worst: str, last: str, v: float, limit: float, step: int, k: int) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class VanishingGradThresholds(RuleThresholds):
    # The healthy bank (MLPs, BatchNorm CNNs, transformers) keeps every weight tensor's gradient
    # norm at 0.09x..3.8x the output layer's; an 8-layer sigmoid net gives ~1e-5 at its first
    # layer, a 10-layer tanh net with 0.01*randn weights ~1e-6.
    min_ratio: float = knob(1e-3, 0.0, 1.0, "gradient norm / the output weight tensor's gradient norm")
    patience: int = knob(2, 1, 1000, "consecutive logged steps", integer=True)


@register
class VanishingGradients(_GradientDepth):
    id = "vanishing_gradients"
    severity = "warning"
    skip = _ATTENTION_QK
    summary = ("A weight tensor's gradient norm is below min_ratio x the output layer's for patience logged steps: "
               "the gradient vanishes on its way back to the input (saturated tanh/sigmoid units, too small an init).")
    fix = ("Use ReLU-family activations, Xavier/He initialisation, batch/layer norm or residual connections so the "
           "gradient reaches the first layers.")
    Thresholds = VanishingGradThresholds

    def describe(self, worst: str, last: str, v: float, limit: float, step: int, k: int) -> str:
        return (f"The gradient shrinks toward the input: {worst}'s gradient norm is {fmt(v)}x that of {last} at step "
                f"{step} ({k} weight tensor(s) below the threshold {limit:g}x).")


@dataclass(frozen=True)
class ExplodingGradThresholds(RuleThresholds):
    # Healthy bank: at most 3.8x; a 10-layer tanh net with 1.0*randn weights (saturated, yet the
    # gradient grows ~2x per layer toward the input): 1.4e3x at the first layer.
    max_ratio: float = knob(100.0, 1.0, 1e300, "gradient norm / the output weight tensor's gradient norm")
    patience: int = knob(2, 1, 1000, "consecutive logged steps", integer=True)


@register
class ExplodingGradients(_GradientDepth):
    id = "exploding_gradients"
    severity = "warning"
    high = True
    summary = ("A weight tensor's gradient norm is above max_ratio x the output layer's for patience logged steps: "
               "the gradient grows on its way back to the input (weights too large for the depth).")
    fix = ("Initialise with Xavier/He scaling, add batch/layer norm, and clip the gradient norm "
           "(torch.nn.utils.clip_grad_norm_).")
    Thresholds = ExplodingGradThresholds

    def describe(self, worst: str, last: str, v: float, limit: float, step: int, k: int) -> str:
        return (f"The gradient grows toward the input: {worst}'s gradient norm is {fmt(v)}x that of {last} at step "
                f"{step} ({k} weight tensor(s) above the threshold {limit:g}x).")
