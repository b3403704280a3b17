"""Terminal escapes in a run never reach the terminal raw: ``babysitter check`` and ``compare`` print them escaped.

A run whose folder name, hyperparameter names, finding rule id, layers, message and fix hold
clear-screen, window-title, OSC 8 hyperlink, colour, BEL, CR and bidi-override sequences is
checked and compared by the real command in a subprocess; no control character other than
the newlines between lines may appear in what it prints, and the escaped form must be there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import Finding
from monitor import Monitor

ROOT = Path(__file__).resolve().parents[2]
CLEAR = "\x1b[2J\x1b[H"
TITLE = "\x1b]0;pwned\x07"
LINK = "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07"
RUN = f"run{CLEAR}{TITLE}"
HP = f"lr{LINK}"


def _raw_controls(text: str) -> list[str]:
    return sorted({repr(ch) for ch in text if ch != "\n" and not ch.isprintable()})


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("term") / "runs"
    for name, lr in ((RUN, 0.1), ("plain", 0.01)):
        with Monitor(d, name, heartbeat=0, every=1, hparams={HP: lr, "seed\rX": 1}) as mon:
            for s in range(4):
                mon.activation(s, f"fc{TITLE}", np.ones((4, 3)), kind="relu")
                mon.log(s, loss=1.0 / (s + 1), val_acc=0.1 * s)
            mon.finding(Finding(f"rule{CLEAR}", "error", 2, layers=(f"fc{TITLE}",),
                                message=f"message{LINK}\rOVERWRITTEN\x1b[31m\u202e", fix=f"fix\x07{TITLE}"))
    return d


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "babysitter", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_check_prints_run_names_rules_layers_messages_and_fixes_escaped(logdir):
    for target in (str(logdir), str(logdir / RUN)):
        r = _cli("check", target)
        assert r.returncode == 1, r.stderr
        assert _raw_controls(r.stdout + r.stderr) == []
        assert "\\x1b[2J" in r.stdout and "\\x1b]0;pwned\\x07" in r.stdout  # run name, rule, layer
        assert "\\x1b]8;;https://evil.example\\x07click" in r.stdout and "\\rOVERWRITTEN" in r.stdout
        assert "\\u202e" in r.stdout and "fix\\x07" in r.stdout


def test_compare_prints_hyperparameter_names_escaped_also_in_its_errors(logdir):
    r = _cli("compare", str(logdir))
    assert r.returncode == 0, r.stderr
    assert _raw_controls(r.stdout + r.stderr) == []
    bad = _cli("compare", str(logdir), "--sort", f"nope{CLEAR}")
    assert bad.returncode == 2
    assert _raw_controls(bad.stdout + bad.stderr) == []
    assert "nope\\x1b[2J" in bad.stderr and "\\x1b]8;;" in bad.stderr  # the asked name and the run's columns
