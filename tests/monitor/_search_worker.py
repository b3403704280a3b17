"""One worker of a shared search: a numpy MLP on CS231n's spiral data, one run per trial.

Started N times on one storage by ``test_search_study.py``; prints one JSON line with the
trial numbers this process ran. Learning rates above about 10 blow the loss up within a
few steps: those trials must be pruned by the diagnoses, not trained to the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from babysitter.demo_training import make_spiral  # noqa: E402
from monitor.search import LogUniform, random_search  # noqa: E402

STEPS = 200
EVERY = 10
SPACE = {"lr": LogUniform(1e-2, 1e3)}
RAN: list[int] = []
DIE = False  # --die: exit at once in the first trial, before its run folder exists


def train(trial) -> None:
    if DIE:
        os._exit(3)  # a worker killed between claiming a trial and opening its run
    _train(trial)


def _train(trial) -> None:
    RAN.append(trial.index)
    X, y = make_spiral(60, seed=0)
    Xv, yv = make_spiral(40, seed=1)
    g = np.random.default_rng(trial.seed)
    W1, b1 = g.standard_normal((2, 64)) * np.sqrt(2.0 / 2), np.zeros(64)
    W2, b2 = g.standard_normal((64, 3)) * 0.01, np.zeros(3)
    lr = trial.hparams["lr"]
    n = len(X)
    with np.errstate(all="ignore"), trial.monitor(num_classes=3, every=EVERY, heartbeat=1.0) as mon:
        for step in range(STEPS):
            h = np.maximum(0.0, X @ W1 + b1)
            mon.activation(step, "fc1", h, kind="relu")
            s = h @ W2 + b2
            p = np.exp(s - s.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            loss = -np.log(p[np.arange(n), y]).mean()
            d = p.copy()
            d[np.arange(n), y] -= 1.0
            d /= n
            dW2, db2 = h.T @ d, d.sum(0)
            dh = (d @ W2.T) * (h > 0)
            dW1, db1 = X.T @ dh, dh.sum(0)
            W1 -= lr * dW1
            b1 -= lr * db1
            W2 -= lr * dW2
            b2 -= lr * db2
            mon.weights(step, "W1", W1, update=-lr * dW1, grad=dW1)
            mon.weights(step, "W2", W2, update=-lr * dW2, grad=dW2)
            extra = {}
            if step % 20 == 19:
                hv = np.maximum(0.0, Xv @ W1 + b1)
                extra["val_acc"] = float(np.mean(np.argmax(hv @ W2 + b2, 1) == yv))
            mon.log(step, loss=loss, lr=lr, **extra)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--logdir", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--name", default="coarse")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--die", action="store_true", help="exit in the first trial, before it opens its run")
    a = ap.parse_args()
    global DIE
    DIE = a.die
    res = random_search(train, SPACE, a.trials, logdir=a.logdir, name=a.name, seed=a.seed, storage=a.storage)
    print(json.dumps({"ran": RAN, "trials": len(res.trials), "best": res.best.name if res.best else None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
