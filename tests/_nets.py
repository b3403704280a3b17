"""Small numpy MLPs trained on scikit-learn's digits (8x8 images, 10 classes), recorded with a Monitor.

The diagnosis tests train real networks into the failure each rule describes (a learning
rate far too high, 0.01*randn init in a 10-layer tanh net, constant init, ...) and the
healthy versions of the same networks. Everything is seeded, so a run is reproducible.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.schema import LayerInfo
from monitor import Monitor

N_VAL = 497  # digits has 1797 examples: the last 497 are the validation set


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    # The CSV that sklearn.datasets.load_digits reads, found without importing scikit-learn (3 s).
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    assert spec is not None and spec.submodule_search_locations, "scikit-learn (test dependency) is not installed"
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    raw = np.loadtxt(path, delimiter=",")
    data, target = raw[:, :-1], raw[:, -1].astype(np.int64)
    rng = np.random.default_rng(1234)
    order = rng.permutation(len(target))
    return data[order], target[order]


def digits(center: bool = True, n_train: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_val, y_val)``; raw pixels are 0..16, ``center`` standardises per feature."""
    X, y = _digits()
    Xtr, ytr, Xva, yva = X[:-N_VAL], y[:-N_VAL], X[-N_VAL:], y[-N_VAL:]
    if n_train is not None:
        Xtr, ytr = Xtr[:n_train], ytr[:n_train]
    if center:
        mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0) + 1e-8
        Xtr, Xva = (Xtr - mu) / sd, (Xva - mu) / sd
    return Xtr, ytr, Xva, yva


def _init(rng: np.random.Generator, fan_in: int, fan_out: int, init: str | float) -> np.ndarray:
    if init == "constant":
        return np.full((fan_in, fan_out), 0.05)
    if init == "he":
        return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
    if init == "xavier":
        return rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
    return rng.standard_normal((fan_in, fan_out)) * float(init)  # a plain scale: 0.01, 1.0


def _act(z: np.ndarray, kind: str) -> np.ndarray:
    return np.maximum(z, 0) if kind == "relu" else np.tanh(z)


def _dact(h: np.ndarray, kind: str) -> np.ndarray:
    return (h > 0).astype(h.dtype) if kind == "relu" else 1 - h * h


def train_mlp(
    logdir: str | Path,
    name: str,
    *,
    hidden: tuple[int, ...] = (64,),
    act: str = "relu",
    init: str | float = "he",
    last_scale: float = 1.0,
    bias: float = 0.0,
    lr: float = 0.1,
    lr_scale: tuple[float, ...] | None = None,
    reg: float = 0.0,
    reg_in_loss: bool = True,
    epochs: int = 5,
    batch: int = 64,
    n_train: int | None = None,
    center: bool = True,
    seed: int = 0,
    grad_bug: bool = False,
    data: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None = None,
    every: int = 5,
    **monitor_kwargs: Any,
) -> Path:
    """Train a softmax MLP with plain SGD and record it. Returns the run folder.

    Args:
        hidden: widths of the hidden layers (each followed by ``act``).
        init: ``"he"``, ``"xavier"``, ``"constant"`` or a scale for ``randn``.
        last_scale: extra factor on the output layer's initial weights.
        bias: initial value of the hidden biases (a large negative one kills ReLUs).
        lr_scale: a learning-rate factor per weight layer (one layer's learning rate out of line).
        reg: L2 strength; ``reg_in_loss=False`` leaves the penalty out of the reported loss (a bug).
        grad_bug: forget to subtract 1 at the true class in the softmax gradient (a broken model).
        data: ``(X_train, y_train, X_val, y_val)`` instead of digits.
        monitor_kwargs: passed to ``Monitor`` (``sanity=``, ``on_nan=``, ...).
    """
    from threadpoolctl import threadpool_limits

    # BLAS threads oversubscribe the few cores the suite shares: one thread is 10x faster here.
    with threadpool_limits(1):
        return _train(logdir, name, hidden=hidden, act=act, init=init, last_scale=last_scale, bias=bias, lr=lr,
                      lr_scale=lr_scale, reg=reg, reg_in_loss=reg_in_loss, epochs=epochs, batch=batch, n_train=n_train, center=center,
                      seed=seed, grad_bug=grad_bug, data=data, every=every, **monitor_kwargs)


def _train(logdir: str | Path, name: str, *, hidden: tuple[int, ...], act: str, init: str | float,
           last_scale: float, bias: float, lr: float, lr_scale: tuple[float, ...] | None, reg: float, reg_in_loss: bool, epochs: int, batch: int,
           n_train: int | None, center: bool, seed: int, grad_bug: bool,
           data: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None, every: int,
           **monitor_kwargs: Any) -> Path:
    rng = np.random.default_rng(seed)
    Xtr, ytr, Xva, yva = data if data is not None else digits(center, n_train)
    sizes = [Xtr.shape[1], *hidden, 10]
    Ws = [_init(rng, a, b, init) for a, b in zip(sizes[:-1], sizes[1:])]
    Ws[-1] = Ws[-1] * last_scale
    bs = [np.full(b, bias if i < len(hidden) else 0.0) for i, b in enumerate(sizes[1:])]
    names = [f"fc{i + 1}" for i in range(len(hidden))] + ["scores"]
    hp = {"lr": lr, "reg": reg, "hidden": list(hidden), "act": act, "init": str(init), "batch": batch}
    mon = Monitor(logdir, name, hparams=hp, num_classes=10, every=every, heartbeat=0, **monitor_kwargs)
    step = diverged = 0
    with mon, np.errstate(all="ignore"):
        mon.set_layers([LayerInfo(n, act if i < len(hidden) else "linear", params=(f"W{i + 1}", f"b{i + 1}"))
                        for i, n in enumerate(names)])
        for _ in range(epochs):
            order = rng.permutation(len(ytr))
            for start in range(0, len(order), batch):
                idx = order[start:start + batch]
                xb, yb = Xtr[idx], ytr[idx]
                hs = [xb]
                for i, (W, b) in enumerate(zip(Ws, bs)):
                    z = hs[-1] @ W + b
                    hs.append(_act(z, act) if i < len(hidden) else z)
                scores = hs[-1]
                shifted = scores - scores.max(axis=1, keepdims=True)
                p = np.exp(shifted)
                p /= p.sum(axis=1, keepdims=True)
                n = len(yb)
                loss = float(-np.log(p[np.arange(n), yb]).mean())  # log(0) = -inf once scores blow up
                if reg_in_loss:
                    loss += 0.5 * reg * sum(float((W * W).sum()) for W in Ws)
                dz = p.copy()
                if not grad_bug:
                    dz[np.arange(n), yb] -= 1
                dz /= n
                grads = []
                for i in range(len(Ws) - 1, -1, -1):
                    dW = hs[i].T @ dz + reg * Ws[i]
                    db = dz.sum(axis=0)
                    grads.append((dW, db))
                    if i:
                        dz = (dz @ Ws[i].T) * _dact(hs[i], act)
                grads.reverse()
                if mon.stats_due(step):
                    mon.input(step, xb)
                    for name_, h, kind in zip(names, hs[1:], [act] * len(hidden) + ["linear"]):
                        mon.activation(step, name_, h, kind=kind)
                for i, (dW, db) in enumerate(grads):
                    lr_i = lr * (lr_scale[i] if lr_scale else 1.0)
                    Ws[i] -= lr_i * dW
                    bs[i] -= lr_i * db
                    mon.weights(step, f"W{i + 1}", Ws[i], update=-lr_i * dW, grad=dW)
                    mon.weights(step, f"b{i + 1}", bs[i], update=-lr_i * db, grad=db)
                acc = float((scores.argmax(axis=1) == yb).mean()) if np.isfinite(scores).all() else 0.0
                mon.log(step, loss=loss, lr=lr, train_acc=acc)
                step += 1
                if not np.isfinite(loss):
                    diverged += 1
                    if diverged > 40 or not all(np.isfinite(W).all() for W in Ws):  # as a real run, until NaN reaches the weights
                        return mon.run_dir
            if Xva is not None:
                h = Xva
                for i, (W, b) in enumerate(zip(Ws, bs)):
                    z = h @ W + b
                    h = _act(z, act) if i < len(hidden) else z
                mon.log(step - 1, val_acc=float((h.argmax(axis=1) == yva).mean()))
    return mon.run_dir


def overfit_digits(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A tiny standardised training subset for the overfit sanity check."""
    from monitor.sanity import overfit_subset

    Xtr, ytr, _, _ = digits(True)
    return overfit_subset(Xtr, ytr, n=n, seed=seed)
