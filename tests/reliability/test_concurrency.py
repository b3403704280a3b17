"""Eight data-parallel ranks write one run folder while a reader follows it.

Each rank is its own process with ``Monitor(name=same, rank=r)`` and writes scalars at
every step and layer statistics every other step, as fast as it can. A reader polls
``LogDir.refresh()`` meanwhile (what the dashboard does on each tick). At the end the
reader must have seen every line exactly once: per rank, the steps of its scalars are
0..N-1 with no gap and no duplicate, ``records_by_rank`` equals the lines each rank
wrote, and no line was ever torn or interleaved (no problem reported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from core import LogDir

ROOT = Path(__file__).resolve().parents[2]
RANKS = 8
STEPS = 400

RANK = """
import sys, numpy as np
from monitor import Monitor
logdir, rank, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(rank)
mon = Monitor(logdir, name="ddp", rank=rank, every=2, heartbeat=0)
for step in range(steps):
    for i in range(6):
        mon.activation(step, f"fc{i}", rng.standard_normal((16, 64)), kind="tanh")
    mon.log(step, loss=rank + 1.0 / (step + 1), rank=float(rank), seq=float(step))
mon.close()
print(mon._writer.lines_written)
"""


def test_eight_ranks_one_folder_every_record_read_exactly_once(tmp_path):
    logdir = tmp_path / "runs"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    # All ranks start at once: whichever creates "ddp" first, rank 0 must join it (regression:
    # rank 0 used to move to "ddp-2" when another rank had made the folder).
    procs = [subprocess.Popen([sys.executable, "-c", RANK, str(logdir), str(r), str(STEPS)], stdout=subprocess.PIPE,
                              text=True, env=env) for r in range(RANKS)]
    reader = LogDir(logdir)
    polls = 0
    while any(p.poll() is None for p in procs):
        reader.mark_dirty("ddp")
        reader.mark_dirty(None)
        reader.refresh()
        polls += 1
        time.sleep(0.01)
    written = {}
    for r, p in enumerate(procs):
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        written[r] = int(out.strip())
    reader.mark_dirty("ddp")
    reader.refresh()
    run = reader.get("ddp")
    assert run is not None
    assert run.all_problems() == [], [str(p) for p in run.all_problems()]
    assert run.pending() == {}
    assert run.records_by_rank == written
    for r in range(RANKS):
        seq = run.scalar("seq", r)
        assert np.array_equal(seq.steps, np.arange(STEPS)), f"rank {r}: steps are not 0..{STEPS - 1} exactly once"
        assert np.array_equal(seq.values, np.arange(STEPS, dtype=float))
        assert np.all(run.scalar("rank", r).values == r)
    # Layer statistics come from the lowest rank; one row per logged step, read once.
    assert np.array_equal(run.acts.step_array(), np.arange(0, STEPS, 2))
    assert run.meta.status == "finished"
    total = sum(written.values())
    assert total == sum(len(p.read_bytes().splitlines()) for p in (logdir / "ddp").glob("*.jsonl"))
    assert polls > 5, "the reader did not run while the ranks wrote"
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "concurrency.json").write_text(json.dumps({"ranks": RANKS, "records_checked": total, "reader_polls": polls}))
    print(f"concurrency: {RANKS} ranks, {total} records, {polls} reader polls")
