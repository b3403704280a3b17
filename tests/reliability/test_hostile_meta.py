"""A ``meta.json`` valid by the format but hostile in its values crashes nothing.

Two runs: one whose ``pid`` is 2**31 on this host (``os.kill`` would raise
``OverflowError``), one whose hyperparameters are nested 1,000 levels deep (orjson reads up
to 1,024; Python code that recurses over them hits the recursion limit). ``check``,
``compare`` and ``report`` run as real commands and must succeed; every page of the
dashboard, driven through its callbacks, must answer without an HTTP 500; the deep value is
reported as a problem of ``meta.json``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import LogDir
from dashboard import create_app
from monitor import Monitor

from ._dashclient import PageDriver, flask_transport

ROOT = Path(__file__).resolve().parents[2]
DEPTH = 1000


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("meta") / "runs"
    for name in ("bigpid", "deep", "plain"):
        with Monitor(d, name, heartbeat=0, every=1, hparams={"lr": 0.1}, num_classes=3) as mon:
            for s in range(5):
                mon.activation(s, "fc1", np.maximum(0, np.random.default_rng(s).standard_normal((8, 4))), kind="relu")
                mon.log(s, loss=1.0 / (s + 1), val_acc=0.1 * s)
    meta = json.loads((d / "bigpid" / "meta.json").read_text())
    meta.update(status="running", pid=2**31, host=socket.gethostname())
    (d / "bigpid" / "meta.json").write_text(json.dumps(meta))
    text = (d / "deep" / "meta.json").read_text()
    deep = '{"a":' * DEPTH + "1" + "}" * DEPTH
    (d / "deep" / "meta.json").write_text(text.replace('"lr": 0.1', f'"lr": 0.1, "nested": {deep}', 1))
    return d


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "babysitter", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=180)


def test_the_commands_read_a_huge_pid_and_deep_hyperparameters(logdir, tmp_path):
    r = _cli("check", str(logdir))
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "bigpid (live" in r.stdout  # its files were just written: the heartbeat rule decides
    r = _cli("compare", str(logdir))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "deep" in r.stdout and "bigpid" in r.stdout
    for target in ("bigpid", "deep"):
        r = _cli("report", str(logdir / target), "-o", str(tmp_path / f"{target}.html"))
        assert r.returncode == 0, r.stderr[-2000:]
    r = _cli("report", str(logdir), "-o", str(tmp_path / "all.html"))
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_dashboard_answers_every_page_of_such_runs(logdir):
    ld = LogDir(logdir)
    ld.refresh()
    assert ld.get("bigpid").status() == "live"
    problems = [p.message for p in ld.get("deep").all_problems()]
    assert any("nested more than" in m for m in problems), problems
    driver = PageDriver(*flask_transport(create_app(ld)))
    for path in ("/", "/compare", "/run/bigpid", "/run/deep", "/run/deep/layers", "/run/deep/updates"):
        driver.visit(path)
    assert driver.errors == []
