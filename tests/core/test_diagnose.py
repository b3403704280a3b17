"""The diagnosis engine on real training runs: every rule fires on a network that shows its
problem, stays silent on well-configured networks, and gives the same findings live
(records arriving in chunks) as post hoc."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core import ConfigError, Finding, Run
from core.rules import RULES, Rule, register
from core.diagnose import DiagnosisConfig, Diagnoser, diagnose, nan_loss_finding, parse_overrides, threshold_table
from monitor import Monitor
from monitor.sanity import SANITY_OVERFIT, check_sanity_hparams, overfit_subset
from tests._nets import digits, overfit_digits, train_mlp

TINY = None  # filled lazily: the overfit subset


def _tiny() -> tuple:
    global TINY
    if TINY is None:
        Xs, ys = overfit_digits(20)
        TINY = (Xs, ys, None, None)
    return TINY


# name -> train_mlp keyword arguments. Problem runs first, then the healthy ones.
CASES: dict[str, dict] = {
    "lr_far_too_high": dict(lr=20.0, epochs=2),
    "lr_too_high": dict(lr=2.0, epochs=4),
    "lr_nan": dict(lr=1e5, epochs=2, every=1),
    "lr_far_too_low": dict(lr=1e-6, epochs=5),
    "lr_far_too_low_small_init": dict(lr=1e-6, init=0.01, epochs=3),
    "tanh10_small_init": dict(hidden=(100,) * 10, act="tanh", init=0.01, lr=0.05, epochs=1),
    "tanh10_large_init": dict(hidden=(100,) * 10, act="tanh", init=1.0, lr=0.05, epochs=1),
    "relu_negative_bias": dict(bias=-3.0, lr=0.1, epochs=2),
    "raw_pixels": dict(center=False, lr=1e-3, epochs=2),
    "constant_init": dict(init="constant", lr=0.1, epochs=2),
    "big_net_small_data": dict(hidden=(256,), n_train=60, batch=20, lr=0.1, epochs=40),
    "big_last_layer": dict(last_scale=10.0, lr=0.01, epochs=1),
    "reg_left_out_of_loss": dict(reg=0.05, reg_in_loss=False, lr=0.05, epochs=1),
    "one_unit_bottleneck": dict(hidden=(1,), lr=0.05, epochs=6),
    "sanity_broken_gradient": dict(data="tiny", grad_bug=True, lr=0.1, epochs=100, batch=20, sanity=SANITY_OVERFIT),
    # Healthy: He init for ReLU, Xavier for tanh, a good learning rate, standardised inputs.
    "ok_relu": dict(hidden=(64,), init="he", lr=0.1, epochs=6),
    "ok_relu_deep": dict(hidden=(100,) * 4, init="he", lr=0.05, epochs=4),
    "ok_relu_reg": dict(hidden=(64,), init="he", lr=0.1, reg=1e-3, epochs=6),
    "ok_relu_slower_lr": dict(hidden=(64,), init="he", lr=0.01, epochs=6),
    "ok_tanh": dict(hidden=(64,), act="tanh", init="xavier", lr=0.1, epochs=6),
    "ok_tanh10": dict(hidden=(100,) * 10, act="tanh", init="xavier", lr=0.05, epochs=2),
    "ok_relu_small_batch": dict(hidden=(128,), init="he", lr=0.05, batch=16, epochs=2),
    "ok_sanity_overfit": dict(data="tiny", lr=0.1, epochs=100, batch=20, sanity=SANITY_OVERFIT),
    # The digits example (examples/digits_numpy.py) as shipped, and variants of it.
    "ok_example_defaults": dict(example=True, epochs=5),
    "ok_example_momentum": dict(example=True, epochs=5, momentum=0.9, lr=0.02),
    "ok_example_small_batch": dict(example=True, epochs=4, batch_size=32, seed=3),
    "ok_example_wide_decay": dict(example=True, epochs=4, hidden=256, lr_decay=0.9),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Train each case on first use; ``runs(name)`` is its run folder."""
    root = tmp_path_factory.mktemp("runs")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            kw = dict(CASES[name])
            if kw.pop("example", False):
                from examples.digits_numpy import train

                made[name] = train(root, name=name, heartbeat=0, **kw)
                return made[name]
            if kw.get("data") == "tiny":
                kw["data"] = _tiny()
            made[name] = train_mlp(root, name, **kw)
        return made[name]

    return get


def _by_rule(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.rule, []).append(f)
    return out


# (case, rule, severity, layers that must be among the finding's layers)
POSITIVE = [
    ("lr_far_too_high", "loss_explosion", "error", ()),
    ("lr_nan", "nan_loss", "error", ()),
    ("lr_nan", "nonfinite_values", "error", ("fc1", "scores")),
    ("lr_too_high", "update_ratio", "warning", ("fc1", "scores")),
    ("lr_far_too_low", "lr_too_low", "warning", ()),
    ("lr_far_too_low_small_init", "lr_too_low", "warning", ()),
    ("lr_far_too_low", "update_ratio", "warning", ("fc1", "scores")),
    ("tanh10_small_init", "vanishing_activations", "warning", ("fc10",)),
    ("tanh10_large_init", "saturation", "warning", ("fc1", "fc10")),
    ("relu_negative_bias", "dead_relu", "warning", ("fc1",)),
    ("raw_pixels", "inputs_not_centered", "warning", ()),
    ("constant_init", "symmetric_weights", "error", ("fc1",)),
    ("big_net_small_data", "overfitting", "warning", ()),
    ("big_last_layer", "initial_loss", "warning", ()),
    ("tanh10_large_init", "initial_loss", "warning", ()),
    ("reg_left_out_of_loss", "regularization_check", "warning", ()),
    ("one_unit_bottleneck", "underfitting", "warning", ()),
    ("sanity_broken_gradient", "cannot_overfit", "error", ()),
]


@pytest.mark.parametrize("case,rule,severity,layers", POSITIVE, ids=[f"{c}->{r}" for c, r, *_ in POSITIVE])
def test_rule_fires_on_a_run_that_shows_the_problem(runs, case, rule, severity, layers):
    found = _by_rule(diagnose(runs(case)))
    assert rule in found, f"{case}: expected {rule}, got {[(f.rule, f.message) for fs in found.values() for f in fs]}"
    f = found[rule][0]
    assert f.severity == severity
    assert set(layers) <= {x for g in found[rule] for x in g.layers}
    assert f.message.endswith(".") and f.fix
    assert f.step >= 0


HEALTHY = [c for c in CASES if c.startswith("ok_")]


@pytest.mark.parametrize("case", HEALTHY)
def test_no_false_alarms_on_well_configured_runs(runs, case):
    bad = [(f.rule, f.message) for f in diagnose(runs(case)) if f.severity in ("error", "warning")]
    assert bad == []


def test_healthy_sanity_run_reaches_full_accuracy(runs):
    run = Run(runs("ok_sanity_overfit"))
    run.update()
    assert run.meta.sanity == SANITY_OVERFIT
    assert run.scalar("train_acc").values.max() == 1.0


def test_messages_carry_value_and_threshold(runs):
    f = _by_rule(diagnose(runs("relu_negative_bias")))["dead_relu"][0]
    assert f.value is not None and f.value > 0.4 and f.threshold == 0.4
    assert "40%" in f.message and f"{f.value:.0%}" in f.message
    f = _by_rule(diagnose(runs("raw_pixels")))["inputs_not_centered"][0]
    assert f.threshold == 0.3 and f.value > 0.3 and "0.3" in f.message


def test_update_ratio_reports_too_high_and_too_low_with_their_own_fix(runs):
    high = _by_rule(diagnose(runs("lr_too_high")))["update_ratio"][0]
    low = _by_rule(diagnose(runs("lr_far_too_low")))["update_ratio"][0]
    assert "above" in high.message and "Lower" in high.fix and high.value > high.threshold
    assert "below" in low.message and "Raise" in low.fix and low.value < low.threshold
    assert not any(n.startswith("b") for n in high.layers + low.layers)  # biases are skipped


def test_diverged_run_is_not_also_called_underfitting(runs):
    rules = {f.rule for f in diagnose(runs("lr_far_too_high"))}
    assert "loss_explosion" in rules and "underfitting" not in rules


# -- findings written by the training process ---------------------------------------------


def test_monitor_nan_finding_is_merged_once_at_the_earliest_step(tmp_path):
    with Monitor(tmp_path, "nan", num_classes=10, heartbeat=0) as mon:
        for s, v in enumerate([2.3, 2.2, 2.1, float("nan"), float("nan")]):
            mon.log(s, loss=v)
    run = Run(mon.run_dir)
    run.update()
    assert [f.rule for f in run.findings] == ["nan_loss"]  # written in-process
    nan = [f for f in diagnose(run) if f.rule == "nan_loss"]
    assert len(nan) == 1 and nan[0].step == 3 and nan[0].severity == "error"


def test_engine_finding_earlier_than_the_written_one_wins(tmp_path):
    with Monitor(tmp_path, "explode", num_classes=10, heartbeat=0) as mon:
        for s, v in enumerate([2.3, 2.5, 40.0, 900.0, float("inf")]):
            mon.log(s, loss=v)
    found = _by_rule(diagnose(mon.run_dir))
    # The blow-up and the NaN are two findings, each at its own step; the NaN names the blow-up's step.
    assert [f.step for f in found["loss_explosion"]] == [2] and "17.4x" in found["loss_explosion"][0].message
    assert found["loss_explosion"][0].value == pytest.approx(40 / 2.3) and found["loss_explosion"][0].threshold == 10
    assert [f.step for f in found["nan_loss"]] == [4]
    assert "Inf at step 4" in found["nan_loss"][0].message and "from step 2" in found["nan_loss"][0].message


def test_a_blow_up_without_nan_is_not_called_nan(tmp_path):
    with Monitor(tmp_path, "blowup", num_classes=10, heartbeat=0, on_explode="ignore") as mon:
        for s, v in enumerate([2.3, 2.0, 5.0, 30.0, 80.0]):
            mon.log(s, loss=v)
    found = _by_rule(diagnose(mon.run_dir))
    assert "nan_loss" not in found and [f.step for f in found["loss_explosion"]] == [3]


def test_nan_loss_finding_keeps_its_signature():
    f = nan_loss_finding(7, "inf")
    assert (f.rule, f.severity, f.step) == ("nan_loss", "error", 7) and "Inf at step 7" in f.message


# -- incremental evaluation ------------------------------------------------------------


def _replay_in_chunks(src: Path, dst: Path, chunk: int) -> list[tuple[int, int]]:
    """Copy a finished run into ``dst`` ``chunk`` lines at a time, diagnosing after each chunk.

    Returns ``(records added, rows the Diagnoser examined)`` per call, and leaves the
    Diagnoser's findings in ``_replay_in_chunks.findings``.
    """
    dst.mkdir()
    meta = json.loads((src / "meta.json").read_text())
    (dst / "meta.json").write_text(json.dumps({**meta, "status": "running", "pid": None}))
    files = {p.name: p.read_text().splitlines(keepends=True) for p in sorted(src.glob("*.jsonl"))}
    pos = {name: 0 for name in files}
    run, dx = Run(dst), Diagnoser()
    calls = []
    last_counts = 0
    while any(pos[n] < len(lines) for n, lines in files.items()):
        for name, lines in files.items():
            if pos[name] < len(lines):
                with open(dst / name, "a") as fh:
                    fh.writelines(lines[pos[name]:pos[name] + chunk])
                pos[name] += chunk
        run.update()
        before = dx.rows_examined
        dx.update(run)
        counts = _record_count(run)
        calls.append((counts - last_counts, dx.rows_examined - before))
        last_counts = counts
    (dst / "meta.json").write_text(json.dumps(meta))
    run.update()
    before = dx.rows_examined
    dx.update(run)
    calls.append((0, dx.rows_examined - before))
    _replay_in_chunks.findings = dx.findings()
    return calls


def _record_count(run: Run) -> int:
    scalars = sum(len(run.scalar(n)) for n in run.scalar_names())
    return len(run.acts) + len(run.params) + len(run.input_stats()["step"]) + scalars


@pytest.mark.parametrize("case", ["sanity_broken_gradient", "tanh10_large_init", "big_net_small_data",
                                  "lr_far_too_low", "relu_negative_bias"])
def test_live_diagnosis_in_chunks_equals_post_hoc(runs, tmp_path, case):
    src = runs(case)
    calls = _replay_in_chunks(src, tmp_path / "live", chunk=3)
    assert len(calls) > 5
    # Each call looks at exactly the records that arrived since the previous one.
    assert all(examined == added for added, examined in calls)
    assert _replay_in_chunks.findings == diagnose(src)


def test_diagnoser_work_is_proportional_to_new_records(runs):
    run = Run(runs("ok_relu"))
    run.update()
    dx = Diagnoser()
    dx.update(run)
    first = dx.rows_examined
    assert first == _record_count(run)
    dx.update(run)  # nothing new: nothing examined
    assert dx.rows_examined == first


def test_diagnoser_refuses_a_second_run(runs):
    dx = Diagnoser()
    a, b = Run(runs("ok_relu")), Run(runs("ok_tanh"))
    a.update(), b.update()
    dx.update(a)
    with pytest.raises(ValueError, match="make another one"):
        dx.update(b)


# -- thresholds ------------------------------------------------------------------------


def test_thresholds_change_the_verdict(runs):
    rd = runs("relu_negative_bias")
    assert "dead_relu" in {f.rule for f in diagnose(rd)}
    loose = DiagnosisConfig(overrides={"dead_relu.max_dead_frac": 0.9})
    assert "dead_relu" not in {f.rule for f in diagnose(rd, loose)}
    flat = DiagnosisConfig(overrides=parse_overrides(["max_dead_frac=0.9"]))
    assert flat.thresholds("dead_relu").max_dead_frac == 0.9
    off = DiagnosisConfig(disable=["dead_relu"])
    assert "dead_relu" not in {f.rule for f in diagnose(rd, off)}


@pytest.mark.parametrize("overrides,match", [
    ({"dead_relu.max_dead_frac": 1.5}, r"dead_relu\.max_dead_frac .* must be a number in \[0, 1\], got 1\.5"),
    ({"dead_relu.max_dead_frac": float("nan")}, r"dead_relu\.max_dead_frac .* got nan"),
    ({"dead_relu.patience": 2.5}, r"dead_relu\.patience .* must be an integer in \[1, 1000\]"),
    ({"dead_relu.max_dead": 0.3}, r"unknown threshold 'dead_relu\.max_dead'; known thresholds: .*dead_relu\.max_dead_frac"),
    ({"patience": 3}, r"'patience' is ambiguous; write one of .*saturation\.patience"),
    ({"update_ratio.min_ratio": 0.1, "update_ratio.max_ratio": 0.01}, r"min_ratio \(0\.1\) must be below .*max_ratio"),
    ({"saturation.max_sat_frac": "high"}, r"saturation\.max_sat_frac .* got 'high'"),
])
def test_bad_thresholds_are_rejected_with_the_allowed_range(overrides, match):
    with pytest.raises(ConfigError, match=match):
        DiagnosisConfig(overrides=overrides)


def test_unknown_disabled_rule_lists_the_rules():
    with pytest.raises(ConfigError, match=r"unknown rule\(s\) \['dead_relus'\]; known rules: .*dead_relu"):
        DiagnosisConfig(disable=["dead_relus"])


@pytest.mark.parametrize("item,match", [
    ("dead_relu.max_dead_frac", r"must be written NAME=VALUE"),
    ("dead_relu.max_dead_frac=lots", r"'lots' is not a number"),
    ("=3", r"must be written NAME=VALUE"),
])
def test_command_line_threshold_syntax_errors(item, match):
    with pytest.raises(ConfigError, match=match):
        parse_overrides([item])


def test_every_threshold_default_is_valid_and_documented():
    table = threshold_table()
    assert len(table) >= 20
    for name, default, (lo, hi), unit in table:
        assert lo <= default <= hi and unit, name
    assert {"nan_loss", "lr_too_low", "initial_loss", "regularization_check", "vanishing_activations", "saturation",
            "dead_relu", "update_ratio", "overfitting", "underfitting", "inputs_not_centered", "symmetric_weights",
            "cannot_overfit"} <= set(RULES)
    for cls in RULES.values():
        assert cls.summary and cls.fix and cls.severity in ("error", "warning", "info")


# -- the registry ----------------------------------------------------------------------


def test_a_registered_rule_runs_and_can_be_configured(runs):
    from core.rules import RuleThresholds, knob

    @dataclass(frozen=True)
    class LongRunThresholds(RuleThresholds):
        max_steps: int = knob(50, 1, 1e9, "training steps", integer=True)

    class LongRun(Rule):
        id = "test_long_run"
        severity = "info"
        summary = "The run is longer than max_steps."
        fix = "Nothing."
        Thresholds = LongRunThresholds

        def update(self, d):
            steps, _ = d.loss()
            hits = steps[steps > self.t.max_steps]
            if len(hits):
                yield self.finding(int(hits[0]), f"Step {int(hits[0])} is past {self.t.max_steps}.")

    register(LongRun)
    try:
        with pytest.raises(ConfigError, match="registered already"):
            register(type("Other", (Rule,), {"id": "test_long_run"}))
        rd = runs("ok_relu")
        f = [f for f in diagnose(rd) if f.rule == "test_long_run"]
        assert [x.step for x in f] == [51]
        cfg = DiagnosisConfig(overrides={"test_long_run.max_steps": 100})
        assert [x.step for x in diagnose(rd, cfg) if x.rule == "test_long_run"] == [101]
    finally:
        RULES.pop("test_long_run", None)


# -- the sanity mode -------------------------------------------------------------------


def test_overfit_subset_is_small_balanced_and_seeded():
    Xtr, ytr, _, _ = digits()
    Xs, ys = overfit_subset(Xtr, ytr, n=20, seed=3)
    assert Xs.shape == (20, 64) and np.bincount(ys, minlength=10).tolist() == [2] * 10
    Xs2, ys2 = overfit_subset(Xtr, ytr, n=20, seed=3)
    assert np.array_equal(Xs, Xs2) and np.array_equal(ys, ys2)
    with pytest.raises(ConfigError, match=r"n must be an integer in 1\.\.1300"):
        overfit_subset(Xtr, ytr, n=0)
    with pytest.raises(ConfigError, match="one label per example"):
        overfit_subset(Xtr, ytr[:5])
    with pytest.raises(ConfigError, match="regularization off; reg=0.1"):
        check_sanity_hparams({"reg": 0.1})
    check_sanity_hparams({"reg": 0.0})


def test_cannot_overfit_waits_for_the_end_of_the_run(runs, tmp_path):
    src = runs("sanity_broken_gradient")
    dst = tmp_path / "live"
    shutil.copytree(src, dst)
    meta = json.loads((dst / "meta.json").read_text())
    (dst / "meta.json").write_text(json.dumps({**meta, "status": "running"}))
    assert "cannot_overfit" not in {f.rule for f in diagnose(dst)}
    (dst / "meta.json").write_text(json.dumps(meta))
    f = [f for f in diagnose(dst) if f.rule == "cannot_overfit"]
    assert len(f) == 1 and f[0].severity == "error" and f[0].value < 1.0
    assert math.isclose(f[0].threshold, 1.0)


def test_medians_of_others_is_the_median_without_each_value():
    from core.rules.params import medians_of_others

    rng = np.random.default_rng(3)
    for n in (2, 3, 4, 7, 10, 201):
        for x in (rng.standard_normal(n), rng.integers(0, 4, n).astype(float)):  # ties included
            want = np.array([np.median(np.delete(x, i)) for i in range(n)])
            assert np.array_equal(medians_of_others(x), want)


def test_a_layer_with_every_unit_dead_is_an_error_and_each_layer_gets_its_own_share(tmp_path):
    # "all" passes no gradient at all (an error: nothing before it learns); "half" and "most" lose
    # some units (a warning), each named with its own share.
    rng = np.random.default_rng(0)
    with Monitor(tmp_path, "r", heartbeat=0) as mon:
        for step in range(0, 50, 10):
            h = np.maximum(0, rng.standard_normal((64, 10)) + 1.0)
            mon.activation(step, "all", np.zeros_like(h), kind="relu")
            mon.activation(step, "half", np.where(np.arange(10) < 5, 0.0, h), kind="relu")
            mon.activation(step, "most", np.where(np.arange(10) < 8, 0.0, h), kind="relu")
            mon.activation(step, "fine", h, kind="relu")
            mon.log(step, loss=1.0 / (1 + step))
    dead = _by_rule(diagnose(tmp_path / "r"))["dead_relu"]
    by_layers = {f.layers: f for f in dead}
    assert set(by_layers) == {("all",), ("half", "most")}
    every, some = by_layers[("all",)], by_layers[("half", "most")]
    assert every.severity == "error" and every.value == 1.0
    assert every.message.startswith("all: 100% of units are dead") and "nothing before it learns" in every.message
    assert some.severity == "warning" and some.message.startswith("half, most: 50% and 80% of units are dead")


@pytest.mark.parametrize("dead", [True, False])
def test_a_flat_loss_behind_a_layer_with_every_unit_dead_is_not_blamed_on_the_learning_rate(tmp_path, dead):
    # "Raise the learning rate" would send the user after the wrong fix: no gradient passes the layer.
    rng = np.random.default_rng(1)
    with Monitor(tmp_path, "r", heartbeat=0, num_classes=10) as mon:
        for step in range(60):
            if step % 10 == 0:
                h = np.maximum(0, rng.standard_normal((64, 10)) + 1.0)
                mon.activation(step, "relu", np.zeros_like(h) if dead else h, kind="relu")
            mon.log(step, loss=2.3 + 0.001 * rng.standard_normal())
    rules = {f.rule: f.severity for f in diagnose(tmp_path / "r")}
    if dead:
        assert rules.get("dead_relu") == "error" and "lr_too_low" not in rules
    else:
        assert "dead_relu" not in rules and rules.get("lr_too_low") == "warning"


def test_layers_at_a_healthy_ratio_beside_vanishing_siblings_are_not_told_to_slow_down(tmp_path):
    # A deep net whose first layers barely move (1e-7) and whose last ones move at a healthy 7e-4:
    # the first ones are too low; telling the healthy ones to lower their rate (they are "2,500x
    # the others' median") contradicts that. With healthy siblings, a 30x layer is still found.
    rng = np.random.default_rng(0)

    def run(name, ratios):
        with Monitor(tmp_path, name, heartbeat=0, every=10) as mon:
            Ws = [rng.standard_normal((32, 32)) for _ in ratios]
            for step in range(0, 200):
                for i, (W, r) in enumerate(zip(Ws, ratios)):
                    d = rng.standard_normal(W.shape)
                    d *= r * np.linalg.norm(W) / np.linalg.norm(d)
                    W += d
                    mon.weights(step, f"W{i + 1}", W, update=d)
                mon.log(step, loss=2.3 + 0.001 * rng.standard_normal())
        return [f for f in diagnose(tmp_path / name) if f.rule == "update_ratio"]

    vanishing = run("vanishing", [3e-7, 3e-7, 3e-7, 3e-7, 7e-4, 7e-4, 1e-3])  # the last is the output layer
    assert [f.layers for f in vanishing] == [("W1", "W2", "W3", "W4")]
    assert "too low" in vanishing[0].message and "Raise" in vanishing[0].fix
    fast = run("fast", [1e-3, 1e-3, 3e-2, 1e-3, 1e-3, 1e-3, 1e-3])
    assert [f.layers for f in fast] == [("W3",)] and "out of line" in fast[0].message and "Lower" in fast[0].fix
