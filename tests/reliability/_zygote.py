"""A training process that forks: each child trains with a Monitor until it is killed.

Started once by the crash tests (importing numpy and the monitor once keeps 50+ kills
fast). For every line ``<index> <seed>`` read on stdin it forks a child and prints the
child's pid. The child trains a small numpy ReLU network forever, logging scalars and
layer statistics at every step, and after each step stores how many steps it has
completed (``mon.log`` returned) in ``<ackdir>/<index>`` through a shared memory map:
the kernel keeps that count even when the child is killed with SIGKILL, so the test knows
which records the child had handed over before it died.
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from monitor import Monitor  # noqa: E402

LAYERS = 24
WIDTH = 32


def train(logdir: str, ackdir: str, index: int, seed: int) -> None:
    fd = os.open(os.path.join(ackdir, str(index)), os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, 8)
    ack = mmap.mmap(fd, 8)
    rng = np.random.default_rng(seed)
    mon = Monitor(logdir, name=f"k{index:03d}", every=1, heartbeat=0.05, hparams={"seed": seed})
    mon.open()
    mon.set_layers([(f"fc{i}", "relu") for i in range(LAYERS)])
    weights = [rng.standard_normal((WIDTH, WIDTH)) * 0.2 for _ in range(LAYERS)]
    step = 0
    while True:
        x = rng.standard_normal((64, WIDTH))
        mon.input(step, x)
        h = x
        for i, w in enumerate(weights):
            h = np.maximum(0.0, h @ w)
            mon.activation(step, f"fc{i}", h, kind="relu")
        for i, w in enumerate(weights):
            upd = rng.standard_normal(w.shape) * 1e-3
            w += upd
            mon.weights(step, f"W{i}", w, update=upd, grad=-upd)
        mon.log(step, loss=1.0 / (step + 1), seq=float(step))
        if step % 5 == 0:
            mon.set_meta(hparams={"at": step})
        step += 1
        struct.pack_into("<q", ack, 0, step)


def main() -> None:
    logdir, ackdir = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel: no zombies
    for line in sys.stdin:
        index, seed = (int(x) for x in line.split())
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                train(logdir, ackdir, index, seed)
            finally:
                os._exit(3)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
