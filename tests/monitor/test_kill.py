"""A writer killed with SIGKILL at random moments loses no complete line, and the reader never raises."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from core import Run

REPO = Path(__file__).resolve().parents[2]

# The child reports each step on an unbuffered progress file *after* Monitor.log returned:
# every step it reported must be on disk, whatever moment the kill lands on.
CHILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    from monitor import Monitor
    logdir, name, progress = sys.argv[1:4]
    fd = os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    g = np.random.default_rng(0)
    mon = Monitor(logdir, name, every=1, heartbeat=0.2)
    step = 0
    while True:
        for i in range(4):
            mon.activation(step, f"layer{i}", g.standard_normal((64, 100)), kind="relu" if i % 2 else "tanh")
        mon.weights(step, "W", g.standard_normal((100, 100)), update=g.standard_normal((100, 100)) * 1e-3)
        mon.log(step, loss=1.0 / (step + 1), lr=0.1, note=float("nan") if step % 7 == 0 else step)
        os.write(fd, b"%d\\n" % step)
        step += 1
""")


def _complete_lines(path: Path, strict_json) -> list[dict]:
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return [strict_json(line) for line in complete.decode("utf-8").splitlines()]


def test_sigkill_at_random_moments(tmp_path, strict_json):
    rnd = random.Random(1234)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    delays = [0.0] + [rnd.uniform(0.02, 0.6) for _ in range(5)]  # the first kill lands during start-up
    checked_steps = 0
    for k, delay in enumerate(delays):
        name, progress = f"run{k}", tmp_path / f"progress{k}"
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "logs"), name, str(progress)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        run_dir = tmp_path / "logs" / name
        run = None
        # Read concurrently while the child writes: the reader must cope with every in-between state.
        t_ready = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if delay == 0.0 or (progress.exists() and progress.stat().st_size > 0):
                t_ready = t_ready or time.monotonic()
                if time.monotonic() - t_ready >= delay:
                    break
            if run is None and run_dir.is_dir():
                run = Run(run_dir)
            if run is not None:
                run.update()
            time.sleep(0.005)
        assert proc.poll() is None, f"the writer exited on its own: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL

        reported = [int(x) for x in progress.read_text().split()] if progress.exists() else []
        if not run_dir.is_dir():
            assert reported == []
            continue
        run = run or Run(run_dir)
        run.update()
        assert run.all_problems() == [] or [p.file for p in run.all_problems()] == ["meta.json"]

        scalars = _complete_lines(run_dir / "scalars.r0.jsonl", strict_json) if reported else []
        layers = _complete_lines(run_dir / "layers.r0.jsonl", strict_json) if reported else []
        loss = run.scalar("loss")
        # Every complete line was read, exactly once, in order, with no gap.
        assert loss.steps.tolist() == [r["step"] for r in scalars] == list(range(len(scalars)))
        assert run.acts.step_array().tolist() == [r["step"] for r in layers if r["kind"] == "acts"]
        assert run.params.step_array().tolist() == [r["step"] for r in layers if r["kind"] == "params"]
        # Every step the writer finished is on disk.
        if reported:
            assert reported == list(range(len(reported)))
            assert len(scalars) >= len(reported)
            assert run.acts.step_array().tolist()[: len(reported)] == reported
            assert run.acts.names == ["layer0", "layer1", "layer2", "layer3"]
        checked_steps += len(reported)
        assert run.meta.status == "running" and run.status() == "crashed"
    assert checked_steps > 0  # the kills did not all land before the first step
