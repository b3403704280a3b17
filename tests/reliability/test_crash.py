"""A training process killed with SIGKILL at random moments loses no complete record.

Each kill: a forked child trains with a ``Monitor`` (scalars every step, statistics of 24
layers, 24 parameters and the input every step, ``meta.json`` rewritten every 5 steps)
and is killed after a random delay, at any point of its life: while creating the run,
while writing ``meta.json``, in the middle of a line. The child counts, in a shared
memory map that survives the kill, the steps whose records it had handed to the kernel.

After all kills every run folder must read without an exception and without a problem
(a torn last line is reported as pending, not as corrupt), hold exactly the records of
steps 0..n-1 with n the acknowledged count (or one more: the step in flight), and show as
crashed. A separate test checks the heartbeat rule used when the pid cannot be checked.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from core import LogDir, Run
from core.reader import STALE_AFTER

KILLS = 80
ZYGOTE = Path(__file__).with_name("_zygote.py")
ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > end:
            raise AssertionError(f"process {pid} survived SIGKILL for {timeout} s")
        time.sleep(0.002)


def _start_zygote(logdir: Path, ackdir: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(ZYGOTE), str(logdir), str(ackdir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _fork(zygote: subprocess.Popen, index: int, seed: int) -> int:
    zygote.stdin.write(f"{index} {seed}\n")
    zygote.stdin.flush()
    return int(zygote.stdout.readline())


def _complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _check_steps(what: str, steps: np.ndarray, acked: int) -> int:
    n = len(steps)
    assert np.array_equal(steps, np.arange(n)), f"{what}: steps are not 0..{n - 1}: {steps[:20]}..."
    assert acked <= n <= acked + 1, f"{what}: {n} records on disk, but the training had handed over {acked}"
    return n


def test_sigkill_at_random_moments_loses_no_complete_record(tmp_path, record_property):
    logdir, ackdir = tmp_path / "runs", tmp_path / "ack"
    logdir.mkdir()
    ackdir.mkdir()
    rnd = random.Random(20261121)
    zygote = _start_zygote(logdir, ackdir)
    try:
        for i in range(KILLS):
            # A third of the kills land in the first milliseconds (creating the run, writing meta.json).
            delay = rnd.uniform(0, 0.01) if i % 3 == 0 else rnd.uniform(0.01, 0.25)
            pid = _fork(zygote, i, rnd.randrange(1 << 30))
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            _wait_dead(pid)
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=10)

    checked = torn = with_records = listed = 0
    for i in range(KILLS):
        path = logdir / f"k{i:03d}"
        ack_file = ackdir / str(i)
        acked = struct.unpack("<q", ack_file.read_bytes())[0] if ack_file.exists() and ack_file.stat().st_size == 8 else 0
        if not path.exists():
            assert acked == 0
            continue
        run = Run(path)
        run.update()
        files = sorted(p.name for p in path.glob("*.jsonl"))
        if (path / "meta.json").exists():
            listed += 1
            assert run.status() == "crashed"
        if not files:  # killed before the first record: nothing to lose
            assert acked == 0
            continue
        with_records += 1
        # Only a torn last line is allowed, and it is pending, not a problem.
        assert run.all_problems() == [], [str(p) for p in run.all_problems()]
        pending = run.pending()
        for name, nbytes in pending.items():
            data = (path / name).read_bytes()
            assert not data.endswith(b"\n") and data.rindex(b"\n") == len(data) - nbytes - 1
        torn += len(pending)
        # Every newline-terminated line is one record, each read exactly once.
        lines = sum(_complete_lines(path / f) for f in files)
        assert run.records_read == lines
        seq = run.scalar("seq")
        n = _check_steps(f"{path.name} scalars", seq.steps, acked)
        assert np.array_equal(seq.values, np.arange(n, dtype=float))
        assert np.allclose(run.scalar("loss").values, 1.0 / (np.arange(n) + 1))
        for what, steps in (("acts", run.acts.step_array()), ("params", run.params.step_array()),
                            ("input", run.input_stats()["step"])):
            m = _check_steps(f"{path.name} {what}", np.asarray(steps, dtype=np.int64), acked)
            assert m in (n, n + 1)
        if len(run.acts):
            assert run.layer_order() == [f"fc{j}" for j in range(24)]
        # meta.json is whole: written atomically, never half.
        assert run.meta.hparams.get("seed") is not None
        assert run.meta.status == "running"
        assert run.status() == "crashed"
        checked += lines

    assert with_records >= KILLS * 0.5, f"only {with_records} of {KILLS} children wrote anything"
    logdir_view = LogDir(logdir)
    logdir_view.refresh()
    assert len(logdir_view.runs()) == listed
    assert all(r.status() == "crashed" for r in logdir_view.runs())
    record_property("kills", KILLS)
    record_property("records_checked", checked)
    record_property("torn_last_lines", torn)
    _report("crash", kills=KILLS, runs_with_records=with_records, records_checked=checked, torn_last_lines=torn)


def _report(name: str, **figures) -> None:
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"{name}: {figures}")


HEARTBEAT_CHILD = """
import sys, time
from monitor import Monitor
mon = Monitor(sys.argv[1], name="hb", heartbeat=0.1)
mon.log(0, loss=1.0)
print("ready", flush=True)
time.sleep(120)
"""


def _rewrite_meta(path: Path, **fields) -> None:
    meta = json.loads((path / "meta.json").read_text())
    meta.update(fields)
    tmp = path / ".meta.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, path / "meta.json")


def test_heartbeat_age_decides_when_the_pid_cannot_be_checked(tmp_path):
    """A run from another host (pid meaningless here) is live while its heartbeat beats, crashed once it stops."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", HEARTBEAT_CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        run_dir = tmp_path / "hb"
        _rewrite_meta(run_dir, host="elsewhere-" + socket.gethostname(), pid=1)
        run = Run(run_dir)
        run.update()
        assert run.meta.host.startswith("elsewhere-")
        # The training writes nothing more; only its heartbeat keeps the run live.
        data_mtime = (run_dir / "scalars.r0.jsonl").stat().st_mtime
        hb = run_dir / "heartbeat"
        first = hb.stat().st_mtime
        end = time.monotonic() + 10
        while hb.stat().st_mtime <= max(first, data_mtime, (run_dir / "meta.json").stat().st_mtime):
            assert time.monotonic() < end, "the heartbeat file was not touched"
            time.sleep(0.05)
        now = time.time()
        assert run.last_activity() == hb.stat().st_mtime
        assert run.status(now=now) == "live"
        assert run.status(now=run.last_activity() + STALE_AFTER + 1) == "crashed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # Killed: the heartbeat stops; the run turns crashed once it is stale_after old, and not before.
    time.sleep(0.3)
    last = run.last_activity()
    assert run.status(now=last + 2.0, stale_after=2.5) == "live"
    assert run.status(now=last + 3.0, stale_after=2.5) == "crashed"
    time.sleep(0.3)
    assert run.last_activity() == last, "something still touched the run after the kill"
    # Same host again: the dead pid alone marks it crashed, at once.
    _rewrite_meta(run_dir, host=socket.gethostname(), pid=proc.pid)
    run.update()
    assert run.status(now=run.last_activity()) == "crashed"
