"""PyTorch adapter: ``Monitor.watch(model, optimizer)`` records every layer with hooks.

The only module of the project that imports torch. Usage (three lines in a training loop)::

    mon = Monitor("runs", num_classes=10)            # 1: the run
    mon.watch(model, optimizer)                      # 2: hooks on the model and the optimizer
    for step, (x, y) in enumerate(loader):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        mon.log(step, loss=loss)                     # 3: the loss (a tensor is fine)
    mon.close()                                      # or ``with Monitor(...) as mon:``

What is recorded, on logged steps only (the first step and every ``every`` steps):

* the output of every activation module (ReLU, LeakyReLU, PReLU, ELU, GELU, SiLU, Tanh,
  Sigmoid, Softplus, ...), Linear, Conv, BatchNorm/LayerNorm/GroupNorm and Embedding
  module, for the first forward of the step in training mode (``model.train()``);
  forwards in eval mode (validation) are not recorded. Activations called as functions
  (``F.relu`` inside ``forward``) are seen only through the output of the Linear/Conv layer
  before them. Units are axis 1: a neuron of a ``(N, D)`` output, a channel of a
  ``(N, C, H, W)`` output.
* the first positional input of the model (the ``input`` record).
* per parameter tensor: weight norm/std and NaN/Inf counts after ``optimizer.step()``, the
  update (the real difference of the weights across ``step()``, so momentum and Adam are
  right; for plain SGD, exactly ``-lr * grad``, its norm is ``lr * ||grad||`` without a copy)
  and its ratio to the weight norm, the gradient norm and NaN/Inf counts before
  ``step()``. A parameter that got no gradient at that step (frozen with
  ``requires_grad=False``, or unused) has ``upd_norm``, ``upd_ratio`` and ``grad_norm``
  ``null``. A Parameter shared by several layers is recorded once, under its first name.
* the learning rate of each parameter group, as the scalars ``lr``, ``lr/1``, ``lr/2``, ...
  added to the step's ``mon.log`` record.

Cost. Forward hooks are attached only for logged steps and removed after them, so an
unlogged step runs the model with no hook at all; the optimizer hooks then do one flag
check. On a logged step every statistic is computed with torch ops on the tensor's own
device, stacked into one vector per layer, and all vectors go to the host in one transfer
(``torch.cat(...).tolist()``) when ``optimizer.step()`` returns. On the CPU, where reading a
value is a memory read, host arithmetic replaces the small ops between the passes.

The definitions are those of ``core.stats`` (the numpy reference), with one sampling choice.
The whole batch gives mean, std, min, max, NaN/Inf counts, the unit-mean spread and dead
units (a unit is dead only if it is <= 0 for every example, so it needs every example; the
moments and extremes are cheap full passes and define the histogram's range). A subsample
gives the histogram counts and the zero and saturation fractions: the first examples of the
batch, at most ``hist_sample`` values (16384 by default; a layer with fewer values uses them
all). A histogram drawn on a screen and a fraction compared with a 10% threshold do not
change with more values (the standard error of a fraction from 16384 values is under 0.4%),
while these passes are a large share of the cost.

On a CPU tensor a non-finite value is detected from a sum already computed and only then
are the NaN-excluding versions of the statistics computed; on other devices they are always
computed that way, because branching on a device value would force a synchronisation. The
CPU statistics of each layer run on one thread: each op is too short to gain from a second,
and a parallel op on a busy machine waits for a worker that lost its core.

A failure inside a hook never stops training: it is logged once and monitoring of that
layer (or of the parameters) stops. Hooks never modify a tensor and use no random numbers:
training with and without the monitor is bit-identical.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.schema import PARAM_FIELDS, RELU_FAMILY, SATURATING, LayerInfo, finite_or_none
from core.stats import SAT_EPS

log = logging.getLogger(__name__)

__all__ = ["TorchWatch", "HIST_SAMPLE", "Scratch", "layer_kind", "activation_vector", "decode_activation",
           "input_vector", "decode_input", "param_vector", "grad_vector", "cpu_param_lists", "cpu_grad_lists",
           "decode_param", "hist_sample_of", "watch_model"]

HIST_SAMPLE = 16384  # values binned per layer for the histogram (first examples of the batch)
# Weight copies taken before optimizer.step() (for the update) are kept between logged steps
# when all of them together take at most this many bytes; above it they are made afresh on
# each logged step, so a large model does not carry a second copy of its weights.
KEEP_SNAPSHOT_BYTES = 256 * 2**20
# CPU statistics of tensors up to this many elements run on one thread. Each of their ops is
# too short to gain from a second thread, and a parallel op waits for every worker thread:
# on a busy machine a worker that lost its core stalls the op for a scheduler time slice.
ONE_THREAD_NUMEL = 2**21

# Module classes and their layer kind (core.schema.LAYER_KINDS). Subclasses first.
_KIND_TABLE: tuple[tuple[type, str], ...] = (
    (nn.ReLU6, "relu6"), (nn.ReLU, "relu"), (nn.LeakyReLU, "leaky_relu"), (nn.PReLU, "prelu"),
    (nn.RReLU, "rrelu"), (nn.ELU, "elu"), (nn.SELU, "selu"), (nn.CELU, "celu"), (nn.GELU, "gelu"),
    (nn.SiLU, "silu"), (nn.Mish, "mish"), (nn.Softplus, "softplus"), (nn.Hardswish, "hardswish"),
    (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"), (nn.Hardtanh, "hardtanh"), (nn.Hardsigmoid, "hardsigmoid"),
    (nn.Softsign, "softsign"),
    (nn.Linear, "linear"), (nn.Bilinear, "linear"),
    (nn.modules.conv._ConvNd, "conv"),
    (nn.modules.batchnorm._NormBase, "batchnorm"),
    (nn.LayerNorm, "layernorm"), (nn.GroupNorm, "layernorm"), (nn.RMSNorm, "layernorm"),
    (nn.Embedding, "embedding"),
)

_ACT_HEAD = 11  # sum, m2, min, max, nonzero, dead, sat, nan, inf, unit_std, sample size; then the histogram
_PARAM_LEN = 6  # w_sq, w_m2, w_nan, w_inf, upd_sq, w_sum
_GRAD_LEN = 3  # grad_sq, grad_nan, grad_inf


def layer_kind(module: nn.Module) -> str | None:
    """The layer kind recorded for ``module``, or ``None`` when it is not watched."""
    for cls, kind in _KIND_TABLE:
        if isinstance(module, cls):
            return kind
    return None


# -- statistics on the device --------------------------------------------------------------
#
# Every statistic is a float reduction (sum, dot, aminmax, amax): on the CPU these run several
# times faster than counting through boolean tensors (count_nonzero, (x > t).sum()). A count
# of non-zero elements is dot(sign(x), sign(x)); of saturated ones, sum(sign(relu(|x| - thr))).


def _as_float(x: torch.Tensor) -> torch.Tensor:
    x = x.detach()
    if x.dtype not in (torch.float32, torch.float64):
        # half/bfloat16 sums lose digits; integer and bool outputs have no float ops.
        x = x.float()
    return x


def _zero_like(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), dtype=torch.float64, device=x.device)


class _OneThread:
    """Run the CPU statistics of small tensors on one thread; restores the thread count after."""

    __slots__ = ("active", "saved")

    def __init__(self, device: torch.device, numel: int) -> None:
        self.active = device.type == "cpu" and numel <= ONE_THREAD_NUMEL
        self.saved = 1

    def __enter__(self) -> None:
        if self.active:
            self.saved = torch.get_num_threads()
            if self.saved > 1:
                torch.set_num_threads(1)

    def __exit__(self, *exc: Any) -> None:
        if self.active and self.saved > 1:
            torch.set_num_threads(self.saved)


class Scratch:
    """Reusable flat buffers, one per (device, dtype), grown to the largest size asked for.

    The statistics need temporaries the size of a layer output (deviations from the mean,
    signs). A fresh large allocation on the CPU costs page faults on every logged step (about
    as much as the arithmetic); reusing one buffer does not. Kernels on one device run in
    order, so a buffer is free again as soon as the next op is queued.
    """

    def __init__(self) -> None:
        self._bufs: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def take(self, like: torch.Tensor, n: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A 1-D buffer of ``n`` elements (``like.numel()`` by default) on ``like``'s device."""
        n = like.numel() if n is None else n
        key = (like.device, dtype or like.dtype)
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < n:
            buf = self._bufs[key] = torch.empty(n, dtype=key[1], device=key[0])
        return buf if buf.numel() == n else buf[:n]


def _take(scratch: Scratch | None, like: torch.Tensor, n: int | None = None,
          dtype: torch.dtype | None = None) -> torch.Tensor:
    if scratch is None:
        return torch.empty(like.numel() if n is None else n, dtype=dtype or like.dtype, device=like.device)
    return scratch.take(like, n, dtype)


def hist_sample_of(flat: torch.Tensor, batch: int, limit: int) -> torch.Tensor:
    """The values whose histogram is recorded: the first examples of the batch, at most ``limit`` values.

    ``flat`` is the layer output flattened in batch-major order. Whole examples are taken
    (every unit is seen); when one example alone holds more than ``limit`` values, a strided
    subsample of the first example is.
    """
    n = flat.numel()
    if n <= limit:
        return flat
    per = max(1, n // max(1, batch))
    rows = limit // per
    if rows >= 1:
        return flat[: rows * per]
    return flat[:per:-(-per // limit)]


def _units_max(x: torch.Tensor) -> torch.Tensor:
    """Per-unit max over every example and position (NaN propagates)."""
    if x.ndim <= 1:
        return x.amax().reshape(1)
    if x.ndim == 2:
        return x.amax(0)
    return x.flatten(2).amax(2).amax(0)


def _dead_count(x: torch.Tensor) -> torch.Tensor:
    # A NaN is not <= 0: a unit with a NaN output is never dead (as in core.stats).
    return _units_max(x).le(0).sum()


def _unit_means(x: torch.Tensor) -> torch.Tensor:
    return x.mean(0) if x.ndim == 2 else x.flatten(2).mean(2).mean(0)


def _unit_std(x: torch.Tensor, zero: torch.Tensor | None) -> torch.Tensor:
    """Population std across units of each unit's mean over the batch (and positions)."""
    if x.ndim < 2 or x.shape[1] < 2 or x.shape[0] == 0:
        return zero if zero is not None else _zero_like(x)
    return torch.std(_unit_means(x), correction=0)


def _m2(flat: torch.Tensor, mean: torch.Tensor | float, buf: torch.Tensor) -> torch.Tensor:
    torch.sub(flat, mean, out=buf)
    return torch.dot(buf, buf)


def _nonzero_count(flat: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    torch.sign(flat, out=buf)
    return torch.dot(buf, buf)


def _sat_count(flat: torch.Tensor, kind: str, buf: torch.Tensor) -> torch.Tensor:
    # |v| - thr > 0 <=> |v| > thr exactly (Sterbenz), so this is the reference's comparison.
    if kind in ("sigmoid", "hardsigmoid"):
        torch.sub(flat, 0.5, out=buf).abs_().sub_(0.5 - SAT_EPS)
    else:
        torch.abs(flat, out=buf).sub_(1 - SAT_EPS)
    return buf.relu_().sign_().sum()


def _hist(sample: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bins: int,
          weights: torch.Tensor | None = None, scratch: Scratch | None = None) -> torch.Tensor:
    """Equal-width counts over [lo, hi] with lo/hi left on the device (torch.histc would read them)."""
    scale = bins / (hi - lo).clamp_min(1e-30)
    f = torch.sub(sample, lo, out=_take(scratch, sample)).mul_(scale)
    idx = _take(scratch, sample, dtype=torch.int64)
    idx.copy_(f).clamp_(0, bins - 1)  # float -> int64 truncates, like .to(torch.int64)
    # index_add_, not bincount: CUDA's bincount reads the largest index on the host (a sync).
    counts = torch.zeros(bins, dtype=torch.float64, device=sample.device)
    return counts.index_add_(0, idx, weights if weights is not None else torch.ones_like(idx, dtype=torch.float64))


def activation_vector(x: torch.Tensor, kind: str, *, bins: int = 64, hist_sample: int = HIST_SAMPLE,
                      exact: bool | None = None, zero: torch.Tensor | None = None,
                      scratch: Scratch | None = None) -> torch.Tensor | list[float]:
    """The statistics of one layer output as one float64 vector on ``x``'s device.

    Layout: ``[sum, m2, min, max, nonzero, dead_units, sat_count, nan, inf, unit_std, m,
    hist...]``. ``sum``, ``m2`` (the sum of squared deviations from the mean), ``min`` and
    ``max`` are over the finite elements of the whole batch, ``dead_units`` over every example;
    ``nonzero``, ``sat_count`` and the histogram over the ``m`` finite values of the
    subsample (:func:`hist_sample_of`). :func:`decode_activation` turns it into the fields
    of ``core.stats.activation_stats``. On the CPU, with finite values, the vector is
    returned as a list (reading a CPU tensor is a memory read, and host arithmetic saves the
    small ops that the device path needs).

    Args:
        x: the layer output, batch first.
        kind: the layer kind (decides dead units and saturation).
        bins: histogram bins.
        hist_sample: at most this many values are binned and counted (see :func:`hist_sample_of`).
        exact: ``True`` computes the NaN-excluding versions always; ``False`` assumes finite
            values (CPU only); ``None`` (default) decides from the data on the CPU. Other
            devices always take the NaN-excluding path: deciding would read a device value.
        zero: a cached float64 zero on the device (saves an allocation per call).
        scratch: reusable temporaries (see :class:`Scratch`).
    """
    x = _as_float(x)
    if zero is None:
        zero = _zero_like(x)
    flat = x.reshape(-1)
    n = flat.numel()
    if n == 0:
        return torch.zeros(_ACT_HEAD + bins, dtype=torch.float64, device=x.device)
    batch = x.shape[0] if x.ndim else 1
    if x.device.type == "cpu" and exact is not True:
        # On the CPU reading a value costs nothing (on an accelerator it would wait for the
        # device): the unit means, needed anyway, give the total, and a non-finite total
        # sends the layer to the NaN-excluding path.
        means = _unit_means(x) if x.ndim >= 2 and x.shape[1] >= 2 and x.shape[0] else None
        total = means.sum().item() * (n / means.numel()) if means is not None else flat.sum().item()
        if exact is False or math.isfinite(total):
            return _cpu_activation_list(x, flat, kind, total, bins, hist_sample, scratch, means)
    # Elsewhere, and for a CPU tensor holding NaN/Inf: the NaN-excluding versions, branch-free.
    fin = torch.isfinite(flat)
    n_fin = fin.sum()
    n_nan = torch.isnan(flat).sum()
    n_inf = n - n_fin - n_nan
    xz = torch.where(fin, flat, 0.0)
    s = xz.sum()
    mean = s / n_fin.clamp_min(1)
    d = torch.where(fin, flat - mean, 0.0)
    # Python scalars, not torch.tensor(inf, device=...): a copy from host memory would wait for the device.
    lo = torch.where(fin, flat, math.inf).amin()
    hi = torch.where(fin, flat, -math.inf).amax()
    dead = _dead_count(x) if kind in RELU_FAMILY else zero
    sample = hist_sample_of(xz, batch, hist_sample)
    sfin = hist_sample_of(fin, batch, hist_sample)
    sbuf = torch.empty_like(sample)
    sat = zero
    if kind in SATURATING:  # a non-finite value is replaced by one that is not saturated
        sat = _sat_count(torch.where(sfin, sample, 0.5) if kind in ("sigmoid", "hardsigmoid") else sample, kind, sbuf)
    has = n_fin > 0
    hist = _hist(sample, torch.where(has, lo, 0.0), torch.where(has, hi, 0.0), bins,
                 weights=sfin.to(torch.float64))
    head = [s, torch.dot(d, d), lo, hi, _nonzero_count(sample, sbuf), dead, sat, n_nan, n_inf,
            _unit_std(x, zero), sfin.sum()]
    return torch.cat([torch.stack([h.to(torch.float64) for h in head]), hist])


def input_vector(x: torch.Tensor) -> torch.Tensor:
    """``[sum, m2, min, max, nan, inf]`` of the model input (over its finite values), float64 on its device."""
    flat = _as_float(x).reshape(-1)
    n = flat.numel()
    if flat.device.type == "cpu" and n:
        total = flat.sum().item()
        if math.isfinite(total):  # the common case, without the NaN-excluding temporaries
            lo, hi = torch.aminmax(flat)
            sq = torch.dot(flat, flat).item()
            m2 = sq - total * total / n if _one_pass_ok(sq, total, n) else _m2(flat, total / n, torch.empty_like(flat)).item()
            return torch.tensor([total, m2, lo.item(), hi.item(), 0.0, 0.0], dtype=torch.float64)
    fin = torch.isfinite(flat)
    n_fin = fin.sum()
    xz = torch.where(fin, flat, 0.0)
    s = xz.sum()
    d = torch.where(fin, flat - s / n_fin.clamp_min(1), 0.0)
    lo, hi = torch.where(fin, flat, math.inf).amin(), torch.where(fin, flat, -math.inf).amax()
    n_nan = torch.isnan(flat).sum()
    return torch.stack([t.to(torch.float64) for t in (s, torch.dot(d, d), lo, hi, n_nan, flat.numel() - n_fin - n_nan)])


def decode_input(vec: list[float], numel: int) -> dict[str, Any]:
    """The fields of ``core.stats.input_stats`` from :func:`input_vector`."""
    total, m2, lo, hi, n_nan, n_inf = vec
    n_fin = numel - int(n_nan) - int(n_inf)
    if n_fin <= 0:
        return {"mean": None, "std": None, "min": None, "max": None, "nan": int(n_nan), "inf": int(n_inf)}
    return {"mean": finite_or_none(total / n_fin), "std": finite_or_none(math.sqrt(max(m2, 0.0) / n_fin)),
            "min": finite_or_none(lo), "max": finite_or_none(hi), "nan": int(n_nan), "inf": int(n_inf)}


def _one_pass_ok(sq: float, total: float, n: int) -> bool:
    # m2 = sq - total^2 / n loses digits when the mean dominates the spread; within this bound
    # its relative error stays below about twice that of the float32 sum of squares.
    return total * total <= 0.5 * sq * n


def _cpu_activation_list(x: torch.Tensor, flat: torch.Tensor, kind: str, total: float | None, bins: int,
                         hist_sample: int, scratch: Scratch | None, means: torch.Tensor | None) -> list[float]:
    """:func:`activation_vector` for finite CPU values, with host arithmetic between the passes."""
    n = flat.numel()
    lo_t, hi_t = torch.aminmax(flat)
    lo, hi = lo_t.item(), hi_t.item()
    sq = torch.dot(flat, flat).item()
    if total is None:
        total = flat.sum().item()
    if _one_pass_ok(sq, total, n):
        m2 = sq - total * total / n
    else:
        m2 = _m2(flat, total / n, _take(scratch, flat)).item()
    dead = _dead_count(x).item() if kind in RELU_FAMILY else 0
    sample = hist_sample_of(flat, x.shape[0] if x.ndim else 1, hist_sample)
    sbuf = _take(scratch, sample)
    nonzero = torch.count_nonzero(sample).item()
    sat = 0
    if kind in SATURATING:  # hardshrink keeps exactly the values with |v| > thr (the reference's test)
        centred = sample if kind not in ("sigmoid", "hardsigmoid") else torch.sub(sample, 0.5, out=sbuf)
        sat = torch.count_nonzero(F.hardshrink(centred, 0.5 - SAT_EPS if centred is sbuf else 1 - SAT_EPS)).item()
    # The scale is shrunk by 2**-20 so that the maximum lands in the last bin without a clamp.
    torch.sub(sample, lo, out=sbuf).mul_(bins * (1 - 2.0 ** -20) / max(hi - lo, 1e-30))
    idx = _take(scratch, sample, dtype=torch.int64)
    idx.copy_(sbuf)
    hist = torch.bincount(idx, minlength=bins).tolist()
    unit_std = 0.0
    if means is not None and means.numel() >= 2:
        unit_std = math.sqrt(max(torch.var(means, correction=0).item(), 0.0))
    return [total, m2, lo, hi, nonzero, dead, sat, 0, 0, unit_std, sample.numel(), *hist]


def decode_activation(vec: list[float], kind: str, numel: int, units: int) -> dict[str, Any]:
    """Turn one :func:`activation_vector` (as a list) into the fields of ``core.stats.activation_stats``."""
    total, m2, lo, hi, nonzero, dead, sat, n_nan, n_inf, unit_std, m = vec[:_ACT_HEAD]
    n_nan, n_inf, m = int(n_nan), int(n_inf), round(m)
    n_fin = numel - n_nan - n_inf
    out: dict[str, Any] = {"nan": n_nan, "inf": n_inf}
    if n_fin > 0:
        out["mean"] = finite_or_none(total / n_fin)
        out["std"] = finite_or_none(math.sqrt(max(m2, 0.0) / n_fin)) if math.isfinite(m2) else None
        out["min"] = finite_or_none(lo)
        out["max"] = finite_or_none(hi)
        out["zero_frac"] = (m - round(nonzero)) / m if m > 0 else None
    else:
        out.update(mean=None, std=None, min=None, max=None, zero_frac=None)
    out["dead_frac"] = round(dead) / units if kind in RELU_FAMILY and numel and units else None
    out["sat_frac"] = round(sat) / m if kind in SATURATING and n_fin > 0 and m > 0 else None
    # Like the reference: only when every value is finite and there are two units or more.
    out["unit_std"] = finite_or_none(unit_std) if units >= 2 and n_fin == numel and numel else None
    if n_fin > 0 and math.isfinite(lo) and math.isfinite(hi):
        out["hist_lo"], out["hist_hi"] = float(lo), float(hi)
    else:
        out["hist_lo"], out["hist_hi"] = 0.0, 0.0
    out["hist"] = list(map(round, vec[_ACT_HEAD:]))
    return out


def _sq_and_bad(flat: torch.Tensor, exact: bool | None, zero: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(sum of squares of the finite elements, NaN count, Inf count, exact used)``."""
    sq = torch.dot(flat, flat)
    if exact is None:
        exact = flat.device.type != "cpu" or not math.isfinite(sq.item())
    if not exact:
        return sq, zero, zero, False
    fin = torch.isfinite(flat)
    fz = torch.where(fin, flat, 0.0)
    n_nan = torch.isnan(flat).sum()
    return torch.dot(fz, fz), n_nan, flat.numel() - fin.sum() - n_nan, True


def param_vector(weight: torch.Tensor, before: torch.Tensor | None, *, exact: bool | None = None,
                 zero: torch.Tensor | None = None, scratch: Scratch | None = None) -> torch.Tensor:
    """The weight and update statistics of one parameter tensor as a float64 vector on its device.

    Layout: ``[w_sq, w_m2, w_nan, w_inf, upd_sq, w_sum]``, over the finite elements. ``before``
    is a copy of the weight taken before the update; it is overwritten here. Followed by
    :func:`grad_vector` (taken before the step), :func:`decode_param` gives the
    ``core.stats.param_stats`` fields.
    """
    w = _as_float(weight).reshape(-1)
    if zero is None:
        zero = _zero_like(w)
    w_sq, w_nan, w_inf, exact = _sq_and_bad(w, exact, zero)
    if exact:
        fin = torch.isfinite(w)
        s = torch.where(fin, w, 0.0).sum()
        d = torch.where(fin, w - s / fin.sum().clamp_min(1), 0.0)
    else:
        s = w.sum()
        d = torch.sub(w, s / max(w.numel(), 1), out=_take(scratch, w))
    upd_sq = zero
    if before is not None:
        upd = _as_float(before).reshape(-1).sub_(w)  # before - after: the update's norm, no new buffer
        upd_sq = _sq_and_bad(upd, exact, zero)[0]
    return torch.stack([t.to(torch.float64) for t in (w_sq, torch.dot(d, d), w_nan, w_inf, upd_sq, s)])


def grad_vector(grad: torch.Tensor, *, exact: bool | None = None, zero: torch.Tensor | None = None) -> torch.Tensor:
    """``[grad_sq, grad_nan, grad_inf]`` (float64, on the gradient's device), over the finite elements."""
    if grad.is_sparse:
        grad = grad.coalesce().values()
    g = _as_float(grad).reshape(-1)
    sq, n_nan, n_inf, _ = _sq_and_bad(g, exact, _zero_like(g) if zero is None else zero)
    return torch.stack([t.to(torch.float64) for t in (sq, n_nan, n_inf)])


def cpu_param_lists(weights: list[torch.Tensor], befores: list[torch.Tensor | None],
                    scratch: Scratch | None = None) -> list[list[float]]:
    """:func:`param_vector` for many CPU tensors, as lists: one dot product per norm (the
    cheapest reduction on the CPU) and host arithmetic instead of small ops. Tensors with
    non-finite values take the exact per-tensor path. ``befores`` are overwritten."""
    flat = [_as_float(w).reshape(-1) for w in weights]
    firsts = torch.stack([t for f in flat for t in (torch.dot(f, f), f.sum())]).tolist()
    out: list[list[float] | None] = [None] * len(flat)
    upd_idx = []
    for i, f in enumerate(flat):
        if not (math.isfinite(firsts[2 * i]) and math.isfinite(firsts[2 * i + 1])):
            out[i] = param_vector(f, befores[i], exact=True).tolist()
        elif befores[i] is not None:
            upd_idx.append(i)
    upd_sq: dict[int, float] = {}
    if upd_idx:
        sq = []
        for i in upd_idx:
            u = _as_float(befores[i]).reshape(-1).sub_(flat[i])  # type: ignore[union-attr]  # before - after
            sq.append(torch.dot(u, u))
        upd_sq = dict(zip(upd_idx, torch.stack(sq).tolist()))
    for i, f in enumerate(flat):
        if out[i] is not None:
            continue
        n = max(f.numel(), 1)
        sq_w, total = firsts[2 * i], firsts[2 * i + 1]
        if _one_pass_ok(sq_w, total, n):
            m2 = sq_w - total * total / n
        else:
            m2 = _m2(f, total / n, _take(scratch, f)).item()
        out[i] = [sq_w, m2, 0, 0, upd_sq.get(i, 0.0), total]
    return out  # type: ignore[return-value]


def _plain_sgd_lrs(optimizer: torch.optim.Optimizer) -> dict[int, float]:
    """``id(param) -> lr`` for parameters that ``torch.optim.SGD`` updates by exactly ``-lr * grad``.

    With no momentum, weight decay or ``maximize`` the update needs no copy of the weights
    before ``step()``: its norm is ``lr * ||grad||``. Every other optimizer (and SGD with
    momentum or weight decay) is measured as the real difference across ``step()``.
    """
    if type(optimizer) is not torch.optim.SGD:
        return {}
    out: dict[int, float] = {}
    for group in optimizer.param_groups:
        lr = group.get("lr")
        if (isinstance(lr, (int, float)) and not isinstance(lr, bool) and not group.get("momentum")
                and not group.get("weight_decay") and not group.get("maximize")):
            for p in group["params"]:
                out[id(p)] = float(lr)
    return out


def cpu_grad_lists(grads: list[torch.Tensor]) -> list[list[float]]:
    """:func:`grad_vector` for many dense CPU gradients, as lists."""
    flat = [_as_float(g).reshape(-1) for g in grads]
    sqs = torch.stack([torch.dot(f, f) for f in flat]).tolist() if flat else []
    return [[sq, 0, 0] if math.isfinite(sq) else grad_vector(g, exact=True).tolist() for g, sq in zip(flat, sqs)]


def decode_param(vec: list[float], numel: int, has_update: bool, has_grad: bool) -> dict[str, Any]:
    """Turn :func:`param_vector` + :func:`grad_vector` (as one list) into the fields of ``core.stats.param_stats``."""
    w_sq, w_m2, w_nan, w_inf, upd_sq, _w_sum, g_sq, g_nan, g_inf = vec[:_PARAM_LEN + _GRAD_LEN]
    n_fin = numel - int(w_nan) - int(w_inf)
    w_norm = finite_or_none(math.sqrt(w_sq)) if n_fin > 0 and math.isfinite(w_sq) else None
    w_std = finite_or_none(math.sqrt(max(w_m2, 0.0) / n_fin)) if n_fin > 0 and math.isfinite(w_m2) else None
    upd_norm = finite_or_none(math.sqrt(upd_sq)) if has_update and math.isfinite(upd_sq) else None
    grad_norm = finite_or_none(math.sqrt(g_sq)) if has_grad and math.isfinite(g_sq) else None
    ratio = finite_or_none(upd_norm / w_norm) if upd_norm is not None and w_norm else None
    return {
        "w_norm": w_norm, "w_std": w_std, "upd_norm": upd_norm, "upd_ratio": ratio, "grad_norm": grad_norm,
        "w_nan": int(w_nan), "w_inf": int(w_inf),
        "grad_nan": int(g_nan) if has_grad else 0, "grad_inf": int(g_inf) if has_grad else 0,
    }


# -- the hooks -----------------------------------------------------------------------------


def _gather(parts: list[torch.Tensor | list[float]]) -> list[float]:
    """All parts as one list: device tensors go to the host in one transfer; lists are host values already."""
    tensors = [t for t in parts if isinstance(t, torch.Tensor)]
    host: list[float] = []
    if tensors:
        if len({t.device for t in tensors}) > 1:  # a model split over devices: one copy per device
            tensors = [t.cpu() for t in tensors]
        host = torch.cat(tensors).tolist()  # the one device-to-host transfer of this step
    out: list[float] = []
    pos = 0
    for t in parts:
        if isinstance(t, torch.Tensor):
            k = t.numel()
            out.extend(host[pos:pos + k])
            pos += k
        else:
            out.extend(t)
    return out


class _Layer:
    """One watched module: its name, kind and whether monitoring it still works."""

    __slots__ = ("module", "name", "kind", "failed")

    def __init__(self, module: nn.Module, name: str, kind: str) -> None:
        self.module = module
        self.name = name
        self.kind = kind
        self.failed = False


class _Pending:
    """A scalars record waiting for its device values (copied without blocking)."""

    __slots__ = ("step", "plain", "keys", "host", "event")

    def __init__(self, step: int, plain: dict[str, Any], keys: list[str], host: torch.Tensor, event: Any) -> None:
        self.step, self.plain, self.keys, self.host, self.event = step, plain, keys, host, event

    def ready(self) -> bool:
        return self.event is None or self.event.query()

    def values(self) -> dict[str, Any]:
        if self.event is not None:
            self.event.synchronize()
        out = dict(self.plain)
        out.update(zip(self.keys, self.host.tolist()))
        return out


class TorchWatch:
    """Hooks on a model and its optimizer that feed a :class:`~monitor.Monitor`.

    Made by :meth:`Monitor.watch`; removed by :meth:`remove` (safe to call twice), by
    leaving a ``with`` block, or when the Monitor closes.

    Steps are counted by ``optimizer.step()`` calls, from ``start_step``: the forward,
    backward and ``step()`` of one iteration form one step. Pass the same numbers to
    ``mon.log`` (the loop index from 0 with the default ``start_step=0``).

    Args:
        monitor: the Monitor that owns the run.
        model: the model; its ``forward`` in training mode is what gets recorded.
        optimizer: its ``step()`` ends each step.
        start_step: the number of the first step.
        log_input: record the model's first positional input (``input`` record).
        hist_sample: at most this many values per layer are binned for the histogram.
        defer_scalars: copy accelerator loss tensors to the host without waiting and write
            them when they arrive (``None``: on accelerators only). Tests use ``True`` on CPU.
    """

    def __init__(self, monitor: Any, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 start_step: int = 0, log_input: bool = True, hist_sample: int = HIST_SAMPLE,
                 defer_scalars: bool | None = None) -> None:
        from core.errors import ConfigError

        if not isinstance(model, nn.Module):
            raise ConfigError(f"watch() needs a torch.nn.Module as the model, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(f"watch() needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if not isinstance(start_step, int) or start_step < 0:
            raise ConfigError(f"start_step must be a non-negative integer, got {start_step!r}")
        if not isinstance(hist_sample, int) or hist_sample < 1:
            raise ConfigError(f"hist_sample must be a positive integer, got {hist_sample!r}")
        self.mon = monitor
        self.model = model
        self.optimizer = optimizer
        self.step = start_step
        self.first_step = start_step
        self.log_input = log_input
        self.hist_sample = hist_sample
        self.defer_scalars = defer_scalars
        self.removed = False

        self._layers: dict[nn.Module, _Layer] = {}
        for name, mod in model.named_modules():
            kind = layer_kind(mod)
            if kind is not None:
                self._layers[mod] = _Layer(mod, name or type(mod).__name__.lower(), kind)
        self._names: dict[int, str] = {}
        for name, p in model.named_parameters():  # deduplicated: a shared Parameter keeps its first name
            self._names.setdefault(id(p), name)
        self._params: list[tuple[str, nn.Parameter]] = [(n, p) for n, p in model.named_parameters()]
        owned = {id(p) for _, p in self._params}
        self._opt_ids: set[int] = set()
        for gi, group in enumerate(optimizer.param_groups):
            for pi, p in enumerate(group["params"]):
                self._opt_ids.add(id(p))
                if id(p) not in owned:
                    owned.add(id(p))
                    self._params.append((f"param_group{gi}.{pi}", p))

        self._fwd_handles: list[Any] = []
        self._opt_handles = [optimizer.register_step_pre_hook(self._pre_step),
                             optimizer.register_step_post_hook(self._post_step)]
        self._due = False
        self._recording = False
        self._forward_done = False
        self._calls: dict[str, int] = {}
        self._acts: list[tuple[str, str, int, int, torch.Tensor]] = []
        self._input: tuple[int, torch.Tensor] | None = None
        self._pre: list[list[Any]] = []  # [name, param, weight copy, grad stats, plain-SGD lr] per parameter
        self._layer_info: dict[str, LayerInfo] = {}
        self._meta_layers_written = 0
        self._params_failed = False
        self._failed = False
        self._zeros: dict[torch.device, torch.Tensor] = {}
        self._lr: tuple[int, dict[str, float]] | None = None
        self._pending: deque[_Pending] = deque()
        self._warned: set[str] = set()
        self._scratch = Scratch()
        self._snaps: dict[int, torch.Tensor] = {}
        opt_bytes = sum(p.numel() * p.element_size() for g in optimizer.param_groups for p in g["params"])
        self._keep_snaps = opt_bytes <= KEEP_SNAPSHOT_BYTES

        self.mon.set_meta(framework="torch", optimizer=type(optimizer).__name__)
        self._begin_step()

    # -- public ----------------------------------------------------------------------------

    @property
    def layers(self) -> list[str]:
        """Names of the watched modules, in ``named_modules`` order."""
        return [lay.name for lay in self._layers.values()]

    def remove(self) -> None:
        """Remove every hook and write the loss values still on their way. Safe to call twice."""
        if self.removed:
            return
        self.removed = True
        self._detach_forward()
        for h in self._opt_handles:
            h.remove()
        self._opt_handles = []
        self._scratch, self._snaps = Scratch(), {}
        try:
            self.drain(block=True)
        finally:
            if getattr(self.mon, "_scalar_filter", None) == self._filter_scalars:
                self.mon._scalar_filter = None

    close = remove

    def __enter__(self) -> "TorchWatch":
        return self

    def __exit__(self, tp, value, tb) -> bool:
        self.remove()
        return False

    def __repr__(self) -> str:
        return (f"TorchWatch({type(self.model).__name__}, {type(self.optimizer).__name__}, "
                f"layers={len(self._layers)}, step={self.step}, removed={self.removed})")

    # -- cadence ---------------------------------------------------------------------------

    def _is_due(self, step: int) -> bool:
        return step == self.first_step or step % self.mon.every == 0

    def _begin_step(self) -> None:
        self._due = not self._failed and not self.removed and self._is_due(self.step)
        self._forward_done = False
        if self._due:
            self._attach_forward()
        elif self._fwd_handles:
            self._detach_forward()

    def _attach_forward(self) -> None:
        if self._fwd_handles:
            return
        hs = [self.model.register_forward_pre_hook(self._root_pre),
              self.model.register_forward_hook(self._root_post)]
        for mod, lay in self._layers.items():
            if not lay.failed:
                hs.append(mod.register_forward_hook(self._make_hook(lay)))
        self._fwd_handles = hs

    def _detach_forward(self) -> None:
        for h in self._fwd_handles:
            h.remove()
        self._fwd_handles = []

    def _warn_once(self, what: str, err: BaseException) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("Babysitter: monitoring of %s stopped after an error: %s: %s",
                        what, type(err).__name__, err, exc_info=err)

    def _snapshot(self, p: torch.Tensor) -> torch.Tensor:
        """A copy of ``p`` before the update (into a kept buffer when the model is small enough)."""
        if not self._keep_snaps:
            return p.detach().clone()
        buf = self._snaps.get(id(p))
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = self._snaps[id(p)] = torch.empty(p.shape, dtype=p.dtype, device=p.device)
        return buf.copy_(p.detach())

    def _zero(self, device: torch.device) -> torch.Tensor:
        z = self._zeros.get(device)
        if z is None:
            z = self._zeros[device] = torch.zeros((), dtype=torch.float64, device=device)
        return z

    # -- forward ---------------------------------------------------------------------------

    def _root_pre(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        # Record only the first training-mode forward of a logged step (not validation, not
        # the later micro-batches of gradient accumulation).
        self._recording = self._due and module.training and not self._forward_done
        if not self._recording:
            return
        self._calls = {}
        if self.log_input and args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            try:
                x = args[0]
                with torch.no_grad(), _OneThread(x.device, x.numel()):
                    self._input = (x.numel(), input_vector(x))
            except Exception as err:  # monitoring never stops training
                self.log_input = False
                self._warn_once("the model input", err)

    def _root_post(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if self._recording:
            self._forward_done = True
        self._recording = False

    def _make_hook(self, lay: _Layer) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not self._recording or lay.failed:
                return
            out = output[0] if isinstance(output, (tuple, list)) and output else output
            if not isinstance(out, torch.Tensor):
                return
            # A module called twice in one forward (one ReLU object reused) gives two layers.
            k = self._calls.get(lay.name, 0) + 1
            self._calls[lay.name] = k
            name = lay.name if k == 1 else f"{lay.name}#{k}"
            try:
                with torch.no_grad(), _OneThread(out.device, out.numel()):
                    vec = activation_vector(out, lay.kind, bins=self.mon.bins, hist_sample=self.hist_sample,
                                            zero=self._zero(out.device), scratch=self._scratch)
                units = out.shape[1] if out.ndim >= 2 else 1
                self._acts.append((name, lay.kind, out.numel(), units, vec))
                if name not in self._layer_info:
                    own = tuple(self._names.get(id(p), n) for n, p in module.named_parameters(recurse=False))
                    self._layer_info[name] = LayerInfo(name, lay.kind, tuple(out.shape[1:]), own)
            except Exception as err:
                lay.failed = True
                self._warn_once(f"layer {lay.name!r}", err)
        return hook

    # -- optimizer -------------------------------------------------------------------------

    def _capture_lr(self) -> None:
        lrs: dict[str, float] = {}
        for i, group in enumerate(self.optimizer.param_groups):
            lr = group.get("lr")
            if isinstance(lr, torch.Tensor):
                if lr.device.type != "cpu":
                    continue  # reading it would wait for the device
                lr = float(lr)
            if isinstance(lr, (int, float)):
                lrs["lr" if i == 0 else f"lr/{i}"] = float(lr)
        self._lr = (self.step, lrs)

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        try:
            self._capture_lr()
        except Exception as err:
            self._warn_once("the learning rate", err)
        if not self._due or self._params_failed:
            return
        pre: list[list[Any]] = []
        try:
            plain = _plain_sgd_lrs(optimizer)
            with torch.no_grad():  # large memory-bound passes: all threads
                cpu_grads: list[int] = []
                for name, p in self._params:
                    g = p.grad
                    lr_plain = plain.get(id(p)) if g is not None and not g.is_sparse else None
                    snap = (self._snapshot(p) if g is not None and id(p) in self._opt_ids and lr_plain is None
                            else None)
                    gv: Any = None
                    if g is not None:
                        if g.device.type == "cpu" and not g.is_sparse and g.dtype in (torch.float32, torch.float64):
                            cpu_grads.append(len(pre))
                            gv = g
                        else:
                            gv = grad_vector(g, zero=self._zero(g.device))
                    pre.append([name, p, snap, gv, lr_plain])
                if cpu_grads:
                    for i, lst in zip(cpu_grads, cpu_grad_lists([pre[i][3] for i in cpu_grads])):
                        pre[i][3] = lst
            self._pre = pre
        except Exception as err:
            self._params_failed = True
            self._pre = []
            self._warn_once("the parameters", err)

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        try:
            if self._due:
                self._flush_step()
        except Exception as err:
            self._failed = True
            self._warn_once("this model", err)
        finally:
            if self._due:  # only a logged step filled these
                self._acts, self._pre, self._input = [], [], None
            self.step += 1
            self._begin_step()

    def _flush_step(self) -> None:
        """Compute the parameter statistics and move everything of this step to the host at once."""
        step = self.step
        parts: list[torch.Tensor] = []
        params: list[tuple[str, int, bool, bool]] = []
        if not self._params_failed:
            try:
                with torch.no_grad():  # large memory-bound passes: all threads
                    on_cpu = [i for i, e in enumerate(self._pre)
                              if e[1].device.type == "cpu" and e[1].dtype in (torch.float32, torch.float64)]
                    cpu_vecs = dict(zip(on_cpu, cpu_param_lists([self._pre[i][1] for i in on_cpu],
                                                                [self._pre[i][2] for i in on_cpu], self._scratch)))
                    for i, (name, p, snap, gv, lr_plain) in enumerate(self._pre):
                        vec = cpu_vecs.get(i)
                        if vec is None:
                            vec = param_vector(p, snap, zero=self._zero(p.device), scratch=self._scratch)
                        if lr_plain is not None and gv is not None:
                            # Plain SGD moved the weight by exactly -lr * grad: ||update||^2 = lr^2 ||grad||^2.
                            vec[4] = lr_plain * lr_plain * gv[0]  # vec is this parameter's own list/tensor
                        parts.append(vec)
                        parts.append(gv if gv is not None else [0.0] * _GRAD_LEN)
                        params.append((name, p.numel(), snap is not None or (lr_plain is not None and gv is not None),
                                       gv is not None))
            except Exception as err:
                self._params_failed = True
                parts, params = [], []
                self._warn_once("the parameters", err)
        acts = self._acts
        parts = [a[4] for a in acts] + ([self._input[1]] if self._input is not None else []) + parts
        if not parts:
            return
        values = _gather(parts)

        pos = 0
        names = []
        decoded = []
        for name, kind, numel, units, vec in acts:
            k = len(vec)
            decoded.append(decode_activation(values[pos:pos + k], kind, numel, units))
            names.append(name)
            pos += k
        if self._input is not None:
            numel, vec = self._input
            k = len(vec)
            st = decode_input(values[pos:pos + k], numel)
            pos += k
            self.mon.write_input(step, st)
        self._update_meta()
        if decoded:
            fields = list(decoded[0])
            cols = {f: [d[f] for d in decoded] for f in fields}
            self.mon.write_acts(step, names, cols)
        if params:
            pstats = []
            for name, numel, has_upd, has_grad in params:
                pstats.append(decode_param(values[pos:pos + _PARAM_LEN + _GRAD_LEN], numel, has_upd, has_grad))
                pos += _PARAM_LEN + _GRAD_LEN
            self.mon.write_params(step, [p[0] for p in params], {f: [s[f] for s in pstats] for f in PARAM_FIELDS})

    def _update_meta(self) -> None:
        if len(self._layer_info) != self._meta_layers_written:
            self._meta_layers_written = len(self._layer_info)
            self.mon.set_layers(list(self._layer_info.values()))

    # -- scalars ---------------------------------------------------------------------------

    def _filter_scalars(self, step: int, scalars: dict[str, Any]) -> dict[str, Any] | None:
        """Called by ``Monitor.log``: adds the learning rates; defers accelerator tensors.

        Returns the scalars to write now, or ``None`` when the record waits for the device.
        """
        self.drain(block=False)
        out = dict(scalars)
        if self._lr is not None:  # the rates used by the latest optimizer.step()
            for k, v in self._lr[1].items():
                out.setdefault(k, v)
        dev_keys = []
        for k, v in out.items():
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                if self.defer_scalars or (self.defer_scalars is None and v.device.type == "cuda"):
                    dev_keys.append(k)
                elif v.device.type == "cpu":
                    out[k] = float(v.detach())  # a CPU value is checked at once
        if not dev_keys:
            return out
        if self._is_due(step) and self.defer_scalars is None:
            self.drain(block=True)  # a logged step reads the device anyway
            return out
        plain = {k: v for k, v in out.items() if k not in dev_keys}
        vals = torch.stack([out[k].detach().reshape(()).to(torch.float64) for k in dev_keys])
        event = None
        if vals.device.type == "cuda":
            host = torch.empty(vals.shape, dtype=vals.dtype, pin_memory=True)
            host.copy_(vals, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host = vals.cpu()
        self._pending.append(_Pending(int(step), plain, dev_keys, host, event))
        if len(self._pending) > 1000:
            self.drain(block=True)
        return None

    def drain(self, block: bool = False) -> None:
        """Write the deferred scalars records whose values have arrived (all of them with ``block``).

        Raises:
            TrainingDivergedError: with ``on_nan="raise"``, when one of them holds a NaN/Inf loss.
        """
        while self._pending and (block or self._pending[0].ready()):
            p = self._pending.popleft()
            self.mon._log_values(p.step, p.values())


def watch_model(monitor: Any, model: nn.Module, optimizer: torch.optim.Optimizer, **kwargs: Any) -> TorchWatch:
    """Attach a :class:`TorchWatch` to ``monitor`` (what ``Monitor.watch`` calls)."""
    w = TorchWatch(monitor, model, optimizer, **kwargs)
    monitor._scalar_filter = w._filter_scalars
    return w

