"""``babysitter check``: text and JSON output and the exit codes a CI pipeline gates on,
run as a real subprocess on real training runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests._nets import train_mlp


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("logdir")
    train_mlp(root, "healthy", hidden=(64,), init="he", lr=0.1, epochs=3)
    train_mlp(root, "diverged", lr=20.0, epochs=1)
    train_mlp(root, "raw", center=False, lr=1e-3, epochs=1)
    return root


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "babysitter", "check", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_healthy_run_exits_0(logdir):
    p = _check(logdir / "healthy")
    assert p.returncode == 0, p.stderr
    assert "healthy" in p.stdout and "no findings" in p.stdout


def test_error_finding_exits_1_with_text_grouped_per_run_newest_first(logdir):
    p = _check(logdir / "diverged")
    assert p.returncode == 1, p.stderr
    lines = p.stdout.splitlines()
    assert "diverged" in lines[0] and "finding(s)" in lines[0]
    heads = [ln for ln in lines if ln.startswith("  ") and not ln.startswith("   ")]
    steps = [int(ln.split("step")[1].split()[0]) for ln in heads]
    assert steps == sorted(steps, reverse=True)
    assert any("ERROR" in h and "nan_loss" in h for h in heads)
    assert "fix: Lower the learning rate" in p.stdout


def test_log_dir_checks_every_run_and_json_lists_findings(logdir):
    p = _check(logdir, "--json")
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert {"run", "rule", "severity", "step", "layers", "message", "fix"} <= set(out[0])
    by_run = {(f["run"], f["rule"]) for f in out}
    assert ("diverged", "nan_loss") in by_run and ("raw", "inputs_not_centered") in by_run
    assert not any(r == "healthy" for r, _ in by_run)


def test_warnings_only_exit_0_and_thresholds_change_the_result(logdir):
    p = _check(logdir / "raw", "--json")
    assert p.returncode == 0 and "inputs_not_centered" in {f["rule"] for f in json.loads(p.stdout)}
    p = _check(logdir / "raw", "--json", "--threshold", "inputs_not_centered.max_mean_std_ratio=5",
               "--set", "initial_loss.max_rel_dev=50")
    assert p.returncode == 0 and "inputs_not_centered" not in {f["rule"] for f in json.loads(p.stdout)}
    p = _check(logdir / "diverged", "--disable", "nan_loss", "--disable", "loss_explosion")
    assert p.returncode == 0, p.stdout


@pytest.mark.parametrize("args,match", [
    (["{root}/no-such-run"], "no such run folder or log directory"),
    (["{root}/healthy", "--threshold", "dead_relu.max_dead_frac=2"], r"must be a number in [0, 1], got 2"),
    (["{root}/healthy", "--threshold", "nope=1"], "unknown threshold 'nope'; known thresholds: loss_explosion.explode_factor"),
    (["{root}/healthy", "--disable", "nope"], "unknown rule(s) ['nope']"),
    ([], "give at least one RUN_DIR"),
])
def test_bad_usage_exits_2_with_a_clear_message(logdir, args, match):
    p = _check(*[a.format(root=logdir) for a in args])
    assert p.returncode == 2
    assert match in p.stderr and p.stdout == ""


def test_empty_folder_is_bad_usage(tmp_path):
    p = _check(tmp_path)
    assert p.returncode == 2 and "neither a run folder" in p.stderr


def test_rules_lists_every_rule_and_threshold():
    p = _check("--rules")
    assert p.returncode == 0
    for rid in ("nan_loss", "dead_relu", "cannot_overfit", "dead_relu.max_dead_frac = 0.4"):
        assert rid in p.stdout


SHAPE_ERROR = "mat1 and mat2 shapes cannot be multiplied (32x21 and 20x64)"
HOSTILE_ERROR = "<img src=x onerror=alert(1)>\x1b[2J"


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    import numpy as np

    from monitor import Monitor

    root = tmp_path_factory.mktemp("crashed")
    rng = np.random.default_rng(0)
    for name, err, at in (("crash-shape", RuntimeError(SHAPE_ERROR), 20), ("hostile", ValueError(HOSTILE_ERROR), 4)):
        with pytest.raises(type(err)):
            with Monitor(root, name, every=1, heartbeat=0) as mon:
                for step in range(100):
                    mon.activation(step, "fc1", np.maximum(rng.standard_normal((32, 16)), 0), kind="relu")
                    mon.log(step, loss=2.3 - 0.01 * step)
                    if step == at:
                        raise err
    with Monitor(root, "fine", every=1, heartbeat=0) as mon:
        for step in range(5):
            mon.log(step, loss=2.3 - 0.1 * step)
    return root


def test_a_crashed_run_shows_its_error_under_its_header_and_exits_1(crashed):
    p = _check(crashed / "crash-shape")
    assert p.returncode == 1, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].endswith("crash-shape (crashed): no findings before the crash")
    assert lines[1] == f"  ERROR   training stopped after step 20 with: RuntimeError: {SHAPE_ERROR}"


def test_a_log_directory_with_a_crashed_run_exits_1_and_prints_its_error_as_safe_text(crashed):
    p = _check(crashed)
    assert p.returncode == 1, p.stderr
    assert f"  ERROR   training stopped after step 20 with: RuntimeError: {SHAPE_ERROR}" in p.stdout.splitlines()
    assert "  ERROR   training stopped after step 4 with: ValueError: <img src=x onerror=alert(1)>\\x1b[2J" \
        in p.stdout.splitlines()
    assert "\x1b" not in p.stdout
    fine = [ln for ln in p.stdout.splitlines() if "fine" in ln]
    assert len(fine) == 1 and fine[0].endswith("fine (finished): no findings")


def test_json_carries_the_crash_as_an_error_entry_first_among_the_runs_entries(crashed):
    for target in (crashed, crashed / "crash-shape"):  # through the catalog and read directly
        p = _check(target, "--json")
        assert p.returncode == 1, p.stderr
        out = json.loads(p.stdout)
        crash = [f for f in out if f["run"] == "crash-shape"][0]  # the run's first entry
        assert crash["rule"] == "crashed" and crash["severity"] == "error" and crash["step"] == 20
        assert crash["error"] == f"RuntimeError: {SHAPE_ERROR}" and SHAPE_ERROR in crash["message"]
        assert {"run", "path", "rule", "severity", "step", "layers", "message", "fix"} <= set(crash)
    out = json.loads(_check(crashed, "--json").stdout)
    assert [f for f in out if f["run"] == "hostile"][0]["error"] == f"ValueError: {HOSTILE_ERROR}"
    assert not [f for f in out if f["run"] == "fine"]


def test_a_run_that_did_not_crash_still_exits_0(crashed):
    p = _check(crashed / "fine")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ERROR" not in p.stdout and p.stdout.strip().endswith("fine (finished): no findings")
    p = _check(crashed / "fine", "--json")
    assert p.returncode == 0 and json.loads(p.stdout) == []
