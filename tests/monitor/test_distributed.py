"""torchrun: two real processes on the gloo backend share one run folder, and ``check``
says which rank shows a problem the other does not.

Each test launches ``torchrun --nproc_per_node 2 examples/torchrun_ddp.py`` (DDP on the
CPU); the Monitor is given no rank and no name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core import Run

ROOT = Path(__file__).resolve().parents[2]


def _torchrun(logdir: Path, *args: str) -> Path:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "examples" / "torchrun_ddp.py"), "--logdir", str(logdir), "--steps", "40", *args],
        capture_output=True, text=True, timeout=240, env=env, cwd=logdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = [p for p in logdir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs  # both ranks wrote into the one folder rank 0 named
    return runs[0]


def _check(run_dir: Path) -> tuple[int, list[dict]]:
    proc = subprocess.run([sys.executable, "-m", "babysitter", "check", "--json", str(run_dir)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.returncode, json.loads(proc.stdout)


def test_both_ranks_write_one_run_that_rank_0_names_and_check_is_silent(tmp_path):
    run_dir = _torchrun(tmp_path)
    names = sorted(p.name for p in run_dir.iterdir())
    assert {"meta.json", "scalars.r0.jsonl", "scalars.r1.jsonl", "layers.r0.jsonl", "layers.r1.jsonl"} <= set(names)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["world_size"] == 2 and meta["framework"] == "torch"
    assert [lay["name"] for lay in meta["layers"]] == ["fc1", "relu", "fc2"]
    for rank in (0, 1):
        run = Run(run_dir, stats_rank=rank)
        run.update()
        assert run.problem_count == 0
        assert list(run.scalar("loss", rank).steps) == list(range(40))
        assert run.scalar("lr", rank).values[0] == 0.1
        assert run.acts.step_array().tolist() == [0, 10, 20, 30]  # every rank records its own statistics
        assert run.acts.names == ["fc1", "relu", "fc2"]
    # The ranks train on different shards: their losses differ, their weights (synchronised) do not.
    r0, r1 = Run(run_dir, stats_rank=0), Run(run_dir, stats_rank=1)
    r0.update(), r1.update()
    assert r0.scalar("loss", 0).values[0] != r0.scalar("loss", 1).values[0]
    assert r0.params.field("w_norm")[-1].tolist() == r1.params.field("w_norm")[-1].tolist()
    code, findings = _check(run_dir)
    assert (code, findings) == (0, [])


def test_check_names_the_rank_whose_relu_units_are_dead(tmp_path):
    run_dir = _torchrun(tmp_path, "--plant", "dead")
    code, findings = _check(run_dir)
    dead = [f for f in findings if f["rule"] == "dead_relu"]
    assert len(dead) == 1 and dead[0]["layers"] == ["relu"]
    assert dead[0]["message"].startswith("On rank 1 (not on rank 0): relu: 100% of units are dead")


def test_check_names_the_rank_whose_loss_became_nan(tmp_path):
    run_dir = _torchrun(tmp_path, "--plant", "nan")
    code, findings = _check(run_dir)
    assert code == 1
    nan = [f for f in findings if f["rule"] == "nan_loss"]
    assert len(nan) == 1 and nan[0]["step"] == 39
    assert nan[0]["message"].startswith("On rank 1 (not on rank 0): The loss became NaN at step 39")
