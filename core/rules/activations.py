"""Activation rules: vanishing activations, saturation, dead ReLUs, symmetric weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..schema import NORM_KINDS, Finding
from ._base import (
    Delta, Rule, RuleThresholds, fmt, grow, knob, looks_like_matrix, NewLayers, patience, std_by_depth,
    register, streaks,
)


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
        self.reported = NewLayers()

    def update(self, d: Delta) -> Iterator[Finding]:
        for i, layers, row, base in std_by_depth(d):
            ratio = row[1:] / base
            low = [layers[1 + j] for j in np.nonzero(ratio < self.t.min_std_ratio)[0]]
            new = self.reported.new(low)
            if new:
                step = int(d.run.acts.steps[d.acts_rows.start + i])
                worst = float(np.nanmin(ratio))
                yield self.finding(
                    step, f"Activation std falls with depth: {len(new)} layer(s) from {new[0]} on are below "
                          f"{self.t.min_std_ratio:g}x the std of {layers[0]} ({fmt(base)}); lowest ratio "
                          f"{fmt(worst)} at step {step}.",
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
        self.reported = NewLayers()

    def describe(self, layers: str, values: str, limit: float, step: int) -> str:
        """The message: ``layers`` their names, ``values`` their fractions in the same order (``97% and 88%``)."""
        raise NotImplementedError

    def groups(self, layers: list[str], values: np.ndarray) -> list[tuple[list[str], np.ndarray, str | None, str]]:
        """The findings to make of the layers that crossed the threshold together:
        ``(layers, values, severity or None for the rule's, a sentence added to the message)``."""
        return [(layers, values, None, "")]

    def update(self, d: Delta) -> Iterator[Finding]:
        table = d.run.acts
        names, n = table.names, len(table)
        limit = getattr(self.t, self.limit)
        need = patience(self.t.patience, d, n)
        if len(d.acts_rows):
            frac = d.acts(self.field)
            self.count = grow(self.count, len(names))
            counts, self.count = streaks(np.nan_to_num(frac, nan=0.0) > limit, self.count)
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
        values = table.field(self.field)[row, [table.index[x] for x in new]]
        for layers, vs, severity, more in self.groups(new, values):
            shown = [f"{v:.0%}" for v in vs.tolist()]
            said = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
            yield self.finding(step, self.describe(", ".join(layers), said, limit, step) + more, layers=layers,
                               value=float(np.nanmax(vs)), threshold=limit, severity=severity)


@register
class Saturation(_FractionStreak):
    id = "saturation"
    severity = "warning"
    summary = ("More than max_sat_frac of a tanh/sigmoid layer's outputs sit within 1% of the asymptotes for "
               "patience logged steps: their gradient is ~0 (the lecture's 1.0*randn init).")
    fix = "Use smaller initial weights (Xavier: randn/sqrt(fan_in)), batch norm, or ReLU."
    Thresholds = SaturationThresholds
    field, limit = "sat_frac", "max_sat_frac"

    def describe(self, layers: str, values: str, limit: float, step: int) -> str:
        return f"{layers}: {values} of outputs are saturated (threshold {limit:.0%}) since step {step}."


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
               "batch, for patience logged steps: those units no longer learn. An error when every unit of a "
               "layer is dead: no gradient passes it, so nothing before it learns.")
    fix = ("Lower the learning rate, use He initialisation, a small positive bias (e.g. 0.01), or Leaky ReLU; "
           "check the input scaling.")
    Thresholds = DeadReluThresholds
    field, limit = "dead_frac", "max_dead_frac"

    def describe(self, layers: str, values: str, limit: float, step: int) -> str:
        return (f"{layers}: {values} of units are dead (<= 0 for the whole batch; threshold {limit:.0%}) "
                f"since step {step}.")

    def groups(self, layers: list[str], values: np.ndarray) -> list[tuple[list[str], np.ndarray, str | None, str]]:
        every = values >= 1.0  # every unit dead: the layer passes no gradient at all
        out: list[tuple[list[str], np.ndarray, str | None, str]] = []
        if every.any():
            out.append(([n for n, e in zip(layers, every) if e], values[every], "error",
                        " No gradient passes a layer whose every unit is dead: nothing before it learns."))
        if not every.all():
            out.append(([n for n, e in zip(layers, every) if not e], values[~every], None, ""))
        return out


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
        self.reported = NewLayers()

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
                              f"units {fmt(value)} of the std, threshold {self.t.max_unit_spread:g}).",
                        layers=new, value=value, threshold=self.t.max_unit_spread)
        if len(d.params_rows):
            names = d.run.params.names
            wstd, wnorm = d.params("w_std"), d.params("w_norm")
            weights = np.array([looks_like_matrix(d, n) for n in names], bool)
            flag = (wstd == 0) & (wnorm > 0) & weights[None, :]
            for i in np.nonzero(flag.any(axis=1))[0]:
                params = [names[j] for j in np.nonzero(flag[i])[0]]
                new = self.reported.new(d.layer_of(p) for p in params)
                if new:
                    step = int(d.run.params.steps[d.params_rows.start + i])
                    yield self.finding(
                        step, f"{', '.join(params)}: all weights are equal at step {step} (std 0): every unit of the "
                              f"layer computes the same output.", layers=new, value=0.0, threshold=0.0)
