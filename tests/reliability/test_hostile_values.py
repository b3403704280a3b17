"""What training code hands the Monitor never stops the training, and what it writes stays readable.

* Hyperparameters JSON cannot hold (``10**30``, a tuple key, an object whose ``str`` raises,
  a cycle, nesting over 255 levels, a lone surrogate) are stored as text with a warning
  naming each, and monitoring goes on: every later record is written and read back.
* ``mon.log(0, loss=10**400)`` records an infinite loss instead of raising ``OverflowError``.
* ``meta.json`` gets the same mode as the data files (the umask decides), so another user
  who can read the data can read the hyperparameters and the status too.
* A forked child that exits normally leaves the parent's run running and its files untouched.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from core import Run
from monitor import Monitor
from monitor._writer import MonitoringWarning

ROOT = Path(__file__).resolve().parents[2]


class _NoText:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


def _nested(depth: int) -> dict:
    top = cur = {}
    for _ in range(depth):
        cur["a"] = {}
        cur = cur["a"]
    return top


def _cycle() -> list:
    c: list = []
    c.append(c)
    return c


BAD_HPARAMS = {"huge": 10**30, (1, 2): "tuple key", "no_text": _NoText(), "cycle": _cycle(), "deep": _nested(300),
               "sur\ud800rogate": "value\udc80"}


@pytest.mark.parametrize("key", list(BAD_HPARAMS), ids=lambda k: repr(k)[:12])
def test_a_hyperparameter_json_cannot_hold_is_stored_as_text_and_monitoring_goes_on(tmp_path, key):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Monitor(tmp_path, "r", heartbeat=0, every=1, hparams={"lr": 0.01, key: BAD_HPARAMS[key]}) as mon:
            for step in range(5):
                mon.activation(step, "fc1", np.ones((4, 3)), kind="relu")
                mon.log(step, loss=1.0 / (step + 1))
    run = Run(tmp_path / "r")
    run.update()
    assert run.meta.hparams["lr"] == 0.01 and run.meta.status == "finished"
    assert len(run.scalar("loss")) == 5 and len(run.acts) == 5 and run.all_problems() == []
    messages = [str(w.message) for w in caught if issubclass(w.category, MonitoringWarning)]
    assert messages and all("free disk space" not in m.lower() for m in messages)
    shown = repr(key)[:10].strip("'(") if not isinstance(key, str) else key[:3]
    assert any("stored as text" in m or "with escapes" in m for m in messages), messages
    assert any(shown in m for m in messages), (shown, messages)
    stored = [k for k in run.meta.hparams if k != "lr"]
    assert len(stored) == 1 and isinstance(run.meta.hparams[stored[0]], (str, dict, list, int))


def test_names_with_lone_surrogates_are_written_with_escapes(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MonitoringWarning)
        with Monitor(tmp_path, "r", heartbeat=0, every=1) as mon:
            for step in range(3):
                mon.activation(step, "fc\ud800", np.ones((4, 3)), kind="relu")
                mon.log(step, loss=1.0, **{"acc\udc80": 0.5})
    run = Run(tmp_path / "r")
    run.update()
    assert run.acts.names == ["fc\\ud800"] and len(run.scalar("acc\\udc80")) == 3 and len(run.acts) == 3


def test_a_loss_too_large_for_a_float_is_recorded_as_infinite(tmp_path):
    with Monitor(tmp_path, "r", heartbeat=0) as mon:
        mon.log(0, loss=10**400, other=-(10**400))
        mon.log(1, loss=1.0)
    run = Run(tmp_path / "r")
    run.update()
    assert run.scalar("loss").values.tolist()[0] == float("inf")
    assert run.scalar("other").values.tolist() == [float("-inf")]
    assert any(f.rule == "nan_loss" for f in run.findings)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_meta_json_follows_the_umask_like_the_data_files(tmp_path, umask):
    old = os.umask(umask)
    try:
        with Monitor(tmp_path, "r", heartbeat=1, hparams={"lr": 0.1}) as mon:
            mon.log(0, loss=1.0)
            running = stat.S_IMODE(os.stat(tmp_path / "r" / "meta.json").st_mode)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "r").iterdir()}
    assert modes["meta.json"] == running == 0o644 & ~umask, modes
    assert len(set(modes.values())) == 1, modes


CHILD = r"""
import os, sys, time
from monitor import Monitor
with Monitor(sys.argv[1], "parent", heartbeat=0) as mon:
    mon.log(0, loss=1.0)
    pid = os.fork()
    if pid == 0:
        # the child inherits the open Monitor and exits normally: through the with block and atexit
        sys.exit(0)
    os.waitpid(pid, 0)
    with open(os.path.join(sys.argv[1], "parent", "meta.json")) as f:
        print("AFTER_CHILD", f.read().replace("\n", " "), flush=True)
    mon.log(1, loss=0.5)
"""


def test_a_forked_child_exiting_leaves_the_parents_run_alone(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    after_child = json.loads(r.stdout.split("AFTER_CHILD", 1)[1])
    assert after_child["status"] == "running" and after_child["ended"] is None
    run = Run(tmp_path / "parent")
    run.update()
    assert run.meta.status == "finished" and run.scalar("loss").steps.tolist() == [0, 1]
    assert run.all_problems() == []
