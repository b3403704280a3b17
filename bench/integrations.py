"""Overhead of each integration at the default cadence (``every=10``), as a ratio to the same
training without it, measured side by side in one run.

* ``lightning``: ``examples/lightning_digits.py``'s CNN, ``Trainer.fit`` on the CPU, with and
  without ``BabysitterCallback``.
* ``hf``: ``examples/hf_text_classifier.py``'s tiny BERT, ``Trainer.train`` on the CPU, with
  and without ``BabysitterCallback`` (evaluation off, so only training steps are timed).
* ``torchrun``: ``examples/torchrun_ddp.py`` under ``torchrun --nproc_per_node 2`` (gloo),
  with and without ``monitor.watch`` (rank 0's loop time per step).
* ``notebook``: not a training cost (a summary is computed only when displayed); the time
  to render ``Monitor._repr_html_`` of the run, and what ``live()`` costs at its default
  2 s redraw as a share of one core.

Lightning and HF: the time per optimizer step (wall, and the process's CPU time, which
waiting for a core on a busy machine does not inflate) from step ``--warm`` to the end of training,
taken by a timing callback of the framework's own, so start-up and set-up are left out.
After one discarded warm-up of each, the variants alternate for ``--reps`` repetitions (the
order swapped every repetition) and the median per variant is reported; the ratio is
with / without.

Usage::

    python bench/integrations.py               # about 3 minutes on 2 CPU cores
    python bench/integrations.py --reps 2 --only lightning,hf

Results are printed and written to ``bench/results/integrations.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _alternate(run: Callable[[bool], tuple[float, float | None]], reps: int) -> dict[str, Any]:
    """``run(with_monitor)`` returns (wall, CPU or None) seconds per step; medians and their ratios."""
    times: dict[str, list[tuple[float, float | None]]] = {"without": [], "with": []}
    run(False), run(True)  # warm-up, discarded: first-use costs (imports, allocator, thread pools)
    for rep in range(reps):
        for variant in (("without", "with") if rep % 2 == 0 else ("with", "without")):
            times[variant].append(run(variant == "with"))
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    out: dict[str, Any] = {
        "without_ms": wall["without"] * 1e3, "with_ms": wall["with"] * 1e3, "ratio": wall["with"] / wall["without"],
        "samples_ms": {k: [round(t[0] * 1e3, 3) for t in v] for k, v in times.items()}}
    if all(t[1] is not None for v in times.values() for t in v):
        cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
        out.update(cpu_without_ms=cpu["without"] * 1e3, cpu_with_ms=cpu["with"] * 1e3,
                   cpu_ratio=cpu["with"] / cpu["without"])
    return out


def bench_lightning(reps: int, steps: int, warm: int) -> dict[str, Any]:
    import lightning.pytorch as L

    ex = _load("lightning_digits")

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.t0 = self.t1 = self.c0 = self.c1 = 0.0
            self.n = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == warm and not self.t0:
                self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_train_end(self, trainer, pl_module) -> None:
            self.t1, self.c1, self.n = time.perf_counter(), time.process_time(), trainer.global_step - warm

    def run(with_monitor: bool) -> float:
        timer = Timer()
        with tempfile.TemporaryDirectory() as tmp:
            ex.train(tmp if with_monitor else None, max_steps=steps, epochs=1000, extra_callbacks=(timer,),
                     validate=False)
        return (timer.t1 - timer.t0) / timer.n, (timer.c1 - timer.c0) / timer.n

    return _alternate(run, reps)


def bench_hf(reps: int, steps: int, warm: int) -> dict[str, Any]:
    from transformers import TrainerCallback

    ex = _load("hf_text_classifier")

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = self.t1 = self.c0 = self.c1 = 0.0
            self.n = 0

        def on_step_begin(self, args, state, control, **kw) -> None:
            if state.global_step == warm and not self.t0:
                self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw) -> None:
            # The last step's end, before on_train_end (where the monitor closes the run once,
            # an fsync of meta.json: a one-time cost, not one per step).
            self.t1, self.c1, self.n = time.perf_counter(), time.process_time(), state.global_step - warm

    def run(with_monitor: bool) -> float:
        timer = Timer()
        with tempfile.TemporaryDirectory() as tmp:
            ex.train(tmp if with_monitor else None, max_steps=steps, out_dir=Path(tmp) / "out", n_train=4096,
                     extra_callbacks=(timer,), evaluate=False)
        return (timer.t1 - timer.t0) / timer.n, (timer.c1 - timer.c0) / timer.n

    return _alternate(run, reps)


def bench_torchrun(reps: int, steps: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def run(with_monitor: bool) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   str(ROOT / "examples" / "torchrun_ddp.py"), "--logdir", tmp, "--steps", str(steps),
                   "--batch", "256"] + ([] if with_monitor else ["--no-monitor"])
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp)
        m = re.search(r"step time ([0-9.]+) ms", out.stdout)
        if out.returncode != 0 or m is None:
            raise RuntimeError(f"torchrun failed: {out.stderr[-2000:]}")
        return float(m.group(1)) / 1e3, None

    return _alternate(run, reps)


def bench_notebook(steps: int = 1000) -> dict[str, Any]:
    import numpy as np

    from monitor import Monitor

    with tempfile.TemporaryDirectory() as tmp:
        with Monitor(tmp, "nb", num_classes=10) as mon:
            rng = np.random.default_rng(0)
            for step in range(steps):
                for i in range(5):
                    mon.activation(step, f"fc{i}", np.maximum(0, rng.standard_normal((64, 100))), kind="relu")
                mon.log(step, loss=2.3 * 0.999 ** step, lr=0.01)
            mon._repr_html_()  # first read
            times = []
            for _ in range(5):
                t = time.perf_counter()
                mon._repr_html_()
                times.append(time.perf_counter() - t)
    render = statistics.median(times)
    return {"steps": steps, "layers": 5, "render_ms": render * 1e3, "live_share_of_a_core_at_2s": render / 2.0}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=120, help="optimizer steps per fit (Lightning, HF)")
    ap.add_argument("--warm", type=int, default=20, help="steps before the timer starts")
    ap.add_argument("--only", default="lightning,hf,torchrun,notebook")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "integrations.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    which = args.only.split(",")
    res: dict[str, Any] = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                                       "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0]}}
    if "lightning" in which:
        res["lightning"] = bench_lightning(args.reps, args.steps, args.warm)
        print("lightning", json.dumps(res["lightning"]), flush=True)
    if "hf" in which:
        res["hf"] = bench_hf(args.reps, args.steps, args.warm)
        print("hf", json.dumps(res["hf"]), flush=True)
    if "torchrun" in which:
        res["torchrun"] = bench_torchrun(args.reps, args.steps)
        print("torchrun", json.dumps(res["torchrun"]), flush=True)
    if "notebook" in which:
        res["notebook"] = bench_notebook()
        print("notebook", json.dumps(res["notebook"]), flush=True)
    res["machine"]["load_avg_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    for k in ("lightning", "hf", "torchrun"):
        if k in res:
            r = res[k]
            cpu = f"; CPU time {r['cpu_ratio']:.3f}x" if "cpu_ratio" in r else ""
            print(f"{k:10} without {r['without_ms']:.2f} ms/step, with {r['with_ms']:.2f} ms/step: "
                  f"{r['ratio']:.3f}x{cpu}")


if __name__ == "__main__":
    main()
