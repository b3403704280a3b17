"""Smaller edges: what the writer refuses, what statistics survive, what the server and ``check`` do with odd input.

* Steps at or past 2**62 (which a reader drops) and steps with a fraction (which were cut
  silently) are refused at the writer with a ``ConfigError``; integral floats and numpy
  integers are taken.
* Values at float64's limits (``±1.797e308``) and float128 arrays keep their layer's
  statistics; a complex array is refused with a warning saying why, never cut silently.
* A run name starting with ``.`` (never listed) or holding a lone surrogate is a ``ConfigError``.
* Every dashboard callback answers a malformed argument (``?step=²``, a slider value of the
  wrong type, a version store that is a string...) without an HTTP 500.
* ``babysitter check LOGDIR`` does not follow a symlinked run folder out of the log directory.
* An overlay request naming 200,000 runs looks up at most ``MAX_OVERLAY`` of them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import LogDir, Run
from core.errors import ConfigError
from dashboard import create_app
from dashboard.compare_figures import MAX_OVERLAY
from monitor import Monitor

from ._dashclient import PageDriver, flask_transport, parse_outputs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("step", [2**62, -(2**62), 2**70, 3.5, "3", None, True, float("nan")])
def test_steps_a_reader_would_drop_or_misread_are_refused_at_the_writer(tmp_path, step):
    with Monitor(tmp_path, "r", heartbeat=0, every=1) as mon:
        with pytest.raises(ConfigError, match="step"):
            mon.log(step, loss=1.0)
        with pytest.raises(ConfigError, match="step"):
            mon.activation(step, "fc1", np.ones((2, 2)), kind="relu")
        mon.log(np.int64(4), loss=1.0)
        mon.log(5.0, loss=1.0)
        mon.log(2**62 - 1, loss=1.0)
    run = Run(tmp_path / "r")
    run.update()
    assert run.scalar("loss").steps.tolist() == [4, 5, 2**62 - 1] and run.all_problems() == []


def test_values_at_the_limits_of_float64_and_float128_keep_their_statistics(tmp_path):
    big = np.array([[1.797e308, -1.797e308, 0.0, 1.0]] * 4)
    wide = np.ones((4, 3), dtype=np.longdouble) * 3
    with Monitor(tmp_path, "r", heartbeat=0, every=1) as mon:
        mon.activation(0, "big", big, kind="linear")
        mon.activation(0, "wide", wide, kind="relu")
        mon.weights(0, "W", np.array([1e308, 1e300]), update=np.array([1e305, 1.0]))
        mon.input(0, big)
        mon.log(0, loss=1.0)
    run = Run(tmp_path / "r")
    run.update()
    acts = run.acts
    b, w = acts.index["big"], acts.index["wide"]
    assert acts.field("max")[0, b] == 1.797e308 and acts.field("min")[0, b] == -1.797e308
    assert np.isfinite(acts.field("std")[0, b]) and np.isfinite(acts.field("mean")[0, b])
    _, lo, hi, counts = acts.histograms()
    assert counts[0, b].sum() == 16 and hi[0, b] == 1.797e308
    assert acts.field("mean")[0, w] == 3.0 and counts[0, w].sum() == 12
    assert run.params.field("upd_ratio")[0, 0] == pytest.approx(1e-3, rel=1e-2)
    assert run.input_stats()["max"].tolist() == [1.797e308]


def test_a_complex_layer_output_is_refused_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="monitor"):
        with Monitor(tmp_path, "r", heartbeat=0, every=1) as mon:
            mon.activation(0, "cplx", np.array([[1 + 2j, 3 - 1j]]), kind="linear")
            mon.activation(0, "real", np.ones((2, 2)), kind="linear")
            mon.log(0, loss=1.0)
    assert any("cplx" in r.getMessage() and "complex" in r.getMessage() for r in caplog.records)
    run = Run(tmp_path / "r")
    run.update()
    assert run.acts.names == ["real"]


@pytest.mark.parametrize("name", [".hidden", "..x", "run\ud800"])
def test_run_names_that_would_never_be_listed_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="run name"):
        Monitor(tmp_path, name).open()


ODD = ["²", "abc", {"a": 1}, [1, "x"], 1.5, True, -1, 10**30, None, ""]


def _app_over(tmp_path) -> tuple[object, PageDriver]:
    with Monitor(tmp_path, "r", heartbeat=0, every=1, hparams={"lr": 0.1}) as mon:
        for s in range(4):
            mon.activation(s, "fc1", np.ones((4, 3)) * s, kind="relu")
            mon.weights(s, "W", np.ones(3), update=np.ones(3) * 1e-3)
            mon.log(s, loss=1.0, val_acc=0.5)
    ld = LogDir(tmp_path)
    ld.refresh()
    app = create_app(ld)
    return app, PageDriver(*flask_transport(app))


def test_every_callback_answers_malformed_arguments_without_a_server_error(tmp_path):
    app, driver = _app_over(tmp_path)
    for path in ("/run/r/layers", "/run/r/updates", "/run/r", "/compare", "/"):
        driver.visit(path, "?step=²&layer=%00&param=²")
    assert driver.errors == []
    failed = []
    for dep in driver.deps:
        outs = parse_outputs(dep["output"])
        for odd in ODD:
            def val(x: dict, odd=odd) -> dict:
                return dict(x, value=odd)

            body = {"output": dep["output"], "outputs": outs if dep["output"].startswith("..") else outs[0],
                    "inputs": [val(x) for x in dep["inputs"]], "state": [val(x) for x in dep["state"]],
                    "changedPropIds": [f"{dep['inputs'][0]['id']}.{dep['inputs'][0]['property']}"]}
            status, data = driver.post("/_dash-update-component", body)
            if status == 500:
                failed.append((dep["output"][:80], odd))
    assert failed == [], "\n".join(map(repr, failed))


def test_an_overlay_request_naming_200000_runs_looks_up_only_the_ones_it_draws(tmp_path):
    app, driver = _app_over(tmp_path)
    ctx = app.babysitter_context
    looked = []
    real = ctx.run
    ctx.run = lambda name: looked.append(name) or real(name)  # type: ignore[method-assign]
    dep = next(d for d in driver.deps if d["output"].startswith("..compare-loss"))
    body = {"output": dep["output"], "outputs": parse_outputs(dep["output"]),
            "inputs": [dict(dep["inputs"][0], value=["r"] + [f"run{i}" for i in range(200_000)])],
            "state": [], "changedPropIds": ["compare-picked.data"]}
    status, data = driver.post("/_dash-update-component", body)
    assert status == 200
    assert len(looked) <= 2 * MAX_OVERLAY, len(looked)  # the loss and the accuracy overlay


def test_check_does_not_follow_a_symlinked_run_out_of_the_log_directory(tmp_path):
    with Monitor(tmp_path / "outside", "secret-run", heartbeat=0) as mon:
        mon.log(0, loss=float("nan"))
    with Monitor(tmp_path / "logs", "mine", heartbeat=0) as mon:
        mon.log(0, loss=1.0)
    (tmp_path / "logs" / "link").symlink_to(tmp_path / "outside" / "secret-run")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "babysitter", "check", str(tmp_path / "logs")], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mine" in r.stdout and "link" not in r.stdout and "nan_loss" not in r.stdout
