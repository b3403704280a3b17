"""What every rule builds on: thresholds (``knob``), the ``Delta`` a rule sees, the ``Rule`` base class, the registry and shared helpers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterable, Iterator

import numpy as np

from ..errors import ConfigError
from ..schema import NORM_KINDS, REG_KEYS, RELU_FAMILY, SATURATING, Finding, Meta, metric_key

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


def fmt(x: float) -> str:
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
            moot (accuracy is at chance once the loss is NaN: no separate underfitting);
            ``"rule:error"`` for that rule's findings of that severity only.
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


class NewLayers:
    """Remembers which layers a per-layer rule has reported, so each is reported once."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def new(self, names: Iterable[str]) -> list[str]:
        out = [n for n in dict.fromkeys(names) if n not in self.seen]
        self.seen.update(out)
        return out


def streaks(flags: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def patience(patience: int, d: Delta, rows: int) -> int:
    """The streak length a rule needs: ``patience``, or every logged row of a finished run with fewer.

    A finished run of one logged step (the lecture's single forward pass) is judged on what it has.
    """
    return max(1, min(patience, rows)) if d.finished else patience


def grow(state: np.ndarray, n: int) -> np.ndarray:
    if len(state) >= n:
        return state
    return np.concatenate([state, np.zeros(n - len(state), state.dtype)])


# -- activation rules -------------------------------------------------------------------------


def activation_layers(d: Delta) -> list[str]:
    """The layers compared across depth, input to output: the activation layers, else every recorded layer."""
    order = d.run.layer_order()
    acts = [n for n in order if d.layer_kinds.get(n) in RELU_FAMILY | SATURATING]
    return acts if acts else [n for n in order if d.layer_kinds.get(n, "other") != "input"]


def std_by_depth(d: Delta) -> Iterator[tuple[int, list[str], np.ndarray, float]]:
    """The activation std across depth at each new logged step, for the rules that compare layers.

    Yields ``(row, layers, std, base)``: the new row's position in ``d``, the activation
    layers in depth order, their std at that step, and the first layer's std (only rows where
    it is finite and above 0, the reference the deeper layers are judged against).
    """
    if not len(d.acts_rows):
        return
    layers = activation_layers(d)
    if len(layers) < 2:
        return
    idx = [d.run.acts.index[n] for n in layers]
    for i, row in enumerate(d.acts("std")[:, idx]):
        base = row[0]
        if math.isfinite(base) and base > 0:
            yield i, layers, row, float(base)


def looks_like_matrix(d: Delta, param: str) -> bool:
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
        if not looks_like_matrix(d, name) or d.layer_kinds.get(layer) in _NOT_COMPARED:
            continue
        out.append((order.get(layer, len(order)), col, name))
    out.sort()
    return [(name, col) for _, col, name in out]
