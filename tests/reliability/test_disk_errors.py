"""A write that fails (disk full, I/O error, read-only folder) never stops the training.

Each case runs a real training loop in its own process (so a failure of the mechanism
shows as a crash or a hang, not as a caught exception in the test) and checks: the loop
ran every step, exactly one ``MonitoringWarning`` was issued and it names the cause,
monitoring stopped, and every record written before the failure reads back intact.

Disk full uses a tiny tmpfs when this process may mount one (root), else ``/dev/full``;
the read-only folder uses a read-only bind mount, else a log directory below a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core import ConfigError, Run
from monitor import Monitor

ROOT = Path(__file__).resolve().parents[2]
STEPS = 300

TRAIN = """
import json, os, sys, warnings
import numpy as np
from monitor import Monitor, MonitoringWarning
{patch}
logdir, name, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(0)
caught = []
done = 0
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    mon = Monitor(logdir, name if name != "-" else None, every=1, rank=rank, heartbeat=0.05)
    {enter}
    for step in range({steps}):
        x = rng.standard_normal((32, 16))
        for i in range(8):
            mon.activation(step, f"fc{{i}}", np.maximum(0, x), kind="relu")
        mon.log(step, loss=1.0 / (step + 1), seq=float(step))
        if step % 10 == 0:
            mon.set_meta(hparams={{"at": step}})
        done += 1
    mon.close()
print(json.dumps({{"done": done, "failed": mon.failed, "run_dir": str(mon.run_dir),
                  "warnings": [[w.category.__name__, str(w.message)] for w in caught]}}))
"""


def _train(logdir: Path, name: str = "-", rank: int = 0, patch: str = "", enter: str = "mon.open()") -> dict:
    code = TRAIN.format(patch=textwrap.dedent(patch), enter=enter, steps=STEPS)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", code, str(logdir), name, str(rank)], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["stderr"] = res.stderr
    return out


def _one_warning(out: dict, cause: str) -> str:
    assert out["done"] == STEPS, "the training stopped"
    assert out["failed"] is True
    assert len(out["warnings"]) == 1, out["warnings"]
    category, message = out["warnings"][0]
    assert category == "MonitoringWarning"
    assert "stopped monitoring" in message and "Training continues" in message and cause in message
    return message


def _lines(run_dir: Path) -> int:
    """Newline-terminated lines in the regular data files (not following a symlink to /dev/full)."""
    return sum(p.read_bytes().count(b"\n") for p in run_dir.glob("*.jsonl") if not p.is_symlink())


def _check_intact(run_dir: Path, stream: str = "scalars", rank: int = 0) -> int:
    """Everything on disk reads back: no problem, complete lines all read, steps 0..n-1. Returns n."""
    run = Run(run_dir)
    run.update()
    assert run.all_problems() == [], [str(p) for p in run.all_problems()]
    lines = _lines(run_dir)
    assert run.records_read == lines
    seq = run.scalar("seq", rank)
    n = len(seq)
    assert np.array_equal(seq.steps, np.arange(n)) and np.array_equal(seq.values, np.arange(n, dtype=float))
    acts = run.acts.step_array()
    assert np.array_equal(acts, np.arange(len(acts)))
    return n


def _can_mount(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    if os.geteuid() != 0:
        return False
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(probe)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], check=True)
    return ok


@pytest.fixture
def mounts():
    """Mount helper that unmounts everything it mounted, in reverse order."""
    done: list[Path] = []

    def mount(*args: str, target: Path) -> None:
        subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
        done.append(target)

    yield mount
    for target in reversed(done):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_disk_full(tmp_path, mounts):
    if _can_mount(tmp_path):
        disk = tmp_path / "disk"
        disk.mkdir()
        mounts("-t", "tmpfs", "-o", "size=192k", "tmpfs", target=disk)
        out = _train(disk, "full")
        run_dir = disk / "full"
        ranks = 0
    else:  # /dev/full: every write fails with ENOSPC
        run_dir = tmp_path / "full"
        run_dir.mkdir()
        (run_dir / "meta.json").write_text('{"format": "babysitter", "format_version": 1, "run": "full"}')
        (run_dir / "scalars.r1.jsonl").symlink_to("/dev/full")
        out = _train(tmp_path, "full", rank=1)
        ranks = 1
    _one_warning(out, "No space left on device")
    n = _check_intact(run_dir, rank=ranks)
    if ranks == 0:
        assert 0 < n < STEPS, "the tiny disk should have filled part way"
        run = Run(run_dir)
        run.update()
        assert "at" in run.meta.hparams  # meta.json, replaced atomically, is still whole


EIO_PATCH = """
import errno, os
_write, _calls = os.write, [0]
def write(fd, data):
    _calls[0] += 1
    if _calls[0] > 37:
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    return _write(fd, data)
os.write = write
"""


def test_io_error(tmp_path):
    out = _train(tmp_path, "eio", patch=EIO_PATCH)
    _one_warning(out, "Input/output error")
    run_dir = tmp_path / "eio"
    _check_intact(run_dir)
    run = Run(run_dir)
    run.update()
    # Exactly the 37 lines handed over before the error, each read once.
    assert run.records_read == 37
    assert _lines(run_dir) == 37
    assert run.meta.status == "running"  # the final meta.json could not be written either


def _read_only_logdir(tmp_path: Path, mounts) -> Path:
    if _can_mount(tmp_path):
        src, ro = tmp_path / "src", tmp_path / "ro"
        src.mkdir()
        ro.mkdir()
        mounts("--bind", str(src), target=ro)
        mounts("-o", "remount,bind,ro", str(ro), target=ro)
        with pytest.raises(OSError):
            (ro / "x").mkdir()
        return ro
    (tmp_path / "file").write_text("not a folder")
    return tmp_path / "file" / "logs"


def test_read_only_folder_is_a_config_error_when_opened_before_training(tmp_path, mounts):
    logdir = _read_only_logdir(tmp_path, mounts)
    with pytest.raises(ConfigError, match="cannot create"):
        Monitor(logdir, "r", heartbeat=0).open()


def test_read_only_folder_never_stops_a_training_that_opens_lazily(tmp_path, mounts):
    logdir = _read_only_logdir(tmp_path, mounts)
    out = _train(logdir, "r", enter="pass")  # the first mon.activation opens the run
    _one_warning(out, "could not create the run folder")
    assert not (logdir / "r").exists()


def test_read_only_run_folder_for_a_second_rank(tmp_path, mounts):
    """Rank 0 wrote its records; rank 1 finds the folder read-only: one warning, rank 0's records intact."""
    if not _can_mount(tmp_path):
        pytest.skip("needs a read-only bind mount (root); covered by the other read-only cases")
    src = tmp_path / "src"
    src.mkdir()
    first = _train(src, "shared")
    assert first["warnings"] == [] and first["failed"] is False
    ro = tmp_path / "ro"
    ro.mkdir()
    mounts("--bind", str(src), target=ro)
    mounts("-o", "remount,bind,ro", str(ro), target=ro)
    out = _train(ro, "shared", rank=1, enter="pass")
    _one_warning(out, "Read-only file system")
    assert _check_intact(ro / "shared") == STEPS
    assert not list((src / "shared").glob("*.r1.jsonl"))
