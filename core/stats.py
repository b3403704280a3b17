"""Per-layer statistics in numpy: pure functions from arrays to small dicts.

These are the reference definitions (docs/format.md lists the fields). The PyTorch
adapter computes the same quantities with torch ops on the tensor's device, and its tests
compare against these functions.

Definitions (CS231n "Training Neural Networks I"):

* mean/std/min/max: over the finite elements of the layer's output for the batch
  (population std, ddof=0).
* zero_frac: share of elements exactly 0 (sparsity).
* dead_frac: share of *units* whose output is <= 0 for every example of the batch. A unit
  is axis 1 of the output: a neuron of a (N, D) output, a channel of a (N, C, H, W)
  convolution output (dead if <= 0 at every position of every example). Only for the
  ReLU family; ``None`` otherwise.
* sat_frac: share of elements within ``SAT_EPS`` of an asymptote (tanh: |y| > 0.99;
  sigmoid: y < 0.01 or y > 0.99). Only for saturating kinds; ``None`` otherwise.
* unit_std: population std across units (axis 1, as for dead units) of each unit's mean
  over the batch (and positions). 0 when all units compute the same output: the symmetric
  weights of a constant initialisation. ``None`` for fewer than two units.
* hist: ``DEFAULT_BINS`` equal-width counts over [lo, hi] = [min, max] of the finite values.
* nan/inf: counts of non-finite elements; they are excluded from every other statistic.

Values are taken as float64: wider floats (float128) beyond its range count as Inf, and
values near its limits (``±1.797e308``) are scaled before they are summed, so a mean, a
std, a norm or a histogram range does not overflow. Complex arrays are refused (a
``ValueError`` saying so) instead of losing their imaginary part.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .schema import DEFAULT_BINS, RELU_FAMILY, SATURATING

__all__ = ["activation_stats", "param_stats", "input_stats", "histogram", "SAT_EPS"]

SAT_EPS = 0.01  # distance to an asymptote counted as saturated


def _real(a: Any) -> np.ndarray:
    """``a`` as a real array: bool and object become float64, floats wider than 64 bits become float64."""
    arr = np.asarray(a)
    if arr.dtype.kind == "c":
        raise ValueError("complex values: Babysitter records statistics of real numbers; "
                         "pass x.real, x.imag or abs(x)")
    if arr.dtype.kind not in "fiu" or (arr.dtype.kind == "f" and arr.dtype.itemsize > 8):
        with np.errstate(over="ignore"):
            arr = arr.astype(np.float64)
    return arr


def _scale(v: np.ndarray) -> float:
    """1.0, or the largest magnitude of ``v`` when sums over it could overflow float64."""
    m = float(np.max(np.abs(v))) if v.size else 0.0
    return m if m > 1e150 else 1.0


def _finite_view(a: np.ndarray) -> tuple[np.ndarray, int, int, np.ndarray | None]:
    """The finite elements (flattened), NaN count, Inf count, and the finite mask if any were dropped."""
    if a.dtype.kind not in "fc":
        return a.reshape(-1), 0, 0, None
    fin = np.isfinite(a)
    if fin.all():
        return a.reshape(-1), 0, 0, None
    n_nan = int(np.isnan(a).sum())
    n_inf = int(fin.size - fin.sum()) - n_nan
    return a[fin], n_nan, n_inf, fin


def histogram(values: np.ndarray, bins: int = DEFAULT_BINS) -> tuple[float, float, list[int]]:
    """Equal-width histogram of finite ``values`` over their own [min, max].

    Returns:
        ``(lo, hi, counts)``. For an empty input ``(0.0, 0.0, [0] * bins)``; when all values
        are equal, ``lo == hi`` and every count sits in the first bin.
    """
    v = values.reshape(-1)
    if v.size == 0:
        return 0.0, 0.0, [0] * bins
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        counts = [0] * bins
        counts[0] = int(v.size)
        return lo, hi, counts
    if not math.isfinite(hi - lo):  # a range wider than float64 holds: bin the halves instead
        v, lo2, hi2 = v / 2, lo / 2, hi / 2
        counts, _ = np.histogram(v, bins=bins, range=(lo2, hi2))
        return lo, hi, counts.astype(np.int64).tolist()
    counts, _ = np.histogram(v, bins=bins, range=(lo, hi))
    return lo, hi, counts.astype(np.int64).tolist()


def _f(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def activation_stats(a: Any, kind: str = "linear", *, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Statistics of one layer's output for one batch.

    Args:
        a: the layer's output, batch first: ``(N,)``, ``(N, D)`` or ``(N, C, ...)``.
        kind: activation kind (``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"linear"``, ...).
        bins: number of histogram bins.

    Returns:
        A dict with the keys of ``schema.ACT_FIELDS`` plus ``hist_lo``, ``hist_hi``, ``hist``.
        Statistics that do not apply (dead units of a tanh layer) or cannot be computed
        (every element non-finite) are ``None``.
    """
    arr = _real(a)
    fin, n_nan, n_inf, mask = _finite_view(arr)
    out: dict[str, Any] = {"nan": n_nan, "inf": n_inf}
    if fin.size:
        f64 = fin.astype(np.float64, copy=False)
        k = _scale(f64)
        g = f64 / k if k != 1.0 else f64
        out["mean"] = _f(g.mean() * k)
        out["std"] = _f(g.std() * k)
        out["min"] = _f(f64.min())
        out["max"] = _f(f64.max())
        out["zero_frac"] = float(np.count_nonzero(f64 == 0) / f64.size)
    else:
        out.update(mean=None, std=None, min=None, max=None, zero_frac=None)

    out["dead_frac"] = None
    if kind in RELU_FAMILY and arr.size:
        if arr.ndim <= 1:
            units = arr.reshape(-1, 1)
        elif arr.ndim == 2:
            units = arr
        else:  # (N, C, ...): a channel is a unit
            units = np.moveaxis(arr, 1, -1).reshape(-1, arr.shape[1])
        # A NaN is not <= 0, so a unit with a NaN output is never counted dead.
        dead = np.all(units <= 0, axis=0)
        out["dead_frac"] = float(dead.mean())

    out["unit_std"] = None
    if arr.ndim >= 2 and arr.shape[1] >= 2 and arr.shape[0] and mask is None:
        axes = (0, *range(2, arr.ndim))
        a64 = arr.astype(np.float64, copy=False)
        k = _scale(a64)
        out["unit_std"] = _f((a64 / k if k != 1.0 else a64).mean(axis=axes).std() * k)

    out["sat_frac"] = None
    if kind in SATURATING and fin.size:
        if kind in ("sigmoid", "hardsigmoid"):
            sat = (fin < SAT_EPS) | (fin > 1 - SAT_EPS)
        else:
            sat = np.abs(fin) > 1 - SAT_EPS
        out["sat_frac"] = float(np.count_nonzero(sat) / fin.size)

    lo, hi, counts = histogram(fin, bins)
    out["hist_lo"], out["hist_hi"], out["hist"] = lo, hi, counts
    return out


def _norm_and_bad(a: np.ndarray | None) -> tuple[float | None, float | None, int, int]:
    if a is None:
        return None, None, 0, 0
    arr = _real(a).astype(np.float64, copy=False).reshape(-1)
    fin, n_nan, n_inf, _ = _finite_view(arr)
    if fin.size == 0:
        return None, None, n_nan, n_inf
    k = _scale(fin)
    g = fin / k if k != 1.0 else fin
    with np.errstate(over="ignore"):  # a norm past float64's range is not a number it can hold: None
        return _f(np.sqrt(np.dot(g, g)) * k), _f(g.std() * k), n_nan, n_inf


def param_stats(weight: Any, update: Any = None, grad: Any = None, before: Any = None) -> dict[str, Any]:
    """Statistics of one parameter tensor at one step.

    Args:
        weight: the parameter after the update.
        update: the change just applied (``weight_after - weight_before``), if known.
        grad: the gradient, if known.
        before: the weight before the update (default ``weight - update``).

    Returns:
        A dict with the keys of ``schema.PARAM_FIELDS``. ``upd_ratio`` is ``upd_norm`` over the
        norm of the weight before the update (``weight - update``): the lecture's update:weight
        ratio, healthy around 1e-3.
    """
    w_norm, w_std, w_nan, w_inf = _norm_and_bad(np.asarray(weight))
    upd_norm, _, _, _ = _norm_and_bad(None if update is None else np.asarray(update))
    grad_norm, _, g_nan, g_inf = _norm_and_bad(None if grad is None else np.asarray(grad))
    ratio = None
    if upd_norm is not None:
        if before is None:
            with np.errstate(invalid="ignore", over="ignore"):
                before = np.asarray(weight, np.float64) - np.asarray(update, np.float64)
        before_norm = _norm_and_bad(np.asarray(before))[0]
        if before_norm:
            ratio = _f(upd_norm / before_norm)
    return {
        "w_norm": w_norm, "w_std": w_std, "upd_norm": upd_norm, "upd_ratio": ratio, "grad_norm": grad_norm,
        "w_nan": w_nan, "w_inf": w_inf, "grad_nan": g_nan, "grad_inf": g_inf,
    }


def input_stats(x: Any) -> dict[str, Any]:
    """Mean, std, min, max and non-finite counts of the first layer's input batch."""
    arr = _real(x)
    fin, n_nan, n_inf, _ = _finite_view(arr)
    if fin.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "nan": n_nan, "inf": n_inf}
    f64 = fin.astype(np.float64, copy=False)
    k = _scale(f64)
    g = f64 / k if k != 1.0 else f64
    return {"mean": _f(g.mean() * k), "std": _f(g.std() * k), "min": _f(f64.min()), "max": _f(f64.max()),
            "nan": n_nan, "inf": n_inf}
