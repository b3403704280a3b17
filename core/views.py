"""What the dashboard, the HTML report and the notebook draw from a run: small arrays, read in one go.

The reader's columns (``Run.acts``, ``Run.params``: one row per logged step, one column per
layer) grow to a row per logged step of the whole run. A figure needs a few thousand points
of them, so every function here takes what one figure needs and downsamples it inside the
call, under ``Run.reading()`` so that the steps and the values describe one moment of a
growing run: of a layer table only the points drawn are copied, never a whole field (a
field of a 100,000-step run with 100 layers is 80 MB; the few lines a figure draws are
kilobytes). A scalar series is the reader's copy of its column (``Run.metric``), decimated
here; what reaches a figure is the decimated part only.

Downsampling is min/max bucketing (``decimate_index``): the extremes of every bucket are
kept, so a spike stays visible, and non-finite points are kept, so a NaN is never
decimated away. Names come back as the run wrote them: escaping them is the caller's job.
(After TensorBoard's ``DataProvider``: read series with a ``downsample`` limit.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .reader import Series

__all__ = [
    "FIGURE_POINT_BUDGET", "points_per_trace", "decimate_index", "Lines", "LayersAt", "series",
    "layer_lines", "param_lines", "layers_at", "histograms_at", "histogram_history", "param_value_at",
    "layer_steps", "layer_row_at", "layer_names", "param_names",
]

FIGURE_POINT_BUDGET = 60_000  # points per figure, over all traces
_NO_STEPS = np.empty(0, np.int64)


def points_per_trace(n_traces: int, max_points: int) -> int:
    """Points per trace so a figure of ``n_traces`` stays within the figure budget (at least 200)."""
    return max(200, min(max_points, FIGURE_POINT_BUDGET // max(1, n_traces)))


def decimate_index(y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of the points of ``y`` to draw: at most about ``max_points`` of them, increasing.

    Min/max bucketing: ``y`` is cut into ``max_points // 2`` buckets of equal length and the
    smallest and largest finite value of each kept; the first and last points are kept, and
    so are the non-finite points (thinned by stride to at most ``max_points // 4``, the
    first of each run of them always kept) so that a NaN stays marked.
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    size = math.ceil(n / max(1, max_points // 2))
    full = n - n % size
    finite = np.isfinite(y)
    clean = bool(finite.all())
    # The common case (every value finite) reads the column in place: no copy of it is made.
    lo = y if clean else np.where(finite, y, np.inf)
    hi = y if clean else np.where(finite, y, -np.inf)
    base = np.arange(0, full, size)
    picks = [base + lo[:full].reshape(-1, size).argmin(axis=1), base + hi[:full].reshape(-1, size).argmax(axis=1)]
    if full < n:
        picks += [np.array([full + int(lo[full:].argmin()), full + int(hi[full:].argmax())])]
    got = np.concatenate(picks)
    if not clean:
        got = got[finite[got]]  # a bucket with no finite value has no extreme
    extra = [np.array([0, n - 1])]
    if not clean:
        bad = np.flatnonzero(~finite)
        quarter = max_points // 4
        stride = max(1, math.ceil(len(bad) / max(1, quarter)))
        first_of_run = bad[np.concatenate([[True], np.diff(bad) > 1])]
        extra += [bad[::stride], first_of_run[:quarter]]
    return np.unique(np.concatenate([got, *extra]))


@dataclass(frozen=True, slots=True)
class Lines:
    """One line per layer (or parameter), each over its own steps: what a figure with a line per name draws.

    Attributes:
        names: the layers (or parameters), in drawing order.
        steps: per name, the int64 steps of its points.
        values: per name, float64 values (NaN/Inf where recorded; a name without data has none).
        span: ``(first, last)`` step of the rows the lines were taken from; None without rows.
    """

    names: tuple[str, ...]
    steps: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]
    span: tuple[int, int] | None

    @classmethod
    def of(cls, steps: np.ndarray, matrix: np.ndarray, names: Sequence[str]) -> "Lines":
        """Every point of ``matrix[row, name]`` over ``steps[row]`` (nothing decimated)."""
        steps = np.asarray(steps)
        matrix = np.asarray(matrix, np.float64).reshape(len(steps), len(names))
        span = (int(steps[0]), int(steps[-1])) if len(steps) else None
        return cls(tuple(names), tuple(steps for _ in names), tuple(matrix[:, j] for j in range(len(names))), span)

    def __len__(self) -> int:
        return len(self.names)

    def drawable(self) -> list[int]:
        """Positions of the lines with at least one finite value."""
        return [j for j, v in enumerate(self.values) if np.isfinite(v).any()]


@dataclass(frozen=True, slots=True)
class LayersAt:
    """Statistics of every layer at one logged step.

    Attributes:
        step: the step (None when the run has no layer statistics at or before the one asked).
        row: its row of the activation table (None likewise).
        names: the layers in depth order (``Run.layer_order``).
        kinds: each layer's kind from ``meta.json`` (``""`` when unknown).
        values: field name to ``[layer]`` values, NaN where a layer had none at that step.
    """

    step: int | None
    row: int | None
    names: list[str]
    kinds: list[str]
    values: dict[str, np.ndarray]


def series(run: Any, name: str, *, rank: int = 0, max_points: int | None = 2000) -> Series:
    """Scalar or metric ``name`` of ``rank``, under any of its aliases (``Run.metric``), at most ``max_points`` points.

    The series keeps the name the run logged it under; ``max_points=None`` keeps every point.
    """
    with run.reading():
        s = run.metric(name, rank)
    if max_points is None or len(s) <= max_points:
        return s
    idx = decimate_index(s.values, max_points)
    return Series(s.name, s.steps[idx], s.values[idx], s.times[idx])


def layer_names(run: Any) -> list[str]:
    """Layers with activation statistics, in depth order (``Run.layer_order``)."""
    with run.reading():
        return run.layer_order()


def param_names(run: Any) -> list[str]:
    """Parameter tensors with statistics, in the order first recorded."""
    with run.reading():
        return list(run.params.names)


def _lines(table: Any, field: str, names: Sequence[str] | None, max_points: int, positive: bool) -> Lines:
    """``Lines`` of ``table``'s ``field``, each line decimated to its share of ``max_points``; call under the lock."""
    names = list(table.names) if names is None else [n for n in names if n in table.index]
    steps = table.step_array()
    if not len(steps):
        return Lines(tuple(names), tuple(_NO_STEPS for _ in names), tuple(np.empty(0) for _ in names), None)
    values = table.field(field)
    cols = []
    for n in names:
        y = values[:, table.index[n]]  # a view of one column
        if positive:
            y = np.where(y > 0, y, np.nan)  # what a log axis can draw
        cols.append(y)
    drawn = sum(bool(np.isfinite(y).any()) for y in cols)
    per = points_per_trace(drawn, max_points)
    idx = [decimate_index(y, per) for y in cols]
    return Lines(tuple(names), tuple(steps[i] for i in idx), tuple(np.array(y[i], np.float64) for y, i in zip(cols, idx)),
                 (int(steps[0]), int(steps[-1])))


def layer_lines(run: Any, field: str, layers: Sequence[str] | None = None, *, max_points: int = 2000,
                positive: bool = False) -> Lines:
    """One activation field (``dead_frac``, ``std``...) over steps, a line per layer.

    Args:
        run: the run.
        field: a field of ``core.schema.ACT_FIELDS``.
        layers: the layers to draw, in order (default: every layer in depth order); unknown ones are left out.
        max_points: points of the whole figure's budget per line (``points_per_trace``).
        positive: values <= 0 as NaN (for a log axis).
    """
    with run.reading():
        return _lines(run.acts, field, run.layer_order() if layers is None else layers, max_points, positive)


def param_lines(run: Any, field: str, params: Sequence[str] | None = None, *, max_points: int = 2000,
                positive: bool = False) -> Lines:
    """One parameter field (``upd_ratio``, ``grad_norm``...) over steps, a line per parameter tensor.

    Args are those of ``layer_lines``; ``params`` defaults to every tensor in the order recorded.
    """
    with run.reading():
        return _lines(run.params, field, params, max_points, positive)


def layers_at(run: Any, *, row: int | None = None, step: int | None = None,
              fields: Sequence[str] = ("mean", "std")) -> LayersAt:
    """``fields`` of every layer at one logged step: row ``row``, or the last row at or before ``step``, or the last.

    A row outside the table (or a step before the first) gives ``step=None`` and empty values.
    """
    with run.reading():
        acts = run.acts
        names = run.layer_order()
        kinds = run.layer_kinds()
        if step is not None:
            row = acts.row_at(step)
        elif row is None:
            row = len(acts) - 1
        if row is None or not 0 <= row < len(acts) or not names:
            return LayersAt(None, None, names, [kinds.get(n, "") for n in names], {f: np.empty(0) for f in fields})
        cols = np.array([acts.index[n] for n in names], np.intp)
        return LayersAt(int(acts.step_array()[row]), row, names, [kinds.get(n, "") for n in names],
                        {f: acts.field(f)[row, cols] for f in fields})


def layer_steps(run: Any) -> np.ndarray:
    """The steps of the activation table's rows (a copy; the layers page's slider moves over them)."""
    with run.reading():
        return run.acts.step_array().copy()


def layer_row_at(run: Any, step: int) -> int | None:
    """The activation table's row of the last record at or before ``step``, or None."""
    with run.reading():
        return run.acts.row_at(step)


def histograms_at(run: Any, layers: Sequence[str], *, row: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
    """``(step, lo, hi, counts)`` of the kept histogram row at or before activation row ``row``, for ``layers``.

    Old histogram rows are thinned on long runs (``core._columns.Table``), so the step
    returned may be earlier than that of ``row``. None when no histogram is kept by then
    (or ``row`` is outside the table).
    """
    with run.reading():
        acts = run.acts
        if not 0 <= row < len(acts):
            return None
        hsteps, lo, hi, counts = acts.histograms()
        if not len(hsteps):
            return None
        h = max(0, int(np.searchsorted(hsteps, int(acts.step_array()[row]), side="right")) - 1)
        cols = [acts.index[n] for n in layers if n in acts.index]
        return int(hsteps[h]), lo[h, cols], hi[h, cols], counts[h, cols]


def histogram_history(run: Any, layer: str, *, max_columns: int = 1000
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, lo, hi, counts)`` of one layer's kept histograms over time, at most ``max_columns`` of them (evenly spaced)."""
    with run.reading():
        acts = run.acts
        hsteps, lo, hi, counts = acts.histograms()
        j = acts.index.get(layer)
        if j is None or not len(hsteps):
            return _NO_STEPS, np.empty(0), np.empty(0), np.empty((0, 0), np.int64)
        take = np.arange(len(hsteps))
        if len(take) > max_columns:
            take = np.linspace(0, len(hsteps) - 1, max_columns).round().astype(int)
        return hsteps[take], lo[take, j], hi[take, j], counts[take, j]


def param_value_at(run: Any, field: str, param: str, step: int) -> float:
    """``field`` of parameter ``param`` at the last logged step at or before ``step``; NaN when none."""
    with run.reading():
        p = run.params
        row = p.row_at(step)
        j = p.index.get(param)
        return float(p.field(field)[row, j]) if row is not None and j is not None else float("nan")
