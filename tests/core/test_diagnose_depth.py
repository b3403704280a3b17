"""The rules that compare layers across depth and the cases the first rules missed, on real numpy trainings.

The lecture's single forward pass through 10 layers (saturation and exploding activations
on one logged step), vanishing and exploding gradients, one layer's learning rate out of
line with its siblings, a loss that blows up before (or without) becoming NaN, and the
overfit sanity check, where overfitting is the goal and no finding.
"""

from __future__ import annotations

import json

import pytest

from core import Run
from core.diagnose import diagnose
from examples.init_experiment import run_experiment
from monitor import TrainingDivergedError
from monitor.sanity import SANITY_OVERFIT
from tests._nets import digits, overfit_digits, train_mlp


def _by_rule(findings):
    out = {}
    for f in findings:
        out.setdefault(f.rule, []).append(f)
    return out


def _layers(findings, rule):
    return {x for f in findings.get(rule, []) for x in f.layers}


def _loud(findings):
    return [(f.rule, f.message) for f in findings if f.severity in ("error", "warning")]


@pytest.fixture(scope="module")
def init_runs(tmp_path_factory):
    """The lecture's experiment: one forward pass, 10 layers x 500 units, four initialisations, tanh and ReLU."""
    root = tmp_path_factory.mktemp("init")
    return {f"{v.nonlinearity}-{v.init}": v.run_dir for v in run_experiment(root, n=200)}


def test_one_forward_pass_with_large_tanh_weights_is_saturated(init_runs):
    run = Run(init_runs["tanh-large"])
    run.update()
    assert len(run.acts) == 1  # a single logged step, yet saturation (patience 2) decides
    found = _by_rule(diagnose(run))
    assert _layers(found, "saturation") == {f"fc{i}" for i in range(1, 11)}
    assert found["saturation"][0].step == 0 and found["saturation"][0].value > 0.8


def test_one_forward_pass_with_large_relu_weights_explodes(init_runs):
    found = _by_rule(diagnose(init_runs["relu-large"]))
    f = found["exploding_activations"][0]
    assert "fc10" in f.layers and "fc1" not in f.layers
    assert f.value > 1e9 and "per layer" in f.message  # std ~1e12 at fc10: ~16x per layer
    assert "vanishing_activations" not in found


@pytest.mark.parametrize("variant", ["tanh-xavier", "relu-he"])
def test_well_initialised_single_pass_raises_nothing(init_runs, variant):
    assert _loud(diagnose(init_runs[variant])) == []


def test_single_step_verdict_waits_for_the_run_to_finish(init_runs, tmp_path):
    src = init_runs["tanh-large"]
    dst = tmp_path / "live"
    dst.mkdir()
    for p in src.iterdir():
        dst.joinpath(p.name).write_bytes(p.read_bytes())
    meta = json.loads((dst / "meta.json").read_text())
    (dst / "meta.json").write_text(json.dumps({**meta, "status": "running", "pid": None}))
    assert "saturation" not in {f.rule for f in diagnose(dst)}  # a live run may still log a second step
    (dst / "meta.json").write_text(json.dumps(meta))
    assert "saturation" in {f.rule for f in diagnose(dst)}


# -- gradients across depth --------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth")
    made = {}

    def get(name, **kw):
        if name not in made:
            made[name] = train_mlp(root, name, **kw)
        return made[name]

    return get


def test_gradient_vanishes_toward_the_input_with_small_tanh_weights(runs):
    found = _by_rule(diagnose(runs("tanh10_small", hidden=(100,) * 10, act="tanh", init=0.01, lr=0.05, epochs=1)))
    f = found["vanishing_gradients"][0]
    assert "fc1" in f.layers and "scores" not in f.layers and "fc10" not in f.layers
    assert f.value < 1e-5 and f.threshold == 1e-3 and "W11" in f.message


def test_gradient_grows_toward_the_input_with_large_tanh_weights(runs):
    found = _by_rule(diagnose(runs("tanh10_large", hidden=(100,) * 10, act="tanh", init=1.0, lr=0.05, epochs=1)))
    f = found["exploding_gradients"][0]
    assert "fc1" in f.layers and "scores" not in f.layers
    assert f.value > 100 and "W1's gradient norm" in f.message
    assert "vanishing_gradients" not in found


def test_one_layer_with_a_learning_rate_out_of_line(runs):
    # Three hidden layers; the third one's learning rate 30x the others': its update:weight ratio
    # stays inside the absolute band (1e-4..5e-2), but is >10x its siblings'.
    found = _by_rule(diagnose(runs("fc3_fast", hidden=(64, 64, 64), init="he", last_scale=0.1, lr=0.02,
                                   lr_scale=(1, 1, 30, 1), epochs=5)))
    f = found["update_ratio"][0]
    assert f.layers == ("fc3",) and f.value > 10 and f.threshold == 10
    assert "other hidden weight tensors" in f.message and "Lower" in f.fix
    assert 1e-4 < float(f.message.split("ratio ")[1].split(" ")[0]) < 5e-2  # inside the absolute band


def test_one_layer_far_slower_than_its_siblings(runs):
    found = _by_rule(diagnose(runs("fc2_slow", hidden=(64, 64, 64), init="he", last_scale=0.1, lr=0.05,
                                   lr_scale=(1, 0.02, 1, 1), epochs=5)))
    f = found["update_ratio"][0]
    assert f.layers == ("fc2",) and f.value < 0.1 and "Raise" in f.fix


def test_same_network_with_one_learning_rate_is_quiet(runs):
    assert _loud(diagnose(runs("same_lr", hidden=(64, 64, 64), init="he", last_scale=0.1, lr=0.05, epochs=5))) == []


# -- the loss: blow-up and NaN -----------------------------------------------------------


def test_blow_up_then_nan_reports_both_steps(runs):
    found = _by_rule(diagnose(runs("lr_20", lr=20.0, epochs=2)))
    up, nan = found["loss_explosion"][0], found["nan_loss"][0]
    assert up.step < nan.step and up.value > 10 and up.threshold == 10
    assert f"from step {up.step}" in nan.message
    assert "underfitting" not in found and "lr_too_low" not in found


@pytest.mark.parametrize("on", ["on_explode", "on_nan"])
def test_monitor_stops_training_on_the_blow_up_or_the_nan_when_asked(tmp_path, on):
    with pytest.raises(TrainingDivergedError) as err:
        train_mlp(tmp_path, "stop", lr=20.0, epochs=2, **{on: "raise"})
    run = Run(tmp_path / "stop")
    run.update()
    found = _by_rule(diagnose(run))
    if on == "on_explode":
        assert err.value.reason == "explosion" and err.value.step == found["loss_explosion"][0].step
        assert "nan_loss" not in found  # stopped before the NaN
    else:
        assert err.value.reason in ("nan", "inf") and err.value.step == found["nan_loss"][0].step
    assert run.status() == "crashed" and err.value.step == int(run.scalar("loss").steps[-1])


def test_explode_factor_is_checked_against_the_rule_range(tmp_path):
    from core import ConfigError
    from monitor import Monitor

    with pytest.raises(ConfigError, match=r"loss_explosion\.explode_factor .* \[1\.5, 1e\+06\], got 1\.0"):
        Monitor(tmp_path, "x", explode_factor=1.0)
    with pytest.raises(ConfigError, match="on_explode must be one of"):
        Monitor(tmp_path, "x", on_explode="stop")


# -- the sanity mode ---------------------------------------------------------------------


def test_sanity_mode_keeps_overfitting_quiet_and_cannot_overfit_decides(runs):
    # The tiny subset is fitted perfectly while validation accuracy stays low: a huge, growing gap.
    Xs, ys = overfit_digits(20)
    _, _, Xva, yva = digits()
    kw = dict(data=(Xs, ys, Xva, yva), lr=0.1, epochs=100, batch=20)
    plain = _by_rule(diagnose(runs("tiny_plain", **kw)))
    assert "overfitting" in plain  # the same run outside the sanity mode
    sanity = _by_rule(diagnose(runs("tiny_sanity", sanity=SANITY_OVERFIT, **kw)))
    assert "overfitting" not in sanity and "cannot_overfit" not in sanity
    broken = _by_rule(diagnose(runs("tiny_broken", sanity=SANITY_OVERFIT, grad_bug=True, **kw)))
    assert "overfitting" not in broken and broken["cannot_overfit"][0].severity == "error"
