"""PyTorch statistic kernels: one layer output or input batch to one vector (parameters and
gradients: ``monitor._torch_param_stats``), and what both sides share.

Pure functions from a tensor to a float64 vector on the tensor's own device (or, on the CPU,
a list of host floats), and the decoders that turn the host copy of a vector into the fields
of ``core.stats``. They hold no state and attach nothing; ``monitor._torch`` calls them from
its hooks and moves every vector of a step to the host in one transfer. Each vector's layout
is named in ``ACT_LAYOUT`` and ``INPUT_LAYOUT`` (``PARAM_LAYOUT`` and ``GRAD_LAYOUT`` in
``monitor._torch_param_stats``); callers index by those names (``PARAM["upd_sq"]``), never
by a bare number.

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
finite CPU path of an activation runs its passes in NumPy on the tensor's memory: the same
reductions, with a fraction of torch's fixed cost per call. The
CPU statistics of each layer run on one thread: each op is too short to gain from a second,
and a parallel op on a busy machine waits for a worker that lost its core.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from core.schema import RELU_FAMILY, SATURATING, finite_or_none
from core.stats import SAT_EPS

__all__ = ["HIST_SAMPLE", "ONE_THREAD_NUMEL", "ACT_LAYOUT", "INPUT_LAYOUT", "ACT", "Scratch", "activation_vector",
           "decode_activation", "input_vector", "decode_input", "hist_sample_of", "as_float", "OneThread", "one_thread",
           "HistBatch"]

HIST_SAMPLE = 16384  # values binned per layer for the histogram (first examples of the batch)
# CPU statistics of tensors up to this many elements run on one thread. Each of their ops is
# too short to gain from a second thread, and a parallel op waits for every worker thread:
# on a busy machine a worker that lost its core stalls the op for a scheduler time slice.
ONE_THREAD_NUMEL = 2**21

# The vectors' layouts. An activation vector is ACT_LAYOUT followed by the histogram counts;
# a parameter's is PARAM_LAYOUT (w_before_sq is filled in from the pass before ``step()``)
# followed by GRAD_LAYOUT.
ACT_LAYOUT = ("sum", "m2", "min", "max", "nonzero", "dead", "sat", "nan", "inf", "unit_std", "sample")
INPUT_LAYOUT = ("sum", "m2", "min", "max", "nan", "inf")
ACT = {k: i for i, k in enumerate(ACT_LAYOUT)}
_ACT_HEAD = len(ACT_LAYOUT)
_CPU = torch.device("cpu")


# -- statistics on the device --------------------------------------------------------------
#
# Every statistic is a float reduction (sum, dot, aminmax, amax): on the CPU these run several
# times faster than counting through boolean tensors (count_nonzero, (x > t).sum()). A count
# of non-zero elements is dot(sign(x), sign(x)); of saturated ones, sum(sign(relu(|x| - thr))).


def as_float(x: torch.Tensor) -> torch.Tensor:
    x = x.detach()
    if x.dtype not in (torch.float32, torch.float64):
        # half/bfloat16 sums lose digits; integer and bool outputs have no float ops.
        x = x.float()
    return x


def _sq(flat: torch.Tensor) -> torch.Tensor:
    """Sum of squares of a 1-D float tensor, accumulated in float32 or wider, never overflowing for finite values.

    On the CPU a float32 dot product (the fastest reduction) is redone in float64 when it
    overflows (finite values above ~1e19 do); elsewhere it is accumulated in float64 at once,
    since checking would read a device value.
    """
    if flat.device.type == "cpu":
        sq = torch.dot(flat, flat)
        if flat.dtype == torch.float32 and math.isinf(sq.item()):
            wide = flat.double()
            return torch.dot(wide, wide)
        return sq
    return torch.linalg.vector_norm(flat, dtype=torch.float64).square()


def _np_sq(a: np.ndarray) -> float:
    """:func:`_sq` of a 1-D NumPy view of CPU values: a BLAS dot product, redone in float64 on a float32 overflow."""
    sq = float(np.dot(a, a))
    if math.isinf(sq) and a.dtype == np.float32:
        wide = a.astype(np.float64)
        sq = float(np.dot(wide, wide))
    return sq


def _zero_like(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), dtype=torch.float64, device=x.device)


def one_thread(device: torch.device, numel: int) -> int:
    """Move the CPU statistics of a small tensor to one thread: returns the thread count to restore (0: none)."""
    if device.type == "cpu" and numel <= ONE_THREAD_NUMEL:
        saved = torch.get_num_threads()
        if saved > 1:
            torch.set_num_threads(1)
            return saved
    return 0


class OneThread:
    """:func:`one_thread` as a context manager; restores the thread count after."""

    __slots__ = ("device", "numel", "saved")

    def __init__(self, device: torch.device, numel: int) -> None:
        self.device, self.numel, self.saved = device, numel, 0

    def __enter__(self) -> None:
        self.saved = one_thread(self.device, self.numel)

    def __exit__(self, *exc: Any) -> None:
        if self.saved:
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
        self._arrays: dict[torch.dtype, np.ndarray] = {}  # NumPy views of the CPU buffers

    def _buf(self, device: torch.device, dtype: torch.dtype, n: int) -> torch.Tensor:
        buf = self._bufs.get((device, dtype))
        if buf is None or buf.numel() < n:
            buf = self._bufs[(device, dtype)] = torch.empty(n, dtype=dtype, device=device)
            if device.type == "cpu":
                self._arrays[dtype] = buf.numpy()
        return buf

    def take(self, like: torch.Tensor, n: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A 1-D buffer of ``n`` elements (``like.numel()`` by default) on ``like``'s device."""
        n = like.numel() if n is None else n
        buf = self._buf(like.device, dtype or like.dtype, n)
        return buf if buf.numel() == n else buf[:n]

    def array(self, n: int, dtype: torch.dtype) -> np.ndarray:
        """:meth:`take` of a CPU buffer as a NumPy view (slicing one costs less than a torch call)."""
        self._buf(_CPU, dtype, n)
        return self._arrays[dtype][:n]


_NP_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.int64: np.int64, torch.int32: np.int32}


def _array(scratch: Scratch | None, n: int, dtype: torch.dtype) -> np.ndarray:
    return scratch.array(n, dtype) if scratch is not None else np.empty(n, dtype=_NP_DTYPES[dtype])


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
    n = len(flat)  # a 1-D tensor or NumPy array
    if n <= limit:
        return flat
    per = max(1, n // max(1, batch))
    rows = limit // per
    if rows >= 1:
        return flat[: rows * per]
    return flat[:per:-(-per // limit)]


def _sample(x: torch.Tensor, flat: torch.Tensor, batch_axis: int, limit: int) -> torch.Tensor:
    """:func:`hist_sample_of` for an output whose batch axis is ``batch_axis`` (``flat`` is ``x`` flattened)."""
    if batch_axis == 0 or x.ndim < 2:
        return hist_sample_of(flat, x.shape[0] if x.ndim else 1, limit)
    n = flat.numel()
    if n <= limit:
        return flat
    per = max(1, n // max(1, x.shape[batch_axis]))
    rows = limit // per
    if rows >= 1:
        return x.narrow(batch_axis, 0, rows).reshape(-1)  # a copy of at most ``limit`` values
    return x.select(batch_axis, 0).reshape(-1)[::-(-per // limit)]


def _by_unit(x: torch.Tensor, unit_axis: int) -> torch.Tensor:
    """``x`` as ``(rows, units)`` or ``(batch, units, positions)``: every example and position of each unit."""
    if unit_axis == x.ndim - 1:
        return x.reshape(-1, x.shape[-1])
    return x.flatten(2)  # channels first: (N, C, ...)


# Per-unit reductions of a channels-first ``(N, C, P)`` view reduce the batch axis first: a
# reduction over the outermost axis adds whole contiguous ``(C, P)`` rows (vectorised), and the
# second one is over a small tensor. Reducing each row of ``P`` positions first is up to
# several times slower when ``P`` is small.


def _units_max(x: torch.Tensor, unit_axis: int = 1) -> torch.Tensor:
    """Per-unit max over every example and position (NaN propagates)."""
    if x.ndim <= 1:
        return x.amax().reshape(1)
    u = _by_unit(x, unit_axis)
    return u.amax(0) if u.ndim == 2 else u.amax(0).amax(1)


def _dead_count(x: torch.Tensor, unit_axis: int = 1) -> torch.Tensor:
    # A NaN is not <= 0: a unit with a NaN output is never dead (as in core.stats).
    return _units_max(x, unit_axis).le(0).sum()


def _unit_sums(x: torch.Tensor, unit_axis: int = 1) -> torch.Tensor:
    """Per-unit sums over every example and position."""
    u = _by_unit(x, unit_axis)
    return u.sum(0) if u.ndim == 2 else u.sum(0).sum(1)


def _unit_means(x: torch.Tensor, unit_axis: int = 1) -> torch.Tensor:
    sums = _unit_sums(x, unit_axis)
    return sums / (x.numel() // max(1, sums.numel()))


def _has_units(x: torch.Tensor, unit_axis: int) -> bool:
    return x.ndim >= 2 and x.shape[unit_axis] >= 2 and x.numel() > 0


def _unit_std(x: torch.Tensor, zero: torch.Tensor | None, unit_axis: int = 1) -> torch.Tensor:
    """Population std across units of each unit's mean over the batch (and positions)."""
    if not _has_units(x, unit_axis):
        return zero if zero is not None else _zero_like(x)
    return torch.std(_unit_means(x, unit_axis).double(), correction=0)  # a few values: float64 cannot overflow


def _m2(flat: torch.Tensor, mean: torch.Tensor | float, buf: torch.Tensor) -> torch.Tensor:
    torch.sub(flat, mean, out=buf)
    return _sq(buf)


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
                      scratch: Scratch | None = None, unit_axis: int = 1,
                      batch_axis: int = 0, hists: "HistBatch | None" = None) -> torch.Tensor | list[float]:
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
        x: the layer output.
        kind: the layer kind (decides dead units and saturation).
        unit_axis: the axis of the units: ``1`` (channels first, ``(N, C, ...)``) or the last
            axis (features of ``(N, ..., D)``); a unit's mean and maximum are over every other axis.
        batch_axis: the axis of the examples (decides which values the histogram samples).
        bins: histogram bins.
        hist_sample: at most this many values are binned and counted (see :func:`hist_sample_of`).
        exact: ``True`` computes the NaN-excluding versions always; ``False`` assumes finite
            values (CPU only); ``None`` (default) decides from the data on the CPU. Other
            devices always take the NaN-excluding path: deciding would read a device value.
        zero: a cached float64 zero on the device (saves an allocation per call).
        scratch: reusable temporaries (see :class:`Scratch`).
        hists: where a CPU list's subsample counts are binned with other layers'
            (:class:`HistBatch`): the list is complete after ``hists.finish()``.
    """
    x = as_float(x)
    if zero is None:
        zero = _zero_like(x)
    flat = x.reshape(-1)
    n = flat.numel()
    if n == 0:
        return torch.zeros(_ACT_HEAD + bins, dtype=torch.float64, device=x.device)
    if x.ndim:
        unit_axis %= x.ndim
    if x.device.type == "cpu" and exact is not True:
        # On the CPU reading a value costs nothing (on an accelerator it would wait for the
        # device): the unit sums, needed anyway, give the total, and a non-finite total
        # sends the layer to the NaN-excluding path.
        with np.errstate(all="ignore"):  # an overflow or a NaN is found from the values, not warned about
            vec = _cpu_activation_list(x, kind, exact is False, bins, hist_sample, scratch, unit_axis, batch_axis,
                                       hists)
        if vec is not None:
            return vec
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
    dead = _dead_count(x, unit_axis) if kind in RELU_FAMILY else zero
    sample = _sample(xz.view(x.shape), xz, batch_axis, hist_sample)
    sfin = _sample(fin.view(x.shape), fin, batch_axis, hist_sample)
    sbuf = torch.empty_like(sample)
    sat = zero
    if kind in SATURATING:  # a non-finite value is replaced by one that is not saturated
        sat = _sat_count(torch.where(sfin, sample, 0.5) if kind in ("sigmoid", "hardsigmoid") else sample, kind, sbuf)
    has = n_fin > 0
    hist = _hist(sample, torch.where(has, lo, 0.0), torch.where(has, hi, 0.0), bins,
                 weights=sfin.to(torch.float64))
    head = [s, _sq(d), lo, hi, _nonzero_count(sample, sbuf), dead, sat, n_nan, n_inf,
            _unit_std(x, zero, unit_axis), sfin.sum()]
    return torch.cat([torch.stack([h.to(torch.float64) for h in head]), hist])


def input_vector(x: torch.Tensor) -> torch.Tensor:
    """``[sum, m2, min, max, nan, inf]`` of the model input (over its finite values), float64 on its device."""
    flat = as_float(x).reshape(-1)
    n = flat.numel()
    if flat.device.type == "cpu" and n:
        a = flat.numpy()  # NumPy on the tensor's memory: the same passes at a fraction of the fixed cost
        with np.errstate(all="ignore"):
            total = float(a.sum())
            if math.isfinite(total):  # the common case, without the NaN-excluding temporaries
                sq = _np_sq(a)
                m2 = sq - total * total / n if _one_pass_ok(sq, total, n) else _np_sq(a - total / n)
                return torch.tensor([total, m2, float(a.min()), float(a.max()), 0.0, 0.0], dtype=torch.float64)
    fin = torch.isfinite(flat)
    n_fin = fin.sum()
    xz = torch.where(fin, flat, 0.0)
    s = xz.sum()
    d = torch.where(fin, flat - s / n_fin.clamp_min(1), 0.0)
    lo, hi = torch.where(fin, flat, math.inf).amin(), torch.where(fin, flat, -math.inf).amax()
    n_nan = torch.isnan(flat).sum()
    return torch.stack([t.to(torch.float64) for t in (s, _sq(d), lo, hi, n_nan, flat.numel() - n_fin - n_nan)])


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


def _cpu_activation_list(x: torch.Tensor, kind: str, assume_finite: bool, bins: int, hist_sample: int,
                         scratch: Scratch | None, unit_axis: int = 1, batch_axis: int = 0,
                         hists: "HistBatch | None" = None) -> list[float] | None:
    """:func:`activation_vector` for finite CPU values, with host arithmetic between the passes.

    Returns ``None`` when the values are not all finite (unless ``assume_finite``): the
    unit sums, needed anyway, give the total, and a non-finite total sends the layer to the
    NaN-excluding path. The passes run in NumPy on the tensor's own memory (no copy): the
    same reductions as torch's in the same float precision, at a fraction of the fixed cost
    per call, which on layers of a few thousand values is most of the time.
    """
    a = x.numpy()
    n = a.size
    sums = unit_var = None
    if _has_units(x, unit_axis):
        u = a.reshape(-1, a.shape[-1]) if unit_axis == x.ndim - 1 else a.reshape(a.shape[0], a.shape[1], -1)
        sums = u.sum(0) if u.ndim == 2 else u.sum(0).sum(1)  # the batch axis first (see _units_max)
        wide = sums.astype(np.float64)  # float64: cannot overflow
        per = n // sums.size
        total = float(wide.sum())
        dev = wide - total / sums.size
        unit_var = float(np.dot(dev, dev)) / (sums.size * per * per)  # the variance of the unit means
    else:
        total = float(a.sum())
    if not (assume_finite or math.isfinite(total)):
        return None
    flat = a.reshape(-1)
    n = flat.size
    lo, hi = float(flat.min()), float(flat.max())
    sq = _np_sq(flat)
    if _one_pass_ok(sq, total, n):
        m2 = sq - total * total / n
    else:
        m2 = _np_sq(np.subtract(flat, total / n, out=_array(scratch, n, x.dtype)))
    dead = 0
    if kind in RELU_FAMILY:
        if lo >= 0 and sums is not None:
            # No negative value: a unit is <= 0 everywhere iff its sum is 0 (a float sum of
            # non-negative values is 0 only when every term is), so no per-unit max pass.
            dead = sums.size - int(np.count_nonzero(sums))
        else:
            dead = int(_dead_count(x, unit_axis).item())
    if batch_axis == 0 or x.ndim < 2:
        sample = hist_sample_of(flat, x.shape[0] if x.ndim else 1, hist_sample)
    else:
        sample = _sample(x, x.reshape(-1), batch_axis, hist_sample).numpy()
    unit_std = math.sqrt(max(unit_var, 0.0)) if unit_var is not None else 0.0
    vec = [total, m2, lo, hi, 0, dead, 0, 0, 0, unit_std, sample.size]
    batch = hists if hists is not None else HistBatch()
    batch.add(vec, sample, lo, hi, kind, bins)
    if hists is None:
        batch.finish()
    return vec


class HistBatch:
    """The subsample counts of CPU layer outputs (histogram, non-zero, saturated), binned together.

    A layer's vector leaves :func:`activation_vector` without them; its subsample is copied
    here (later ops may change the output in place) and :meth:`finish` completes every
    vector added since the last call, in one loop when the step ends. Inside the forward, right
    after a convolution, every small NumPy call costs several times what it does in a loop
    that runs alone (the interpreter's code and data were evicted): one copy there instead of
    a dozen calls took the CNN's 13 records from 2.6 to 1.8 ms, and the loop costs 0.6 ms (the
    binning is mostly per value: binning all layers in one call was slower, the bin numbers
    of 200,000 values falling out of the cache). The arithmetic is
    ``(v - lo) * scale`` truncated, in the values' precision, the scale shrunk by 2**-20 so
    that the maximum lands in the last bin without a clamp.
    """

    LIMIT = 2**20  # values held before they are binned (bounds the temporaries)

    def __init__(self) -> None:
        self._arena: dict[Any, np.ndarray] = {}
        self._used: dict[Any, int] = {}
        self._pending: list[tuple[list[float], Any, int, int, float, float, str, int]] = []

    def add(self, vec: list[float], sample: np.ndarray, lo: float, hi: float, kind: str, bins: int) -> None:
        dt, n = sample.dtype, sample.size
        start = self._used.get(dt, 0)
        arena = self._arena.get(dt)
        if arena is None or arena.size < start + n:
            grown = np.empty(max(2 * (start + n), 2**16), dtype=dt)
            if arena is not None:
                grown[:start] = arena[:start]
            arena = self._arena[dt] = grown
        arena[start:start + n] = sample
        self._used[dt] = start + n
        self._pending.append((vec, dt, start, n, lo, hi, kind, bins))
        if start + n >= self.LIMIT:
            self.finish()

    def clear(self) -> None:
        self._pending, self._used = [], {}

    def finish(self) -> None:
        """Append its histogram to every vector added, and fill in its non-zero and saturated counts."""
        pending, self._pending, self._used = self._pending, [], {}
        groups: dict[tuple[Any, int], list[tuple[list[float], Any, int, int, float, float, str, int]]] = {}
        for e in pending:
            groups.setdefault((e[1], e[7]), []).append(e)
        with np.errstate(all="ignore"):
            for (dt, bins), es in groups.items():
                self._bin(self._arena[dt], es, dt, bins)

    @staticmethod
    def _bin(arena: np.ndarray, es: list[tuple[list[float], Any, int, int, float, float, str, int]], dt: Any,
             bins: int) -> None:
        # One layer at a time: a layer's subsample and its bin numbers stay in the cache (binning
        # all of them at once was slower, memory-bound), and the loop's code stays hot.
        n_max = max(e[3] for e in es)
        buf = np.empty(n_max, dtype=dt)
        idx = np.empty(n_max, dtype=np.int32)  # int32: converted several times faster than int64
        for vec, _, start, n, lo, hi, kind, _ in es:
            sample = arena[start:start + n]
            vec[ACT["nonzero"]] = int(np.count_nonzero(sample))
            if kind in SATURATING:  # exactly the values with |v| > thr (the reference's test, in the values' precision)
                centred = np.subtract(sample, 0.5, out=buf[:n]) if kind in ("sigmoid", "hardsigmoid") else sample
                thr = 0.5 - SAT_EPS if centred is not sample else 1 - SAT_EPS
                vec[ACT["sat"]] = int(np.count_nonzero(np.abs(centred) > thr))
            f = np.subtract(sample, lo, out=buf[:n])
            np.multiply(f, bins * (1 - 2.0 ** -20) / max(hi - lo, 1e-30), out=f)
            np.copyto(idx[:n], f, casting="unsafe")  # float -> int truncates
            vec.extend(np.bincount(idx[:n], minlength=bins).tolist())


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
