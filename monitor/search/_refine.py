"""``refine``: the coarse-to-fine step of a random search (CS231n: coarse, then fine around the best).

``refine(load_search("coarse", storage=URL))`` reads a coarse study from its storage (or
its run folders) and returns the narrower space for the fine one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

from core.errors import ConfigError

from ._search import _MODES, _as_value
from ._space import Choice, IntUniform, LogUniform, Sampler, Uniform, check_space
from ._trials import SearchResult, TrialResult


def _fwd(s: Sampler, x: float) -> float:
    return math.log10(x) if s.log else x


def _inv(s: Sampler, u: float) -> float:
    return 10.0 ** u if s.log else u


def refine(
    result: SearchResult | Sequence[TrialResult],
    top_k: int = 3,
    *,
    space: Mapping[str, Sampler] | None = None,
    pad: float = 0.25,
    min_width: float = 0.1,
    clip: bool = False,
    mode: str | None = None,
) -> dict[str, Sampler]:
    """A narrower space around the ``top_k`` best trials: the coarse-to-fine step.

    For each numeric parameter the new range spans the top trials' values, widened on each
    side by ``pad`` times that span, and at least ``min_width`` times the old range wide
    (centred on the best trial) — all in log space for log-sampled parameters, so
    ``LogUniform`` stays ``LogUniform``. The range is not clipped to the old one unless
    ``clip``: when the best values sit at an edge, the next search looks past it.
    A ``Choice`` keeps the choices the top trials used.

    Args:
        result: a ``SearchResult`` (or its trials, with ``space``).
        top_k: how many of the best trials to span.
        space: the space the trials came from (default: the result's).
        pad: widening on each side, as a fraction of the top trials' span.
        min_width: smallest new width, as a fraction of the old width.
        clip: keep the new range inside the old one.
        mode: ``"max"`` or ``"min"`` (default: the result's, else ``"max"``).

    Returns:
        The new space (name -> sampler).

    Raises:
        ConfigError: for bad options, or when no trial has a value to rank by.
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    if pad < 0 or not 0 < min_width <= 1:
        raise ConfigError(f"pad must be >= 0 and min_width in (0, 1], got pad={pad!r}, min_width={min_width!r}")
    if isinstance(result, SearchResult):
        trials, space = result.trials, space if space is not None else result.space
        mode = mode or result.mode
    else:
        trials = list(result)
        if space is None:
            raise ConfigError("refine needs space=... when given a list of trials")
    mode = mode or "max"
    if mode not in _MODES:
        raise ConfigError(f"mode must be one of {_MODES}, got {mode!r}")
    samplers = check_space(space)
    ranked = SearchResult("", Path("."), samplers, list(trials), mode=mode).ranked()
    if not ranked:
        raise ConfigError("no trial has a value to rank by (all crashed or diverged); "
                          "widen or lower the ranges and search again")
    top = ranked[:top_k]
    out: dict[str, Sampler] = {}
    for name, s in samplers.items():
        vals = [t.hparams.get(name) for t in top]
        if isinstance(s, Choice):
            keep = tuple(c for c in s.choices if c in vals)
            out[name] = Choice(keep or s.choices)
            continue
        nums = [float(v) for v in vals if _as_value(v) is not None and (not s.log or float(v) > 0)]
        if not nums:
            out[name] = s
            continue
        u = [_fwd(s, v) for v in nums]
        old_lo, old_hi = _fwd(s, s.low), _fwd(s, s.high)
        lo, hi = min(u), max(u)
        span = hi - lo
        lo, hi = lo - pad * span, hi + pad * span
        need = min_width * (old_hi - old_lo)
        if hi - lo < need:
            centre = _fwd(s, nums[0])
            lo, hi = centre - need / 2, centre + need / 2
        if clip:
            lo, hi = max(lo, old_lo), min(hi, old_hi)
        new_lo, new_hi = _inv(s, lo), _inv(s, hi)
        if isinstance(s, IntUniform):
            a, b = max(1 if s.log else -(1 << 62), math.floor(new_lo)), math.ceil(new_hi)
            out[name] = IntUniform(a, max(b, a + 1), log=s.log)
        elif isinstance(s, LogUniform):
            out[name] = LogUniform(new_lo, new_hi)
        else:
            out[name] = Uniform(new_lo, new_hi)
    return out

