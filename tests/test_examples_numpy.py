"""The numpy examples reproduce what the lecture shows, read back from the runs they write."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from core import Run
from tests._examples import load_example

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

_load = load_example


@pytest.fixture(scope="module")
def init_runs(tmp_path_factory):
    mod = _load("init_experiment")
    logdir = tmp_path_factory.mktemp("init")
    variants = mod.run_experiment(logdir, n=1000, d=500, layers=10, seed=0)
    runs = {}
    for v in variants:
        run = Run(v.run_dir)
        run.update()
        assert run.all_problems() == [] and run.status() == "finished"
        assert run.layer_order() == [f"fc{i}" for i in range(1, 11)]
        runs[(v.nonlinearity, v.init)] = run
    return mod, variants, runs


def _stds(run: Run) -> np.ndarray:
    order = [run.acts.index[n] for n in run.layer_order()]
    return run.acts.field("std")[0, order]


def test_init_runs_match_the_printed_table(init_runs):
    mod, variants, runs = init_runs
    assert len(variants) == 8
    for v in variants:
        np.testing.assert_allclose(_stds(runs[(v.nonlinearity, v.init)]), v.stds, rtol=1e-12)
    table = mod.format_table(variants)
    assert len(table.splitlines()) == 12 and "tanh Xavier" in table and "relu He" in table
    # The last line reads each column the lecture's way.
    assert table.splitlines()[-1].split() == ["vanishes", "saturated", "holds", "holds",
                                              "vanishes", "explodes", "vanishes", "holds"]


def test_small_init_tanh_collapses(init_runs):
    std = _stds(init_runs[2][("tanh", "small")])
    ratios = std[1:] / std[:-1]
    # 0.01 * sqrt(500) = 0.224: tanh is linear near 0, so each layer scales the std by that.
    assert np.all((ratios > 0.20) & (ratios < 0.245)), ratios
    assert std[9] < 1e-4
    assert std[0] > 0.15


def test_large_init_tanh_saturates(init_runs):
    run = init_runs[2][("tanh", "large")]
    order = [run.acts.index[n] for n in run.layer_order()]
    sat = run.acts.field("sat_frac")[0, order]
    assert np.all(sat[2:] > 0.5), sat
    assert np.isnan(run.acts.field("dead_frac")).all()  # tanh has no dead units


def test_xavier_tanh_keeps_its_scale(init_runs):
    std = _stds(init_runs[2][("tanh", "xavier")])
    assert std.max() / std.min() < 10
    assert std[9] > 0.1


def test_relu_he_keeps_its_scale(init_runs):
    std = _stds(init_runs[2][("relu", "he")])
    assert std.max() / std.min() < 2


def test_relu_xavier_halves_the_variance(init_runs):
    std = _stds(init_runs[2][("relu", "xavier")])
    per_layer = (std[9] / std[0]) ** (1 / 9)
    assert per_layer == pytest.approx(1 / math.sqrt(2), abs=0.04)
    assert std[9] < std[0] / 10


def test_init_experiment_cli(tmp_path, capsys):
    mod = _load("init_experiment")
    assert mod.main(["--logdir", str(tmp_path), "--batch", "50", "--hidden", "20", "--layers", "3"]) == 0
    out = capsys.readouterr().out
    assert "tanh 0.01*randn" in out and len(list(tmp_path.iterdir())) == 8
    verdicts = out.split("\n")[5].split()  # the line under the 3 layers reads each column
    assert verdicts[:2] == ["vanishes", "saturated"] and verdicts[4] == "vanishes"


# -- digits ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return _load("digits_numpy")


def test_digits_trains(digits, tmp_path):
    run_dir = digits.train(tmp_path, epochs=4, name="digits", heartbeat=0)
    assert run_dir == tmp_path / "digits"
    run = Run(run_dir)
    run.update()
    assert run.all_problems() == [] and run.status() == "finished"
    loss = run.scalar("loss").values
    assert loss[0] == pytest.approx(math.log(10), rel=0.10)
    assert loss[-20:].mean() < 0.5 * loss[0]
    val = run.scalar("val_acc")
    assert len(val) == 4 and val.values[-1] > 0.8  # chance is 0.1
    assert run.scalar("train_acc").values[-1] > 0.8
    assert run.meta.num_classes == 10 and run.meta.hparams["lr"] == 0.1
    assert run.layer_order() == ["fc1", "fc2"]
    assert set(run.params.names) == {"W1", "b1", "W2", "b2"}
    w1 = run.params.index["W1"]
    ratio = run.params.field("upd_ratio")[:, w1]
    assert np.all(np.isfinite(ratio)) and np.all(ratio > 0)
    inp = run.input_stats()
    assert abs(inp["mean"][0]) < 0.3  # standardised inputs


def test_digits_momentum_logs_the_applied_update(digits, tmp_path):
    run_dir = digits.train(tmp_path, epochs=1, momentum=0.9, every=1, heartbeat=0)
    run = Run(run_dir)
    run.update()
    i = run.params.index["W1"]
    upd, grad = run.params.field("upd_norm")[:, i], run.params.field("grad_norm")[:, i]
    # With momentum the update is not lr * grad once velocity builds up.
    assert upd[0] == pytest.approx(0.1 * grad[0], rel=1e-6)
    assert not np.allclose(upd[5:], 0.1 * grad[5:], rtol=1e-3)


def test_digits_bad_settings_are_visible(digits, tmp_path):
    raw = Run(digits.train(tmp_path, epochs=1, center_inputs=False, heartbeat=0))
    raw.update()
    assert raw.input_stats()["mean"][0] > 3  # raw 0..16 pixels
    huge = Run(digits.train(tmp_path, epochs=2, lr=50.0, heartbeat=0))
    huge.update()
    assert [f.rule for f in huge.findings] == ["nan_loss"]
    const = Run(digits.train(tmp_path, epochs=1, init="constant", reg=0.0, heartbeat=0))
    const.update()
    assert const.scalar("loss").values[0] == pytest.approx(math.log(10), rel=1e-6)
    with pytest.raises(ValueError, match="init must be one of"):
        digits.train(tmp_path, init="zeros")


def test_digits_runs_are_named_after_the_flags_that_differ(digits, tmp_path, capsys):
    assert digits.main(["--logdir", str(tmp_path), "--epochs", "1", "--n-train", "100", "--lr", "5",
                        "--raw-inputs"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["digits-epochs1-lr5-raw-inputs-n-train100"]


def test_examples_show_their_defaults_in_help(capsys):
    for name in ("digits_numpy", "init_experiment", "search_digits"):
        with pytest.raises(SystemExit):
            _load(name).main(["--help"])
        text = capsys.readouterr().out
        assert "(default: runs)" in text and "(default: 0)" in text, name


def test_digits_cli(digits, tmp_path, capsys):
    assert digits.main(["--logdir", str(tmp_path), "--epochs", "1", "--n-train", "100", "--name", "cli"]) == 0
    assert "first loss" in capsys.readouterr().out and (tmp_path / "cli" / "meta.json").exists()


# -- the built-in demo (babysitter demo) -------------------------------------------------------


def test_demo_healthy_trains(tmp_path):
    from babysitter.demo_training import run_demo

    run = Run(run_demo(tmp_path, steps=600, heartbeat=0))
    run.update()
    assert run.path == tmp_path / "demo" and run.status() == "finished" and run.all_problems() == []
    loss = run.scalar("loss").values
    assert loss[0] == pytest.approx(math.log(3), rel=0.10)
    assert loss[-1] < 0.5 * loss[0]
    assert run.scalar("train_acc").values[-1] > 0.8
    assert run.layer_order() == ["fc1", "fc2", "fc3"]
    assert np.nanmax(run.acts.field("dead_frac")) < 0.2
    assert run.acts.step_array().tolist() == list(range(0, 600, 10))


def test_demo_saturated_shows_its_problem(tmp_path):
    from babysitter.demo_training import run_demo

    run = Run(run_demo(tmp_path, steps=30, variant="saturated", heartbeat=0))
    run.update()
    fc2 = run.acts.index["fc2"]
    assert np.all(run.acts.field("sat_frac")[:, fc2] > 0.5)
    assert run.scalar("loss").values[0] > 5 * math.log(3)
    assert run.meta.hparams["variant"] == "saturated"


def test_demo_diverging_and_bad_arguments(tmp_path):
    from babysitter.demo_training import run_demo

    run = Run(run_demo(tmp_path, steps=20, variant="diverging", heartbeat=0))
    run.update()
    assert [f.rule for f in run.findings] == ["nan_loss"]
    with pytest.raises(ValueError, match=r"variant must be one of \['diverging', 'healthy', 'saturated'\]"):
        run_demo(tmp_path, variant="nope")
    with pytest.raises(ValueError, match="must be >= 0"):
        run_demo(tmp_path, steps=-1)


def test_demo_in_a_background_thread_stops_on_request(tmp_path):
    import threading

    from babysitter.demo_training import run_demo

    stop, opened, done = threading.Event(), [], []
    t = threading.Thread(target=lambda: done.append(run_demo(
        tmp_path, steps=100_000, step_delay=0.01, stop=stop, on_start=opened.append, heartbeat=0)))
    t.start()
    try:
        run = None
        for _ in range(2000):  # wait until a few steps are on disk, reading live meanwhile
            if opened:
                run = run or Run(opened[0])
                run.update()
                if len(run.scalar("loss")) >= 3:
                    break
            stop.wait(0.01)
        assert run is not None and run.status() == "live"
    finally:
        stop.set()
        t.join(timeout=30)
    assert not t.is_alive() and done == opened
    run.update()
    # Stopped before its last step: "stopped", not "finished" (it did not run its 100,000 steps).
    assert run.status() == "stopped" and 3 <= len(run.scalar("loss")) < 100_000


def test_a_second_demo_replaces_the_runs_of_the_first(tmp_path):
    """Each start of the demo used to add demo-healthy-2, -3, ..., the killed ones shown as crashed."""
    from babysitter.commands.demo import clean_earlier_demo_runs
    from babysitter.demo_training import VARIANTS, run_demo

    for name in ("demo-healthy", "demo-healthy-2"):
        run_demo(tmp_path, steps=3, name=name, variant="healthy", heartbeat=0)
    run_demo(tmp_path, steps=3, name="demo-saturated", variant="healthy", heartbeat=0)  # not what its name says
    (tmp_path / "demo-diverging").mkdir()  # not a demo run: no meta.json
    assert clean_earlier_demo_runs(tmp_path, VARIANTS) == ["demo-healthy", "demo-healthy-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-diverging", "demo-saturated"]

