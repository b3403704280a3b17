"""PyTorch statistic kernels of the parameter side: one weight (and its update) or gradient
tensor to one vector, and the decoder of the host copy into ``core.stats.param_stats`` fields.

The layouts are named in ``PARAM_LAYOUT`` and ``GRAD_LAYOUT``; callers index by those names
(``PARAM["upd_sq"]``). The shared pieces (the float view, the sum of squares, scratch
buffers, one-pass variance check) are those of ``monitor._torch_stats``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch._utils import _flatten_dense_tensors

from core.schema import finite_or_none

from ._torch_stats import Scratch, _array, _np_sq, _one_pass_ok, _sq, _take, _zero_like, as_float

__all__ = ["PARAM_LAYOUT", "GRAD_LAYOUT", "PARAM", "GRAD", "param_vector", "grad_vector", "cpu_param_lists",
           "cpu_grad_lists", "decode_param", "plain_sgd_lrs", "sq_and_bad", "BATCH_NUMEL", "BATCH_TOTAL"]

PARAM_LAYOUT = ("w_sq", "w_m2", "w_nan", "w_inf", "upd_sq", "w_sum", "w_before_sq")
GRAD_LAYOUT = ("grad_sq", "grad_nan", "grad_inf")
PARAM = {k: i for i, k in enumerate(PARAM_LAYOUT)}
GRAD = {k: i for i, k in enumerate(GRAD_LAYOUT)}
_PARAM_LEN = len(PARAM_LAYOUT)
_GRAD_LEN = len(GRAD_LAYOUT)


def sq_and_bad(flat: torch.Tensor, exact: bool | None, zero: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(sum of squares of the finite elements, NaN count, Inf count, exact used)``."""
    sq = _sq(flat)
    if exact is None:
        exact = flat.device.type != "cpu" or not math.isfinite(sq.item())
    if not exact:
        return sq, zero, zero, False
    fin = torch.isfinite(flat)
    fz = torch.where(fin, flat, 0.0)
    n_nan = torch.isnan(flat).sum()
    return _sq(fz), n_nan, flat.numel() - fin.sum() - n_nan, True


def param_vector(weight: torch.Tensor, before: torch.Tensor | None, *, exact: bool | None = None,
                 zero: torch.Tensor | None = None, scratch: Scratch | None = None) -> torch.Tensor:
    """The weight and update statistics of one parameter tensor as a float64 vector on its device.

    Layout: ``[w_sq, w_m2, w_nan, w_inf, upd_sq, w_sum, w_before_sq]``, over the finite elements
    (``w_before_sq``, the squared norm of ``before``, is 0 without it: plain SGD needs no copy,
    and the caller fills it in from the pass before ``step()``). ``before``
    is a copy of the weight taken before the update; it is overwritten here. Followed by
    :func:`grad_vector` (taken before the step), :func:`decode_param` gives the
    ``core.stats.param_stats`` fields.
    """
    w = as_float(weight).reshape(-1)
    if zero is None:
        zero = _zero_like(w)
    w_sq, w_nan, w_inf, exact = sq_and_bad(w, exact, zero)
    if exact:
        fin = torch.isfinite(w)
        s = torch.where(fin, w, 0.0).sum()
        d = torch.where(fin, w - s / fin.sum().clamp_min(1), 0.0)
    else:
        s = w.sum()
        d = torch.sub(w, s / max(w.numel(), 1), out=_take(scratch, w))
    upd_sq = wb_sq = zero
    if before is not None:
        b = as_float(before).reshape(-1)
        wb_sq = sq_and_bad(b, exact, zero)[0]
        upd = b.sub_(w)  # before - after: the update's norm, no new buffer
        upd_sq = sq_and_bad(upd, exact, zero)[0]
    return torch.stack([t.to(torch.float64) for t in (w_sq, _sq(d), w_nan, w_inf, upd_sq, s, wb_sq)])


def grad_vector(grad: torch.Tensor, *, exact: bool | None = None, zero: torch.Tensor | None = None) -> torch.Tensor:
    """``[grad_sq, grad_nan, grad_inf]`` (float64, on the gradient's device), over the finite elements."""
    if grad.is_sparse:
        grad = grad.coalesce().values()
    g = as_float(grad).reshape(-1)
    sq, n_nan, n_inf, _ = sq_and_bad(g, exact, _zero_like(g) if zero is None else zero)
    return torch.stack([t.to(torch.float64) for t in (sq, n_nan, n_inf)])


def _host(t: torch.Tensor) -> np.ndarray:
    """A 1-D NumPy view of a CPU tensor's values (a copy only when it is not contiguous or not float32/64)."""
    return as_float(t).reshape(-1).numpy()


# Parameters of at most BATCH_NUMEL values are read together, by one copy of up to
# BATCH_TOTAL values into one float64 vector and a per-segment reduction (np.add.reduceat)
# for each statistic: a few calls for all of them instead of a few per tensor. Larger
# tensors are read one by one, where a call's fixed cost is small beside the pass.
BATCH_NUMEL = 2**12
BATCH_TOTAL = 2**16


def _param_list(w: torch.Tensor, before: torch.Tensor | None, scratch: Scratch | None) -> list[float]:
    """:func:`param_vector` of one CPU tensor as a list, in NumPy on its memory (``before`` is overwritten)."""
    a = _host(w)
    sq_w, total = _np_sq(a), float(a.sum())
    if not (math.isfinite(sq_w) and math.isfinite(total)):
        return param_vector(w, before, exact=True).tolist()
    upd_sq = wb_sq = 0.0
    if before is not None:
        b = _host(before)
        wb_sq = _np_sq(b)
        upd_sq = _np_sq(np.subtract(b, a, out=b))  # before - after
    n = max(a.size, 1)
    if _one_pass_ok(sq_w, total, n):
        m2 = sq_w - total * total / n
    else:
        m2 = _np_sq(np.subtract(a, total / n, out=_array(scratch, a.size, as_float(w).dtype)))
    return [sq_w, m2, 0, 0, upd_sq, total, wb_sq]


def _param_batch(weights: list[torch.Tensor], befores: list[torch.Tensor | None]) -> list[list[float]]:
    """:func:`param_vector` of small CPU tensors as lists, all read together (see ``BATCH_NUMEL``).

    In float64, where a float32 square cannot overflow and the difference of two float32
    weights is exact; a tensor with a non-finite value takes the exact per-tensor path.
    """
    sizes = np.array([w.numel() for w in weights])
    offs = np.cumsum(sizes) - sizes
    with torch.no_grad():  # one C++ call flattens and joins them all
        a = _flatten_dense_tensors(weights).numpy().astype(np.float64)
    total = np.add.reduceat(a, offs)
    sq = np.add.reduceat(a * a, offs)
    d = a - np.repeat(total / sizes, sizes)
    m2 = np.add.reduceat(d * d, offs)
    has = [b is not None for b in befores]
    upd = wb = np.zeros(len(weights))
    if any(has):
        with torch.no_grad():
            b = _flatten_dense_tensors([w if b is None else b for w, b in zip(weights, befores)]).numpy()
        b = b.astype(np.float64)
        wb = np.add.reduceat(b * b, offs)
        b -= a  # before - after
        upd = np.add.reduceat(b * b, offs)
    out = []
    for i, (row, h) in enumerate(zip(zip(sq.tolist(), m2.tolist(), total.tolist(), upd.tolist(), wb.tolist()), has)):
        w_sq, w_m2, w_sum, upd_sq, wb_sq = row
        if not (math.isfinite(w_sq) and math.isfinite(w_sum)):
            out.append(param_vector(weights[i], befores[i], exact=True).tolist())
        else:
            out.append([w_sq, w_m2, 0, 0, upd_sq if h else 0.0, w_sum, wb_sq if h else 0.0])
    return out


def cpu_param_lists(weights: list[torch.Tensor], befores: list[torch.Tensor | None],
                    scratch: Scratch | None = None) -> list[list[float]]:
    """:func:`param_vector` for many CPU tensors, as lists: the passes run in NumPy (small
    tensors read together, see ``BATCH_NUMEL``; one dot product per norm for the others) and
    host arithmetic replaces the small ops. Tensors with non-finite values take the exact
    per-tensor path. ``befores`` may be overwritten."""
    out: list[list[float] | None] = [None] * len(weights)
    with np.errstate(all="ignore"):  # a non-finite value is found from the sums, not warned about
        for batch in _batches(weights, befores):
            if len(batch) == 1 and weights[batch[0]].numel() > BATCH_NUMEL:
                out[batch[0]] = _param_list(weights[batch[0]], befores[batch[0]], scratch)
            else:
                for i, vec in zip(batch, _param_batch([weights[i] for i in batch], [befores[i] for i in batch])):
                    out[i] = vec
    return out  # type: ignore[return-value]


def _batches(tensors: list[torch.Tensor], befores: list[torch.Tensor | None]) -> list[list[int]]:
    """Indices of ``tensors`` in the groups read together: consecutive small float32/64 tensors of
    one dtype (with befores of that dtype), at most ``BATCH_TOTAL`` values; any other tensor alone."""
    out: list[list[int]] = []
    batch: list[int] = []
    size = 0
    for i, (t, b) in enumerate(zip(tensors, befores)):
        n, dt = t.numel(), t.dtype
        if 0 < n <= BATCH_NUMEL and dt in (torch.float32, torch.float64) and (b is None or b.dtype == dt):
            if batch and (size + n > BATCH_TOTAL or dt != tensors[batch[0]].dtype):
                out.append(batch)
                batch, size = [], 0
            batch.append(i)
            size += n
        else:
            out.append([i])
    if batch:
        out.append(batch)
    return out


def plain_sgd_lrs(optimizer: torch.optim.Optimizer) -> dict[int, float]:
    """``id(param) -> lr`` for parameters that ``torch.optim.SGD`` updates by exactly ``-lr * grad``.

    With no momentum, weight decay, ``maximize`` or ``fused`` (whose kernel may unscale the
    gradient itself under a GradScaler) the update needs no copy of the weights
    before ``step()``: its norm is ``lr * ||grad||``. Every other optimizer (and SGD with
    momentum or weight decay) is measured as the real difference across ``step()``.
    """
    if type(optimizer) is not torch.optim.SGD:
        return {}
    out: dict[int, float] = {}
    for group in optimizer.param_groups:
        lr = group.get("lr")
        if (isinstance(lr, (int, float)) and not isinstance(lr, bool) and not group.get("momentum")
                and not group.get("weight_decay") and not group.get("maximize") and not group.get("fused")):
            for p in group["params"]:
                # In bfloat16/float16 the stored weight moves by a rounded -lr * grad (often by 0):
                # only the real difference shows that.
                if p.dtype in (torch.float32, torch.float64):
                    out[id(p)] = float(lr)
    return out


def cpu_grad_lists(grads: list[torch.Tensor]) -> list[list[float]]:
    """:func:`grad_vector` for many dense CPU gradients, as lists."""
    flat = [as_float(g).reshape(-1) for g in grads]
    sqs = torch.stack([torch.dot(f, f) for f in flat]).tolist() if flat else []  # an overflow takes the exact path
    return [[sq, 0, 0] if math.isfinite(sq) else grad_vector(g, exact=True).tolist() for g, sq in zip(flat, sqs)]


def decode_param(vec: list[float], numel: int, has_update: bool, has_grad: bool) -> dict[str, Any]:
    """Turn :func:`param_vector` + :func:`grad_vector` (as one list) into the fields of ``core.stats.param_stats``."""
    w_sq, w_m2, w_nan, w_inf, upd_sq, _w_sum, wb_sq, g_sq, g_nan, g_inf = vec[:_PARAM_LEN + _GRAD_LEN]
    n_fin = numel - int(w_nan) - int(w_inf)
    w_norm = finite_or_none(math.sqrt(w_sq)) if n_fin > 0 and math.isfinite(w_sq) else None
    w_std = finite_or_none(math.sqrt(max(w_m2, 0.0) / n_fin)) if n_fin > 0 and math.isfinite(w_m2) else None
    upd_norm = finite_or_none(math.sqrt(upd_sq)) if has_update and math.isfinite(upd_sq) else None
    grad_norm = finite_or_none(math.sqrt(g_sq)) if has_grad and math.isfinite(g_sq) else None
    # The lecture's ratio: the update over the weight it was applied to (before the update).
    wb_norm = math.sqrt(wb_sq) if math.isfinite(wb_sq) and wb_sq > 0 else None
    ratio = finite_or_none(upd_norm / wb_norm) if upd_norm is not None and wb_norm else None
    return {
        "w_norm": w_norm, "w_std": w_std, "upd_norm": upd_norm, "upd_ratio": ratio, "grad_norm": grad_norm,
        "w_nan": int(w_nan), "w_inf": int(w_inf),
        "grad_nan": int(g_nan) if has_grad else 0, "grad_inf": int(g_inf) if has_grad else 0,
    }
