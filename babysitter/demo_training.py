"""The demo training behind ``babysitter demo``: a small numpy network on CS231n's spiral data.

No data set to download and nothing beyond the runtime dependencies: the three-armed
spiral of CS231n's "Putting it together" notes is generated here, and a 2-100-100-3
network is trained on it full-batch with SGD, recorded through ``monitor.Monitor``.

Variants (``VARIANTS``):

* ``"healthy"``: ReLU, He initialisation with a small last layer (first loss near
  log 3), lr 0.5 - the curves a person wants to see.
* ``"saturated"``: tanh with weights ``2.0 * randn`` (the lecture's "too large" init) - most
  of the second layer's outputs sit at -1 or +1 and the first loss is about 10x log 3: the
  dashboard's saturation and initial-loss diagnoses fire.
* ``"diverging"``: the healthy network with lr 30 - the loss becomes NaN/Inf.

``run_demo`` is a plain function, safe to call from a background thread; ``step_delay``
slows it down so that the run can be watched live, and ``stop`` ends it early.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from monitor import Monitor

log = logging.getLogger(__name__)

__all__ = ["VARIANTS", "DemoVariant", "make_spiral", "run_demo"]


@dataclass(frozen=True)
class DemoVariant:
    """Settings of one demo network.

    Attributes:
        nonlinearity: ``"relu"`` or ``"tanh"`` for both hidden layers.
        init: ``"he"`` (``randn * sqrt(2 / fan_in)``, last layer ``0.01 * randn``) or
            ``"large"`` (``init_scale * randn`` everywhere).
        lr: learning rate of plain SGD.
        reg: L2 strength (``reg * sum(W * W)``).
        about: one line shown to the user.
    """

    nonlinearity: str
    init: str
    lr: float
    reg: float
    about: str
    init_scale: float = 1.0


VARIANTS: dict[str, DemoVariant] = {
    "healthy": DemoVariant("relu", "he", 0.5, 1e-4, "ReLU, He init, lr 0.5: healthy training"),
    "saturated": DemoVariant("tanh", "large", 0.01, 1e-4, "tanh with 2.0*randn init: saturated units", 2.0),
    "diverging": DemoVariant("relu", "he", 30.0, 1e-4, "learning rate 30: the loss blows up"),
}

HIDDEN = 100
CLASSES = 3


def make_spiral(points_per_class: int = 100, classes: int = CLASSES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CS231n's spiral: ``classes`` arms of ``points_per_class`` 2-D points each, with noisy angles.

    Returns:
        ``(X, y)``: float64 ``(N, 2)`` points inside the unit disc and int64 labels.
    """
    g = np.random.default_rng(seed)
    n = points_per_class * classes
    X = np.zeros((n, 2))
    y = np.zeros(n, dtype=np.int64)
    for j in range(classes):
        ix = slice(points_per_class * j, points_per_class * (j + 1))
        r = np.linspace(0.0, 1.0, points_per_class)
        t = np.linspace(j * 4, (j + 1) * 4, points_per_class) + g.standard_normal(points_per_class) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return X, y


def _init(v: DemoVariant, g: np.random.Generator) -> dict[str, np.ndarray]:
    sizes = [(2, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, CLASSES)]
    p: dict[str, np.ndarray] = {}
    for i, (fan_in, fan_out) in enumerate(sizes, start=1):
        w = g.standard_normal((fan_in, fan_out))
        if v.init == "he":
            w *= 0.01 if i == len(sizes) else np.sqrt(2.0 / fan_in)
        else:
            w *= v.init_scale
        p[f"W{i}"], p[f"b{i}"] = w, np.zeros(fan_out)
    return p


def _forward_backward(p: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, v: DemoVariant, need_grads: bool = True
                      ) -> tuple[float, dict[str, np.ndarray], list[np.ndarray], np.ndarray]:
    act = np.tanh if v.nonlinearity == "tanh" else (lambda z: np.maximum(0.0, z))
    h1 = act(X @ p["W1"] + p["b1"])
    h2 = act(h1 @ p["W2"] + p["b2"])
    scores = h2 @ p["W3"] + p["b3"]
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(X)
    loss = float(-np.log(probs[np.arange(n), y]).mean()
                 + v.reg * sum(np.sum(p[k] * p[k]) for k in ("W1", "W2", "W3")))
    grads: dict[str, np.ndarray] = {}
    if need_grads:
        d = probs
        d[np.arange(n), y] -= 1.0
        d /= n
        grads["W3"], grads["b3"] = h2.T @ d, d.sum(0)
        dh2 = d @ p["W3"].T
        dh2 *= (1 - h2 * h2) if v.nonlinearity == "tanh" else (h2 > 0)
        grads["W2"], grads["b2"] = h1.T @ dh2, dh2.sum(0)
        dh1 = dh2 @ p["W2"].T
        dh1 *= (1 - h1 * h1) if v.nonlinearity == "tanh" else (h1 > 0)
        grads["W1"], grads["b1"] = X.T @ dh1, dh1.sum(0)
        for k in ("W1", "W2", "W3"):
            grads[k] += 2 * v.reg * p[k]
    return loss, grads, [h1, h2], scores


def run_demo(logdir: str | Path = "runs", *, steps: int = 3000, step_delay: float = 0.0, name: str | None = "demo",
             variant: str = "healthy", seed: int = 0, eval_every: int = 50, stop: threading.Event | None = None,
             on_start: Callable[[Path], None] | None = None, **monitor_kwargs: Any) -> Path:
    """Train one demo network and record it as a run.

    Args:
        logdir: log directory.
        steps: SGD steps (full batch of 300 points).
        step_delay: seconds to sleep after each step, so that a person can watch it live
            (0 runs at full speed: about a second for 3000 steps).
        name: run name; an existing run gets a suffix (``demo-2``). ``None`` generates one.
        variant: a key of ``VARIANTS``.
        seed: seeds the data and the weights.
        eval_every: steps between train/val accuracy evaluations.
        stop: when set (from another thread), training ends after the current step and the
            run is marked ``stopped`` (it did not run its ``steps``).
        on_start: called with the run folder once it exists.
        **monitor_kwargs: passed to ``Monitor`` (``every``, ``heartbeat``, ...).

    Returns:
        The run folder.

    Raises:
        ValueError: for an unknown ``variant`` or a negative ``steps``/``step_delay``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if steps < 0 or step_delay < 0:
        raise ValueError(f"steps and step_delay must be >= 0, got {steps!r} and {step_delay!r}")
    v = VARIANTS[variant]
    X, y = make_spiral(100, seed=seed)
    X_val, y_val = make_spiral(60, seed=seed + 1)
    g = np.random.default_rng(seed)
    p = _init(v, g)
    hp = {"variant": variant, "nonlinearity": v.nonlinearity, "init": v.init, "init_scale": v.init_scale,
          "lr": v.lr, "reg": v.reg,
          "hidden": [HIDDEN, HIDDEN], "steps": steps, "dataset": "spiral (3 classes, 300 points)", "about": v.about}
    monitor_kwargs.setdefault("every", 10)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
            Monitor(logdir, name, hparams=hp, num_classes=CLASSES, **monitor_kwargs) as mon:
        mon.set_layers([("fc1", v.nonlinearity), ("fc2", v.nonlinearity), ("fc3", "linear")])
        if on_start is not None:
            on_start(mon.run_dir)
        for step in range(steps):
            if stop is not None and stop.is_set():
                mon.close(stopped=True)
                break
            loss, grads, hidden, scores = _forward_backward(p, X, y, v)
            if mon.stats_due(step):
                mon.input(step, X)
                mon.activation(step, "fc1", hidden[0], kind=v.nonlinearity)
                mon.activation(step, "fc2", hidden[1], kind=v.nonlinearity)
                mon.activation(step, "fc3", scores, kind="linear")
            for k in p:
                upd = -v.lr * grads[k]
                p[k] += upd
                mon.weights(step, k, p[k], update=upd, grad=grads[k])
            values = {"loss": loss, "lr": v.lr}
            if step % eval_every == 0 or step == steps - 1:
                values["train_acc"] = float((scores.argmax(1) == y).mean())
                val_loss, _, _, val_scores = _forward_backward(p, X_val, y_val, v, need_grads=False)
                values["val_acc"] = float((val_scores.argmax(1) == y_val).mean())
                values["val_loss"] = val_loss
            mon.log(step, **values)
            if step_delay:
                time.sleep(step_delay)
    return mon.run_dir
