"""The weight-initialisation experiment of CS231n "Training Neural Networks I", recorded as runs.

A 10-layer MLP of 500 units per layer is fed unit-Gaussian inputs (1000 x 500) and the
standard deviation of every layer's output is measured, for tanh and ReLU and four
initialisations of the weights:

* ``small``:  0.01 * randn          -> tanh activations shrink by ~0.22x per layer towards 0
* ``large``:  1.0 * randn           -> tanh activations saturate at -1 and +1
* ``xavier``: randn / sqrt(fan_in)  -> tanh keeps a usable scale (Glorot & Bengio 2010)
* ``he``:     randn * sqrt(2 / fan_in) -> ReLU keeps its scale (He et al. 2015);
  Xavier with ReLU loses half the variance per layer.

Each variant is written as one run (``<nonlinearity>-<init>``) through ``monitor.Monitor``
so the dashboard draws the lecture's plot of std versus depth. Run it::

    python examples/init_experiment.py --logdir runs
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from monitor import Monitor

INITS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "small": lambda g, fan_in, fan_out: 0.01 * g.standard_normal((fan_in, fan_out)),
    "large": lambda g, fan_in, fan_out: 1.0 * g.standard_normal((fan_in, fan_out)),
    "xavier": lambda g, fan_in, fan_out: g.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in),
    "he": lambda g, fan_in, fan_out: g.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in),
}
INIT_LABELS = {"small": "0.01*randn", "large": "1.0*randn", "xavier": "Xavier", "he": "He"}
NONLINEARITIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(0.0, x),
}


@dataclass(frozen=True)
class Variant:
    """One recorded variant.

    Attributes:
        nonlinearity: ``"tanh"`` or ``"relu"``.
        init: a key of ``INITS``.
        run_dir: the run folder written.
        stds: the std of each hidden layer's output, first layer first.
    """

    nonlinearity: str
    init: str
    run_dir: Path
    stds: list[float]


def forward(x: np.ndarray, nonlinearity: str, init: str, *, layers: int = 10, hidden: int = 500,
            seed: int = 0, mon: Monitor | None = None) -> list[float]:
    """Push ``x`` through ``layers`` freshly initialised layers; record each output in ``mon``.

    Returns:
        The std of each layer's output.
    """
    g = np.random.default_rng(seed)
    act = NONLINEARITIES[nonlinearity]
    h = x
    stds = []
    if mon is not None:
        mon.set_layers([(f"fc{i + 1}", nonlinearity) for i in range(layers)])
        mon.input(0, x)
    for i in range(layers):
        W = INITS[init](g, h.shape[1], hidden)
        h = act(h @ W)
        stds.append(float(h.std()))
        if mon is not None:
            mon.activation(0, f"fc{i + 1}", h, kind=nonlinearity)
            mon.weights(0, f"W{i + 1}", W)
    return stds


def run_experiment(logdir: str | Path, *, nonlinearities: Sequence[str] = ("tanh", "relu"),
                   inits: Sequence[str] = ("small", "large", "xavier", "he"), n: int = 1000, d: int = 500,
                   layers: int = 10, seed: int = 0, prefix: str = "") -> list[Variant]:
    """Run every (nonlinearity, init) pair on the same unit-Gaussian batch, one run each.

    Args:
        logdir: where the runs go (``<prefix><nonlinearity>-<init>``, suffixed if taken).
        nonlinearities: keys of ``NONLINEARITIES``.
        inits: keys of ``INITS``.
        n: batch size. d: width of the input and of every hidden layer.
        layers: number of hidden layers.
        seed: seeds the data and the weights.
        prefix: prepended to every run name.

    Returns:
        One ``Variant`` per pair, in the order given.
    """
    x = np.random.default_rng(seed).standard_normal((n, d))
    out = []
    for nl in nonlinearities:
        for init in inits:
            hp = {"nonlinearity": nl, "init": init, "init_label": INIT_LABELS[init], "layers": layers,
                  "hidden": d, "batch": n}
            with Monitor(logdir, f"{prefix}{nl}-{init}", hparams=hp, heartbeat=0) as mon:
                stds = forward(x, nl, init, layers=layers, hidden=d, seed=seed + 1, mon=mon)
            out.append(Variant(nl, init, mon.run_dir, stds))
    return out


def format_table(variants: Sequence[Variant]) -> str:
    """The per-layer std table, one column per variant."""
    heads = [f"{v.nonlinearity} {INIT_LABELS[v.init]}" for v in variants]
    width = max(12, *(len(h) for h in heads))
    lines = ["layer " + "".join(h.rjust(width + 2) for h in heads)]
    for i in range(len(variants[0].stds)):
        lines.append(f"{i + 1:>5} " + "".join(f"{v.stds[i]:.3e}".rjust(width + 2) for v in variants))
    lines.append("      " + "".join(verdict(v).rjust(width + 2) for v in variants))
    return "\n".join(lines)


def verdict(v: Variant) -> str:
    """The lecture's reading of one column: how the std evolves from the first layer to the last."""
    first, last = v.stds[0], v.stds[-1]
    if v.nonlinearity in ("tanh", "sigmoid") and last > 0.8:
        return "saturated"  # tanh outputs of std near 1 sit at -1 and +1: zero gradient
    if last < 0.1 * first:
        return "vanishes"
    if last > 10 * first:
        return "explodes"
    return "holds"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--logdir", default="runs", help="log directory for the runs")
    parser.add_argument("--batch", type=int, default=1000, help="examples in the input batch")
    parser.add_argument("--hidden", type=int, default=500, help="units per layer")
    parser.add_argument("--layers", type=int, default=10, help="hidden layers")
    parser.add_argument("--seed", type=int, default=0, help="seeds the batch and the weights")
    args = parser.parse_args(argv)
    variants = run_experiment(args.logdir, n=args.batch, d=args.hidden, layers=args.layers, seed=args.seed)
    print("std of each layer's output")
    print(format_table(variants))
    print(f"\nruns written to {Path(args.logdir).resolve()}, one per column (nonlinearity-init): "
          + ", ".join(v.run_dir.name for v in variants))
    print(f"see them: babysitter dashboard {args.logdir}   (each run's Layers page draws its column)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
