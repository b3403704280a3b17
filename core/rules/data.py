"""Data rule: inputs not zero-centred."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..schema import Finding
from ._base import Delta, Rule, RuleThresholds, fmt, knob, register


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
                step, f"The input batch at step {step} has mean {fmt(float(mean[i]))} and std {fmt(float(std[i]))}: "
                      f"|mean|/std = {fmt(float(ratio[i]))} (threshold {self.t.max_mean_std_ratio:g}).",
                value=float(ratio[i]), threshold=self.t.max_mean_std_ratio)
