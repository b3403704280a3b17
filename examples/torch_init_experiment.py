"""The weight-initialisation experiment of CS231n "Training Neural Networks I", in PyTorch.

A 10-layer MLP of 500 units (``nn.Linear`` + ``nn.Tanh``/``nn.ReLU``) is trained for a few
steps on unit-Gaussian inputs with random labels, for each nonlinearity and each
initialisation of the weights:

* ``small``:  0.01 * randn          -> tanh activations shrink towards 0 layer after layer
* ``large``:  1.0 * randn           -> tanh activations saturate at -1 and +1
* ``xavier``: randn / sqrt(fan_in)  -> tanh keeps a usable scale
* ``he``:     randn * sqrt(2 / fan_in) -> ReLU keeps its scale

Each variant is one run (``torch-<nonlinearity>-<init>``) recorded by ``Monitor.watch``; the
per-layer std table printed at the end is read back from the recorded runs (``core.Run``),
not from the model. Run it::

    python examples/torch_init_experiment.py --logdir runs
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core import Run  # noqa: E402
from monitor import Monitor  # noqa: E402

INITS: dict[str, Callable[[int], float]] = {  # weight std as a function of fan_in
    "small": lambda fan_in: 0.01,
    "large": lambda fan_in: 1.0,
    "xavier": lambda fan_in: 1.0 / math.sqrt(fan_in),
    "he": lambda fan_in: math.sqrt(2.0 / fan_in),
}
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def make_mlp(act: str = "tanh", init: str = "xavier", *, depth: int = 10, width: int = 500,
             classes: int = 10, seed: int = 0) -> nn.Sequential:
    """``depth`` x [Linear(width, width), activation] and a Linear classifier; biases 0, weights ``INITS[init]``."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(depth):
        lin = nn.Linear(width, width)
        with torch.no_grad():
            lin.weight.normal_(0.0, INITS[init](width))
            lin.bias.zero_()
        layers += [lin, ACTIVATIONS[act]()]
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def run_variant(logdir: str | Path, act: str, init: str, *, steps: int = 5, depth: int = 10, width: int = 500,
                batch: int = 256, lr: float = 1e-3, seed: int = 0) -> Path:
    """Train one variant for ``steps`` steps with statistics at every step; return its run folder."""
    model = make_mlp(act, init, depth=depth, width=width, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, width, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    hparams = {"act": act, "init": init, "lr": lr, "depth": depth, "width": width}
    with Monitor(logdir, f"torch-{act}-{init}", hparams=hparams, num_classes=10, every=1,
                 on_exists="suffix", heartbeat=0) as mon:
        mon.watch(model, opt)
        for step in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
        return mon.run_dir


def std_by_layer(run_dir: str | Path, step: int = 0) -> dict[str, float]:
    """The recorded std of each activation layer's output (tanh/relu modules) at ``step``, in depth order."""
    run = Run(run_dir)
    run.update()
    kinds = run.layer_kinds()
    row = run.acts.row_at(step)
    if row is None:
        return {}
    std = run.acts.field("std")[row]
    out = {}
    for name in run.layer_order():
        if kinds.get(name) in ACTIVATIONS:
            out[name] = float(std[run.acts.index[name]])
    return out


def std_table(run_dirs: Sequence[str | Path], step: int = 0) -> str:
    """A text table: one row per activation layer, one column per run (the lecture's plot as numbers)."""
    cols = {Path(d).name: std_by_layer(d, step) for d in run_dirs}
    rows = max((len(c) for c in cols.values()), default=0)
    header = "layer".ljust(6) + "".join(n.rjust(20) for n in cols)
    lines = [f"std of each layer's output at step {step}", header]
    for i in range(rows):
        cells = []
        for col in cols.values():
            vals = list(col.values())
            cells.append(f"{vals[i]:20.4g}" if i < len(vals) else " " * 20)
        lines.append(str(i + 1).ljust(6) + "".join(cells))
    return "\n".join(lines)


def run_experiment(logdir: str | Path, *, acts: Sequence[str] = ("tanh", "relu"),
                   inits: Sequence[str] = ("small", "large", "xavier", "he"), **kw) -> list[Path]:
    """Every (nonlinearity, init) pair as one run; returns the run folders."""
    return [run_variant(logdir, a, i, **kw) for a in acts for i in inits]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="CS231n initialisation experiment in PyTorch, recorded as runs.")
    ap.add_argument("--logdir", default="runs", help="log directory (default %(default)s)")
    ap.add_argument("--steps", type=int, default=5, help="training steps per variant (default %(default)s)")
    ap.add_argument("--depth", type=int, default=10, help="hidden layers (default %(default)s)")
    ap.add_argument("--width", type=int, default=500, help="units per layer (default %(default)s)")
    args = ap.parse_args(argv)
    dirs = run_experiment(args.logdir, steps=args.steps, depth=args.depth, width=args.width)
    for act in ACTIVATIONS:
        print(f"\n{act}:")
        print(std_table([d for d in dirs if Path(d).name.startswith(f"torch-{act}-")]))
    print(f"\nruns in {args.logdir}: babysitter dashboard {args.logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
