"""Search spaces: the samplers (``LogUniform``, ``Uniform``, ``IntUniform``, ``Choice``) and their JSON form.

Scale parameters such as the learning rate and the regularization strength are sampled
in log space (CS231n: ``lr = 10 ** uniform(-6, -3)``, ``LogUniform(1e-6, 1e-3)``). A space
is stored in each trial's ``meta.json`` (``search_space``: each parameter's ``low``,
``high`` and ``log``) so that the compare page and ``babysitter compare`` can judge the
search; ``to_distribution`` maps a sampler onto the Optuna distribution a study samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from core.errors import ConfigError

__all__ = [
    "Sampler", "LogUniform", "Uniform", "IntUniform", "Choice", "sample_space", "space_to_json", "space_from_json",
    "check_space", "to_distribution", "from_distribution",
]


class Sampler:
    """Base of the samplers: ``sample(rng)`` draws one value; ``to_json()`` describes the range."""

    log: bool = False

    def sample(self, rng: np.random.Generator) -> Any:  # pragma: no cover - abstract
        """One value drawn with ``rng``."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """The range as stored in ``meta.json``'s ``search_space``."""
        raise NotImplementedError


def _check_range(cls: str, low: Any, high: Any) -> tuple[float, float]:
    try:
        lo, hi = float(low), float(high)
    except (TypeError, ValueError):
        raise ConfigError(f"{cls} needs numbers low < high, got low={low!r}, high={high!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ConfigError(f"{cls} needs finite low < high, got low={low!r}, high={high!r}")
    return lo, hi


@dataclass(frozen=True)
class LogUniform(Sampler):
    """``10 ** uniform(log10(low), log10(high))``: uniform in the exponent.

    For scale parameters (learning rate, regularization strength), whose effect is
    multiplicative: 1e-5 and 1e-4 differ as much as 1e-2 and 1e-1.

    Args:
        low: smallest value, > 0.
        high: largest value, > low.

    Raises:
        ConfigError: when ``0 < low < high`` does not hold.
    """

    low: float
    high: float
    log: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        lo, hi = _check_range("LogUniform", self.low, self.high)
        if lo <= 0:
            raise ConfigError(f"LogUniform needs 0 < low < high (it samples the exponent), got low={self.low!r}; "
                              "use Uniform for ranges that include 0 or negative values")
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)

    def sample(self, rng: np.random.Generator) -> float:
        return float(10.0 ** rng.uniform(math.log10(self.low), math.log10(self.high)))

    def to_json(self) -> dict[str, Any]:
        return {"type": "loguniform", "low": self.low, "high": self.high, "log": True}


@dataclass(frozen=True)
class Uniform(Sampler):
    """``uniform(low, high)``, for parameters whose effect is additive (dropout rate, momentum).

    Raises:
        ConfigError: when ``low < high`` does not hold.
    """

    low: float
    high: float
    log: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        lo, hi = _check_range("Uniform", self.low, self.high)
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def to_json(self) -> dict[str, Any]:
        return {"type": "uniform", "low": self.low, "high": self.high, "log": False}


@dataclass(frozen=True)
class IntUniform(Sampler):
    """An integer from ``low`` to ``high`` inclusive; with ``log=True`` uniform in log space
    (hidden sizes: 32..1024), rounded.

    Raises:
        ConfigError: when ``low < high`` are not integers, or ``log`` with ``low < 1``.
    """

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (self.low, self.high)) \
                or not self.low < self.high:
            raise ConfigError(f"IntUniform needs integers low < high, got low={self.low!r}, high={self.high!r}")
        if self.log and self.low < 1:
            raise ConfigError(f"IntUniform(log=True) needs low >= 1, got low={self.low!r}")
        object.__setattr__(self, "low", int(self.low))
        object.__setattr__(self, "high", int(self.high))

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            # Sample the exponent over [low - 0.5, high + 0.5) so that the end values are as likely
            # as their neighbours after rounding.
            x = 10.0 ** rng.uniform(math.log10(self.low - 0.5 if self.low > 1 else 1.0), math.log10(self.high + 0.5))
            return int(min(self.high, max(self.low, round(x))))
        return int(rng.integers(self.low, self.high + 1))

    def to_json(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Choice(Sampler):
    """One of a few values, each equally likely (activation function, optimizer).

    Raises:
        ConfigError: when ``choices`` is empty or holds values JSON cannot store.
    """

    choices: tuple[Any, ...]
    log: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        choices = tuple(self.choices)
        if not choices:
            raise ConfigError("Choice needs at least one value")
        for c in choices:
            if not (c is None or isinstance(c, (str, bool, int, float))):
                raise ConfigError(f"Choice values must be str, int, float, bool or None (stored in meta.json), "
                                  f"got {type(c).__name__}")
        object.__setattr__(self, "choices", choices)

    def sample(self, rng: np.random.Generator) -> Any:
        return self.choices[int(rng.integers(len(self.choices)))]

    def to_json(self) -> dict[str, Any]:
        return {"type": "choice", "choices": list(self.choices)}


def check_space(space: Mapping[str, Any]) -> dict[str, Sampler]:
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(f"space must be a non-empty dict of name -> sampler, got {space!r}")
    out: dict[str, Sampler] = {}
    for name, s in space.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"hyperparameter names must be non-empty strings, got {name!r}")
        if isinstance(s, Mapping):
            s = space_from_json({name: s})[name]
        if not isinstance(s, Sampler):
            raise ConfigError(f"space[{name!r}] must be a sampler (LogUniform, Uniform, IntUniform, Choice), "
                              f"got {type(s).__name__}")
        out[name] = s
    return out


def space_to_json(space: Mapping[str, Sampler]) -> dict[str, dict[str, Any]]:
    """The search space as stored in ``meta.json``: ``{"lr": {"type": "loguniform", "low": .., "high": .., "log": true}}``."""
    return {k: s.to_json() for k, s in check_space(space).items()}


def space_from_json(obj: Mapping[str, Any]) -> dict[str, Sampler]:
    """Samplers back from ``space_to_json``'s form (or a run's ``meta.search_space``).

    A range without ``type`` is ``LogUniform`` when ``log`` is true, else ``Uniform``.

    Raises:
        ConfigError: for an entry that describes no sampler.
    """
    out: dict[str, Sampler] = {}
    for name, d in obj.items():
        if isinstance(d, Sampler):
            out[name] = d
            continue
        if not isinstance(d, Mapping):
            raise ConfigError(f"search space entry {name!r} must be an object, got {type(d).__name__}")
        kind = d.get("type")
        if kind == "choice" or (kind is None and "choices" in d):
            out[name] = Choice(tuple(d.get("choices") or ()))
        elif kind == "int":
            out[name] = IntUniform(d.get("low"), d.get("high"), log=bool(d.get("log")))
        elif kind == "loguniform" or (kind is None and d.get("log")):
            out[name] = LogUniform(d.get("low"), d.get("high"))
        elif kind in ("uniform", None):
            out[name] = Uniform(d.get("low"), d.get("high"))
        else:
            raise ConfigError(f"search space entry {name!r} has type {kind!r}; "
                              "allowed: 'loguniform', 'uniform', 'int', 'choice'")
    return out


def sample_space(space: Mapping[str, Sampler], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` independent draws of every parameter of ``space`` (in the space's order).

    The same ``seed`` always gives the same list, whatever happens to the trials.

    Raises:
        ConfigError: for a bad space or ``n < 1``.
    """
    samplers = check_space(space)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"the number of trials must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    return [{k: s.sample(rng) for k, s in samplers.items()} for _ in range(n)]


def to_distribution(s: Sampler) -> Any:
    """The Optuna distribution that samples like ``s`` (imports optuna).

    ``LogUniform`` -> ``FloatDistribution(log=True)``, ``Uniform`` -> ``FloatDistribution``,
    ``IntUniform`` -> ``IntDistribution`` (``log`` kept), ``Choice`` -> ``CategoricalDistribution``.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(s, LogUniform):
        return FloatDistribution(s.low, s.high, log=True)
    if isinstance(s, Uniform):
        return FloatDistribution(s.low, s.high)
    if isinstance(s, IntUniform):
        return IntDistribution(s.low, s.high, log=s.log)
    if isinstance(s, Choice):
        return CategoricalDistribution(s.choices)
    raise ConfigError(f"no Optuna distribution for {type(s).__name__}")


def from_distribution(d: Any) -> Sampler:
    """The sampler for an Optuna distribution (the inverse of ``to_distribution``).

    Raises:
        ConfigError: for a distribution with a step (a grid), which random search does not sample.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(d, FloatDistribution) and d.step is None:
        return LogUniform(d.low, d.high) if d.log else Uniform(d.low, d.high)
    if isinstance(d, IntDistribution) and d.step == 1:
        return IntUniform(d.low, d.high, log=d.log)
    if isinstance(d, CategoricalDistribution):
        return Choice(tuple(d.choices))
    raise ConfigError(f"cannot sample {d!r} at random; use a distribution without a step")
