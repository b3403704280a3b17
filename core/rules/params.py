"""Parameter rules: the update:weight ratio, absolute and relative to the sibling layers, and non-finite values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import ConfigError
from ..schema import Finding
from ._base import (
    UPDATE_RATIO_RELATIVE, Delta, Rule, RuleThresholds, fmt, is_bias, knob, NewLayers, register, weights_by_depth,
)


# -- parameter rules --------------------------------------------------------------------------


def medians_of_others(x: np.ndarray) -> np.ndarray:
    """For each ``x[i]``, the median of the other values (``np.median(np.delete(x, i))``), all at once.

    One sort instead of one median per value: a model with 200 weight tensors is judged in
    microseconds per logged step, not milliseconds.
    """
    n = len(x)
    if n < 2:
        return np.full(n, np.nan)
    order = np.argsort(x, kind="stable")
    s = x[order]
    rank = np.empty(n, np.intp)
    rank[order] = np.arange(n)

    def others(i: int) -> np.ndarray:  # the i-th smallest of the values without the one at ``rank``
        return np.where(i < rank, s[i], s[i + 1])

    m = n - 1
    return others(m // 2) if m % 2 else (others(m // 2 - 1) + others(m // 2)) / 2


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
               "(that layer's learning rate is out of line; the output layer is not compared; judged while that median "
               "is inside the band); healthy is ~1e-3. "
               "Biases are skipped.")
    fix = "Scale that layer's learning rate toward an update:weight ratio of ~1e-3."
    # Behind a layer with every unit dead the weights get no gradient: their ratios say nothing of the rate.
    suppressed_by = ("dead_relu:error",)
    Thresholds = UpdateRatioThresholds

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        super().__init__(thresholds)
        self.reported = {side: NewLayers() for side in ("high", "low", "rel_high", "rel_low")}
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
        refs = np.exp(medians_of_others(np.log(m[idx])))
        rel = m[idx] / refs  # in one go: this runs at every logged step, for every weight tensor
        f = self.t.max_rel_factor
        # Relative to its siblings, a layer's ratio does not fall as the network fits or the schedule
        # anneals (all layers slow down together): both sides are judged throughout.
        for side in ("rel_high", "rel_low"):
            # Out of line with the others only while the others are in line: beside siblings whose
            # median is below the band (vanishing updates) a layer at a healthy ratio is no outlier,
            # and "lower its rate" would contradict the siblings' "too low" (and the same above it).
            sane = refs >= self.t.min_ratio if side == "rel_high" else refs <= self.t.max_ratio
            out = np.nonzero((rel > f if side == "rel_high" else rel < 1 / f) & sane)[0]
            # Already reported as outside the absolute band: the relative finding would repeat it.
            absolute = self.reported["high" if side == "rel_high" else "low"].seen
            got = {names[idx[q]]: (float(rel[q]), float(refs[q])) for q in out}
            hit = [p for p in got if d.layer_of(p) not in absolute]
            yield from self._report(d, side, step, hit, {p: got[p][0] for p in hit}, refs={p: got[p][1] for p in hit})

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
                step, f"{', '.join(hit)}: median update:weight ratio {fmt(v)} over {w} logged steps up to step "
                      f"{step} is {'above' if high else 'below'} {th:g}: the learning rate is "
                      f"{'too high' if high else 'too low'}.",
                layers=layers, value=v, threshold=th, fix=fix)
            return
        f = self.t.max_rel_factor
        p = max(hit, key=lambda q: value[q]) if high else min(hit, key=lambda q: value[q])
        times = f"{v:.1f}x" if high else f"1/{1 / v:.1f}"
        yield self.finding(
            step, f"{', '.join(hit)}: median update:weight ratio {fmt(value[p] * refs[p])} over {w} logged steps up "
                  f"to step {step} is {times} the median {fmt(refs[p])} of {UPDATE_RATIO_RELATIVE} (threshold "
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
        self.reported = NewLayers()

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
