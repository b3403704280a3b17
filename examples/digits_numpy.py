"""A two-layer numpy network trained with SGD on scikit-learn's 8x8 digits, watched by the Monitor.

CS231n style: affine - ReLU - affine - softmax, L2 regularisation ``reg * sum(W * W)``, SGD
with optional momentum. The data (1797 images of 8x8 pixels valued 0..16, 10 classes) ships
inside scikit-learn, so nothing is downloaded. With the default initialisation (Xavier, small last layer) the
first loss is close to log(10) = 2.30, the lecture's first sanity check.

Every step logs ``loss`` and ``lr``; every ``every`` steps (Monitor option, default 10) the
input batch, both layers' outputs and both weight matrices with the update really applied
and the gradient; every epoch ``train_acc``, ``val_acc`` and ``val_loss``.

The settings that break training on purpose are parameters, so the same function shows
the diagnoses: ``lr=5.0`` (loss explodes), ``lr=1e-6`` (loss barely moves),
``center_inputs=False`` (raw 0..16 pixels), ``init="constant"`` (symmetric weights),
``n_train=20, reg=0.0`` (the overfit-a-tiny-subset check). Run it::

    python examples/digits_numpy.py --logdir runs --epochs 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from monitor import Monitor

INIT_KINDS = ("small", "xavier", "constant")


def load_data(seed: int = 0, val_frac: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as float64 ``(X_train, y_train, X_val, y_val)``, pixels 0..16, split at random."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(X))
    n_val = int(round(len(X) * val_frac))
    val, tr = order[:n_val], order[n_val:]
    return X[tr].astype(np.float64), y[tr], X[val].astype(np.float64), y[val]


def init_params(kind: str, d_in: int, hidden: int, n_cls: int, g: np.random.Generator,
                scale: float | None = None) -> dict[str, np.ndarray]:
    """Weights and biases of the two layers.

    ``small``: ``scale * randn`` (default 1e-3) for both layers. ``xavier``: ``randn / sqrt(fan_in)``
    for the first layer and a last layer scaled down by 0.01 so that the first scores are
    near 0 and the first loss near log(C). ``constant``: every weight ``scale`` (default 0.01),
    which keeps all hidden units identical forever (the symmetry problem).
    """
    if kind == "small":
        s = 1e-3 if scale is None else scale
        W1, W2 = s * g.standard_normal((d_in, hidden)), s * g.standard_normal((hidden, n_cls))
    elif kind == "xavier":
        s = 1.0 if scale is None else scale
        W1 = s * g.standard_normal((d_in, hidden)) / np.sqrt(d_in)
        W2 = 0.01 * g.standard_normal((hidden, n_cls)) / np.sqrt(hidden)
    elif kind == "constant":
        s = 0.01 if scale is None else scale
        W1, W2 = np.full((d_in, hidden), s), np.full((hidden, n_cls), s)
    else:
        raise ValueError(f"init must be one of {INIT_KINDS}, got {kind!r}")
    return {"W1": W1, "b1": np.zeros(hidden), "W2": W2, "b2": np.zeros(n_cls)}


def loss_and_grads(p: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, reg: float
                   ) -> tuple[float, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Softmax loss with L2 regularisation, its gradients, the hidden layer and the scores."""
    h = np.maximum(0.0, X @ p["W1"] + p["b1"])
    scores = h @ p["W2"] + p["b2"]
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs = exp / exp.sum(axis=1, keepdims=True)
    n = len(X)
    loss = -np.log(probs[np.arange(n), y]).mean() + reg * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))
    dscores = probs
    dscores[np.arange(n), y] -= 1.0
    dscores /= n
    grads = {"W2": h.T @ dscores + 2 * reg * p["W2"], "b2": dscores.sum(axis=0)}
    dh = (dscores @ p["W2"].T) * (h > 0)
    grads["W1"] = X.T @ dh + 2 * reg * p["W1"]
    grads["b1"] = dh.sum(axis=0)
    return float(loss), grads, h, scores


def predict(p: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    h = np.maximum(0.0, X @ p["W1"] + p["b1"])
    return (h @ p["W2"] + p["b2"]).argmax(axis=1)


def train(logdir: str | Path = "runs", *, seed: int = 0, epochs: int = 20, lr: float = 0.1, reg: float = 1e-4,
          hidden: int = 64, batch_size: int = 64, momentum: float = 0.0, lr_decay: float = 1.0,
          init: str = "xavier", init_scale: float | None = None, center_inputs: bool = True,
          n_train: int | None = None, name: str | None = None, **monitor_kwargs: Any) -> Path:
    """Train the network and record it as one run.

    Args:
        logdir: log directory.
        seed: seeds the split, the initialisation and the batches.
        epochs: passes over the training set.
        lr: learning rate. lr_decay: multiplies it after every epoch.
        reg: L2 strength (``reg * sum(W * W)`` for both weight matrices).
        hidden: hidden units.
        batch_size: examples per step (at most the training set).
        momentum: SGD momentum (0 for plain SGD).
        init: ``"small"``, ``"xavier"`` or ``"constant"`` (see ``init_params``).
        init_scale: overrides the scale of ``init``.
        center_inputs: standardise every pixel with the training mean and std; ``False``
            feeds the raw 0..16 pixels.
        n_train: use only the first ``n_train`` training examples (the overfit check).
        name: run name (generated when None).
        **monitor_kwargs: passed to ``Monitor`` (``every``, ``on_nan``, ``sanity``, ``heartbeat``, ...).

    Returns:
        The run folder.
    """
    if init not in INIT_KINDS:
        raise ValueError(f"init must be one of {INIT_KINDS}, got {init!r}")
    X_tr, y_tr, X_val, y_val = load_data(seed)
    if n_train is not None:
        X_tr, y_tr = X_tr[:n_train], y_tr[:n_train]
    if center_inputs:
        mu, sd = X_tr.mean(axis=0), X_tr.std(axis=0)
        sd[sd == 0] = 1.0  # border pixels that are 0 in every image
        X_tr, X_val = (X_tr - mu) / sd, (X_val - mu) / sd
    g = np.random.default_rng(seed)
    params = init_params(init, X_tr.shape[1], hidden, 10, g, init_scale)
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    batch_size = min(batch_size, len(X_tr))
    steps_per_epoch = max(1, len(X_tr) // batch_size)
    hparams = {"lr": lr, "reg": reg, "hidden": hidden, "batch_size": batch_size, "momentum": momentum,
               "lr_decay": lr_decay, "init": init, "init_scale": init_scale, "center_inputs": center_inputs,
               "n_train": len(X_tr), "epochs": epochs, "seed": seed, "dataset": "sklearn digits 8x8"}
    monitor_kwargs.setdefault("every", 10)
    step = 0
    # A diverging run (huge lr) overflows on purpose: the Monitor records it; numpy need not shout.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
            Monitor(logdir, name, hparams=hparams, num_classes=10, **monitor_kwargs) as mon:
        mon.set_layers([("fc1", "relu"), ("fc2", "linear")])
        for epoch in range(epochs):
            order = g.permutation(len(X_tr))
            for i in range(steps_per_epoch):
                idx = order[i * batch_size:(i + 1) * batch_size]
                Xb, yb = X_tr[idx], y_tr[idx]
                loss, grads, h, scores = loss_and_grads(params, Xb, yb, reg)
                if mon.stats_due(step):
                    mon.input(step, Xb)
                    mon.activation(step, "fc1", h, kind="relu")
                    mon.activation(step, "fc2", scores, kind="linear")
                for k in params:
                    velocity[k] = momentum * velocity[k] - lr * grads[k]
                    params[k] += velocity[k]
                    # The update really applied (momentum makes it differ from -lr * grad).
                    mon.weights(step, k, params[k], update=velocity[k], grad=grads[k])
                mon.log(step, loss=loss, lr=lr)
                step += 1
            val_loss, _, _, _ = loss_and_grads(params, X_val, y_val, reg)
            mon.log(step - 1, epoch=epoch, train_acc=float((predict(params, X_tr) == y_tr).mean()),
                    val_acc=float((predict(params, X_val) == y_val).mean()), val_loss=val_loss)
            lr *= lr_decay
    return mon.run_dir


def run_name(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``digits`` plus each training flag that differs from its default: ``digits-lr5``,
    ``digits-raw-inputs``, ``digits-init-constant-n-train20``. Runs say which flag made them."""
    parts = ["digits"]
    for action in parser._actions:
        key = action.dest
        if key in ("help", "logdir", "name", "every") or not action.option_strings:
            continue
        value = getattr(args, key)
        if value == action.default:
            continue
        flag = action.option_strings[-1].lstrip("-")
        parts.append(flag if isinstance(value, bool) else f"{flag}{value:g}" if isinstance(value, float)
                     else f"{flag}-{value}" if isinstance(value, str) else f"{flag}{value}")
    return "-".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--logdir", default="runs", help="log directory for the run")
    parser.add_argument("--name", default=None,
                        help="run name (default: 'digits' plus the flags that differ from their defaults, "
                             "e.g. digits-lr5; a taken name gets -2)")
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training set")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate")
    parser.add_argument("--lr-decay", type=float, default=1.0, help="learning rate factor after each epoch")
    parser.add_argument("--reg", type=float, default=1e-4, help="L2 regularization strength")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per SGD step")
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    parser.add_argument("--init", choices=INIT_KINDS, default="xavier", help="weight initialisation")
    parser.add_argument("--init-scale", type=float, default=None, help="weight scale for --init constant/normal")
    parser.add_argument("--raw-inputs", action="store_true", help="do not standardise the pixels")
    parser.add_argument("--n-train", type=int, default=None, help="train on this many examples only")
    parser.add_argument("--every", type=int, default=10, help="steps between layer statistics")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split and the weights")
    a = parser.parse_args(argv)
    a.name = a.name or run_name(parser, a)
    run_dir = train(a.logdir, seed=a.seed, epochs=a.epochs, lr=a.lr, lr_decay=a.lr_decay, reg=a.reg,
                    hidden=a.hidden, batch_size=a.batch_size, momentum=a.momentum, init=a.init,
                    init_scale=a.init_scale, center_inputs=not a.raw_inputs, n_train=a.n_train, name=a.name,
                    every=a.every)
    from core import Run

    run = Run(run_dir)
    run.update()
    loss, val = run.scalar("loss").values, run.scalar("val_acc").values
    print(f"first loss {loss[0]:.3f} (log 10 = {np.log(10):.3f}), last loss {loss[-1]:.3f}, "
          f"final val_acc {val[-1]:.3f}")
    print(f"run: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
