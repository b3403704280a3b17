"""Random hyperparameter search, in log space, coarse to fine (CS231n "Training Neural Networks I").

The lecture's advice made into a few functions:

* sample at random, never on a grid (a grid spends most trials on the parameters that
  matter least; random trials see a new value of every parameter each time);
* sample scale parameters such as the learning rate and the regularization strength in
  log space: ``lr = 10 ** uniform(-6, -3)`` (``LogUniform(1e-6, 1e-3)``);
* run a coarse search first (few epochs, wide ranges), then a fine one around the best
  trials (``refine``), and shift the range when the best value sits at its edge
  (``core.compare.edge_of_range``, also returned by ``SearchResult.edge_findings``).

Each trial is its own run folder ``<logdir>/<search>-t003`` whose ``meta.json`` holds the
trial's hyperparameters and the search space (each parameter's ``low``, ``high`` and
``log``), so the dashboard's compare page and ``babysitter compare`` can plot and judge
the search afterwards or while it runs.

Usage::

    from monitor.search import LogUniform, random_search, refine

    def train(trial):
        with trial.monitor(num_classes=10) as mon:       # hparams + search space in meta.json
            ...                                         # use trial.hparams["lr"], trial.seed
        return None                                     # value read from the run (best val_acc)

    space = {"lr": LogUniform(1e-6, 1e-1), "reg": LogUniform(1e-5, 1e1)}
    coarse = random_search(train, space, 20, logdir="runs", name="coarse", seed=0)
    fine = random_search(train, refine(coarse, top_k=4), 20, logdir="runs", name="fine", seed=1)

A training function that builds its own ``Monitor`` takes ``**trial.monitor_kwargs``
(``hparams`` and ``search_space``) and ``name=trial.name``. A trial that raises is
recorded as ``crashed`` (its run folder says so too) and the search goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from core.errors import ConfigError

from ._monitor import Monitor, validate_run_name

log = logging.getLogger(__name__)

__all__ = [
    "Sampler", "LogUniform", "Uniform", "IntUniform", "Choice", "Trial", "TrialResult", "SearchResult",
    "sample_space", "random_search", "refine", "space_to_json", "space_from_json",
]

_MODES = ("max", "min")


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


def _check_space(space: Mapping[str, Any]) -> dict[str, Sampler]:
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
    return {k: s.to_json() for k, s in _check_space(space).items()}


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
    samplers = _check_space(space)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"the number of trials must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    return [{k: s.sample(rng) for k, s in samplers.items()} for _ in range(n)]


@dataclass
class Trial:
    """What the training function gets for one trial.

    Attributes:
        index: 0-based trial number.
        name: the run's folder name, ``<search>-t003``.
        logdir: the log directory.
        hparams: this trial's sampled values.
        seed: a seed for this trial's own randomness (initialisation, shuffling), derived
            from the search's seed.
        search_space: the space in ``meta.json`` form.
    """

    index: int
    name: str
    logdir: Path
    hparams: dict[str, Any]
    seed: int
    search_space: dict[str, dict[str, Any]]
    _monitors: list[Monitor] = field(default_factory=list, repr=False)

    @property
    def monitor_kwargs(self) -> dict[str, Any]:
        """``hparams`` and ``search_space`` for a ``Monitor`` made by the training code itself."""
        return {"hparams": dict(self.hparams), "search_space": dict(self.search_space)}

    def monitor(self, **kwargs: Any) -> Monitor:
        """A ``Monitor`` for this trial's run, with its hyperparameters and the search space.

        Args:
            **kwargs: other ``Monitor`` options (``num_classes``, ``every``, ...); ``hparams``
                given here are added to the sampled ones.

        Returns:
            The Monitor (not yet opened; use it as a context manager).
        """
        hp = dict(self.hparams)
        hp.update(kwargs.pop("hparams", None) or {})
        kwargs.setdefault("on_exists", "error")
        mon = Monitor(self.logdir, self.name, hparams=hp, search_space=self.search_space, **kwargs)
        self._monitors.append(mon)
        return mon


@dataclass
class TrialResult:
    """One finished or crashed trial.

    Attributes:
        index: 0-based trial number.
        name: run folder name.
        hparams: sampled values.
        seed: the trial's seed.
        status: ``"finished"`` or ``"crashed"``.
        value: the objective (returned by the training function, or read from the run);
            None when unknown (crashed, NaN, never reported).
        error: ``"ExceptionType: message"`` for a crashed trial.
        run_dir: the run folder.
    """

    index: int
    name: str
    hparams: dict[str, Any]
    seed: int
    status: str
    value: float | None
    error: str | None
    run_dir: Path


@dataclass
class SearchResult:
    """The trials of one search, with the space they were drawn from.

    Attributes:
        name: the search name (prefix of every trial's run name).
        logdir: the log directory.
        space: the samplers.
        trials: every trial, in order.
        metric: the scalar the objective was read from when the training function returned none.
        mode: ``"max"`` or ``"min"``.
    """

    name: str
    logdir: Path
    space: dict[str, Sampler]
    trials: list[TrialResult]
    metric: str = "val_acc"
    mode: str = "max"

    def ranked(self) -> list[TrialResult]:
        """Trials with a value, best first."""
        ok = [t for t in self.trials if t.value is not None and math.isfinite(t.value)]
        return sorted(ok, key=lambda t: t.value, reverse=self.mode == "max")  # type: ignore[arg-type,return-value]

    @property
    def best(self) -> TrialResult | None:
        """The best trial, or None when no trial produced a value."""
        r = self.ranked()
        return r[0] if r else None

    def to_frame(self):
        """The trials as a pandas DataFrame (one row per trial, one column per hyperparameter)."""
        import pandas as pd

        rows = [{"trial": t.index, "run": t.name, "status": t.status, "value": t.value, "seed": t.seed,
                 **t.hparams, "error": t.error} for t in self.trials]
        return pd.DataFrame(rows)

    def edge_findings(self, *, outer: float = 0.1):
        """``edge_of_range`` checks of this search (see ``core.compare.edge_of_range``)."""
        from core.compare import edge_of_range

        return edge_of_range(
            [(t.name, t.hparams, t.value) for t in self.trials],
            space_to_json(self.space), mode=self.mode, outer=outer,
        )


def _trial_width(n: int) -> int:
    return max(3, len(str(n - 1)))


def _free_search_name(logdir: Path, name: str) -> str:
    # A search name is free when no run folder starts with "<name>-t".
    def taken(base: str) -> bool:
        try:
            return any(e.name.startswith(base + "-t") for e in os.scandir(logdir))
        except OSError:
            return False

    if not taken(name):
        return name
    for i in range(2, 10_000):
        cand = f"{name}-{i}"
        if not taken(cand):
            log.info("search %r exists in %s; this one is called %r", name, logdir, cand)
            return cand
    raise ConfigError(f"no free search name near {name!r} in {logdir}")


def _value_from_run(run_dir: Path, metric: str, mode: str) -> float | None:
    from core.reader import Run

    try:
        run = Run(run_dir)
    except OSError:
        return None
    run.update()
    v = run.metric(metric).values
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    return float(v.max() if mode == "max" else v.min())


def _as_value(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def random_search(
    train_fn: Callable[[Trial], Any],
    space: Mapping[str, Sampler],
    n_trials: int,
    *,
    logdir: str | os.PathLike[str],
    name: str = "search",
    seed: int = 0,
    metric: str = "val_acc",
    mode: str = "max",
) -> SearchResult:
    """Run ``train_fn`` for ``n_trials`` random draws of ``space``, each trial its own run.

    Trials run one after the other in this process. Every trial's hyperparameters are drawn
    before the first one runs, so the same ``seed`` gives the same trials even when some
    crash; each trial also gets its own ``seed`` for its initialisation.

    Args:
        train_fn: called as ``train_fn(trial)`` with a ``Trial``. It records its run with
            ``trial.monitor(...)`` or with its own ``Monitor(logdir, trial.name,
            **trial.monitor_kwargs)``. It may return the objective (a number); otherwise
            the objective is read from the run: the best ``metric`` it logged.
        space: name -> sampler, e.g. ``{"lr": LogUniform(1e-6, 1e-3), "reg": LogUniform(1e-5, 1)}``.
        n_trials: number of trials.
        logdir: where the runs go.
        name: search name; trial runs are ``<name>-t000``, ``<name>-t001``, ... When runs of
            that name exist already, ``<name>-2`` is used (and so on); see ``SearchResult.name``.
        seed: seeds the draws and the per-trial seeds.
        metric: scalar to read the objective from when ``train_fn`` returns none.
        mode: ``"max"`` (accuracy) or ``"min"`` (loss).

    Returns:
        A ``SearchResult``. A trial that raised an ``Exception`` has status ``"crashed"``,
        its error, and a run folder marked crashed; ``KeyboardInterrupt`` stops the search.

    Raises:
        ConfigError: for a bad space, trial count, name or mode.
    """
    samplers = _check_space(space)
    if mode not in _MODES:
        raise ConfigError(f"mode must be one of {_MODES}, got {mode!r}")
    validate_run_name(name)
    draws = sample_space(samplers, n_trials, seed)
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n_trials)]
    space_json = space_to_json(samplers)
    root = Path(logdir)
    root.mkdir(parents=True, exist_ok=True)
    name = _free_search_name(root, name)
    width = _trial_width(n_trials)
    results: list[TrialResult] = []
    for i, (hp, tseed) in enumerate(zip(draws, seeds)):
        trial = Trial(i, f"{name}-t{i:0{width}d}", root, hp, tseed, space_json)
        run_dir = root / trial.name
        log.info("trial %s: %s", trial.name, json.dumps(hp, default=str))
        error: BaseException | None = None
        ret: Any = None
        try:
            ret = train_fn(trial)
        except Exception as err:  # a crashed trial is a result, not the end of the search
            error = err
            log.warning("trial %s crashed: %s: %s", trial.name, type(err).__name__, err)
        for mon in trial._monitors:
            mon.close(error=error)
        if error is not None and not run_dir.exists():
            # Crashed before its run was opened: record it anyway, so the dashboard shows it.
            mon = Monitor(root, trial.name, hparams=hp, search_space=space_json, heartbeat=0, on_exists="error")
            mon.open()
            mon.close(error=error)
        if isinstance(ret, (str, os.PathLike)) and Path(ret).is_dir():
            run_dir = Path(ret)
        value = None
        if error is None:
            value = _as_value(ret)
            if value is None and run_dir.is_dir():
                value = _value_from_run(run_dir, metric, mode)
        results.append(TrialResult(
            index=i, name=trial.name, hparams=hp, seed=tseed, status="crashed" if error else "finished",
            value=value, error=f"{type(error).__name__}: {error}"[:2000] if error else None, run_dir=run_dir,
        ))
    return SearchResult(name, root, samplers, results, metric, mode)


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
    samplers = _check_space(space)
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

