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
