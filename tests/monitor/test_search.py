"""Random search: sampler distributions, reproducibility, crashed trials, coarse-to-fine refine."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core.errors import ConfigError
from core.reader import Run
from monitor.search import (
    Choice, IntUniform, LogUniform, TrialResult, Uniform, random_search, refine, sample_space, space_from_json,
    space_to_json,
)


def _ks_uniform(u: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between the sample ``u`` (in [0, 1]) and U(0, 1)."""
    u = np.sort(u)
    n = len(u)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - u), np.max(u - (i - 1) / n)))


def test_loguniform_is_uniform_in_the_exponent():
    s = LogUniform(1e-6, 1e-3)
    rng = np.random.default_rng(1234)
    x = np.array([s.sample(rng) for _ in range(4000)])
    assert x.min() >= 1e-6 and x.max() <= 1e-3
    e = (np.log10(x) + 6) / 3  # exponent mapped onto [0, 1]
    # 1.63/sqrt(n) is the KS critical value at the 1% level.
    assert _ks_uniform(e) < 1.63 / math.sqrt(len(e))
    # ...and clearly not uniform in the value itself: a uniform sampler would put ~90% above 1e-4.
    assert np.mean(x > 1e-4) == pytest.approx(1 / 3, abs=0.04)
    assert _ks_uniform((x - 1e-6) / (1e-3 - 1e-6)) > 0.5


def test_uniform_and_int_samplers():
    rng = np.random.default_rng(7)
    u = np.array([Uniform(-2.0, 3.0).sample(rng) for _ in range(3000)])
    assert _ks_uniform((u + 2) / 5) < 1.63 / math.sqrt(len(u))
    ints = [IntUniform(1, 4).sample(rng) for _ in range(4000)]
    counts = np.bincount(ints, minlength=5)[1:]
    assert set(ints) == {1, 2, 3, 4}
    assert counts.min() > 850 and counts.max() < 1150
    logints = np.array([IntUniform(16, 1024, log=True).sample(rng) for _ in range(2000)])
    assert logints.min() >= 16 and logints.max() <= 1024
    assert np.mean(logints < 128) == pytest.approx(0.5, abs=0.05)  # 128 is the geometric middle


@pytest.mark.parametrize("make, match", [
    (lambda: LogUniform(0, 1), "0 < low"),
    (lambda: LogUniform(1e-3, 1e-6), "low < high"),
    (lambda: Uniform(1.0, float("nan")), "finite"),
    (lambda: IntUniform(5, 5), "integers low < high"),
    (lambda: IntUniform(0, 5, log=True), "low >= 1"),
    (lambda: Choice(()), "at least one"),
    (lambda: Choice((object(),)), "str, int, float"),
])
def test_bad_sampler_options(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_space_round_trips_through_json():
    space = {"lr": LogUniform(1e-5, 1e-1), "p": Uniform(0, 0.5), "h": IntUniform(8, 64, log=True),
             "act": Choice(("relu", "tanh"))}
    js = json.loads(json.dumps(space_to_json(space)))
    assert js["lr"] == {"type": "loguniform", "low": 1e-5, "high": 1e-1, "log": True}
    assert space_from_json(js) == space
    with pytest.raises(ConfigError, match="allowed: 'loguniform'"):
        space_from_json({"x": {"type": "grid", "low": 0, "high": 1}})


def test_same_seed_same_trials_other_seed_other_trials():
    space = {"lr": LogUniform(1e-6, 1e-1), "reg": LogUniform(1e-5, 1.0)}
    a, b, c = sample_space(space, 10, seed=3), sample_space(space, 10, seed=3), sample_space(space, 10, seed=4)
    assert a == b
    assert a != c
    # Random, never a grid: no value repeats.
    assert len({d["lr"] for d in a}) == 10


def _toy_train(trial):
    """A tiny 'training': val accuracy peaks at lr = 1e-2; trial 1 raises before opening its run."""
    if trial.index == 1:
        raise RuntimeError("out of memory (simulated)")
    lr = trial.hparams["lr"]
    peak = math.exp(-(math.log10(lr) + 2) ** 2)
    with trial.monitor(num_classes=10, heartbeat=0) as mon:
        for step in range(5):
            mon.log(step, loss=2.3 - step * 0.1, val_acc=peak * (step + 1) / 5)
    return None


def test_random_search_writes_one_run_per_trial_and_survives_a_crash(tmp_path):
    space = {"lr": LogUniform(1e-5, 1.0), "reg": Uniform(0.0, 1.0)}
    res = random_search(_toy_train, space, 6, logdir=tmp_path, name="coarse", seed=11)
    assert [t.name for t in res.trials] == [f"coarse-t{i:03d}" for i in range(6)]
    assert [t.status for t in res.trials] == ["finished", "crashed"] + ["finished"] * 4
    assert res.trials[1].error == "RuntimeError: out of memory (simulated)" and res.trials[1].value is None
    for t in res.trials:
        run = Run(tmp_path / t.name)
        run.update()
        assert run.meta.hparams == t.hparams
        assert run.meta.search_space["lr"] == {"type": "loguniform", "low": 1e-5, "high": 1.0, "log": True}
        assert run.meta.status == t.status  # the crashed trial has a run folder marked crashed
    crashed = Run(tmp_path / "coarse-t001")
    crashed.update()
    assert "out of memory" in (crashed.meta.error or "")
    # The objective was read from each run: its best val_acc.
    best = res.best
    assert best is not None and best.value == pytest.approx(math.exp(-(math.log10(best.hparams["lr"]) + 2) ** 2))
    # Same seed, same trials, under a new search name since "coarse" exists.
    again = random_search(_toy_train, space, 6, logdir=tmp_path, name="coarse", seed=11)
    assert again.name == "coarse-2"
    assert [t.hparams for t in again.trials] == [t.hparams for t in res.trials]
    assert [t.seed for t in again.trials] == [t.seed for t in res.trials]


def test_trial_monitor_kwargs_for_training_code_that_builds_its_own_monitor(tmp_path):
    from monitor import Monitor

    def train(trial):
        with Monitor(trial.logdir, trial.name, heartbeat=0, **trial.monitor_kwargs) as mon:
            mon.log(0, loss=1.0, val_acc=trial.hparams["x"])
        return mon.run_dir

    res = random_search(train, {"x": Uniform(0, 1)}, 3, logdir=tmp_path, seed=0)
    assert [t.value for t in res.trials] == [t.hparams["x"] for t in res.trials]
    assert all(t.run_dir.name == t.name for t in res.trials)


def test_returned_objective_and_min_mode(tmp_path):
    res = random_search(lambda t: (t.hparams["x"] - 0.3) ** 2, {"x": Uniform(0, 1)}, 8,
                        logdir=tmp_path, seed=5, mode="min")
    vals = [t.hparams["x"] for t in res.trials]
    assert res.best.hparams["x"] == min(vals, key=lambda v: abs(v - 0.3))


def test_refine_narrows_around_the_best_in_log_space():
    space = {"lr": LogUniform(1e-6, 1e-1), "reg": Uniform(0.0, 1.0), "act": Choice(("relu", "tanh", "elu"))}
    trials = [
        TrialResult(0, "s-t000", {"lr": 1e-3, "reg": 0.30, "act": "relu"}, 0, "finished", 0.90, None, None),
        TrialResult(1, "s-t001", {"lr": 3e-3, "reg": 0.50, "act": "tanh"}, 0, "finished", 0.85, None, None),
        TrialResult(2, "s-t002", {"lr": 1e-2, "reg": 0.45, "act": "relu"}, 0, "finished", 0.80, None, None),
        TrialResult(3, "s-t003", {"lr": 1e-6, "reg": 0.99, "act": "elu"}, 0, "finished", 0.10, None, None),
        TrialResult(4, "s-t004", {"lr": 9e-2, "reg": 0.01, "act": "elu"}, 0, "crashed", None, "x", None),
    ]
    new = refine(trials, top_k=3, space=space, pad=0.0)
    assert isinstance(new["lr"], LogUniform)
    assert new["lr"].low == pytest.approx(1e-3) and new["lr"].high == pytest.approx(1e-2)
    assert new["reg"].low == pytest.approx(0.30) and new["reg"].high == pytest.approx(0.50)
    assert new["act"].choices == ("relu", "tanh")
    # Padding is symmetric in the exponent, not in the value.
    padded = refine(trials, top_k=3, space=space, pad=0.5)
    assert math.log10(padded["lr"].low) == pytest.approx(-3.5) and math.log10(padded["lr"].high) == pytest.approx(-1.5)
    # A single best trial: a window of min_width of the old range, centred on it (log space).
    one = refine(trials, top_k=1, space=space, min_width=0.2)
    assert math.log10(one["lr"].low) == pytest.approx(-3.5) and math.log10(one["lr"].high) == pytest.approx(-2.5)
    # Samples of the refined space stay in it.
    for hp in sample_space(new, 50, seed=1):
        assert 1e-3 <= hp["lr"] <= 1e-2


def test_refine_of_a_search_result_and_errors(tmp_path):
    res = random_search(_toy_train, {"lr": LogUniform(1e-5, 1.0)}, 8, logdir=tmp_path, seed=2)
    fine = refine(res, top_k=2)
    top = [t.hparams["lr"] for t in res.ranked()[:2]]
    assert fine["lr"].low <= min(top) and fine["lr"].high >= max(top)
    assert math.log10(fine["lr"].high / fine["lr"].low) < 5  # narrower than the coarse 5 decades
    with pytest.raises(ConfigError, match="top_k"):
        refine(res, top_k=0)
    with pytest.raises(ConfigError, match="needs space"):
        refine(res.trials)
    dead = [TrialResult(0, "a", {"lr": 1e-3}, 0, "crashed", None, "x", None)]
    with pytest.raises(ConfigError, match="no trial has a value"):
        refine(dead, space={"lr": LogUniform(1e-5, 1.0)})


def test_random_search_rejects_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="positive integer"):
        random_search(_toy_train, {"lr": LogUniform(1e-5, 1.0)}, 0, logdir=tmp_path)
    with pytest.raises(ConfigError, match="mode must be one of"):
        random_search(_toy_train, {"lr": LogUniform(1e-5, 1.0)}, 2, logdir=tmp_path, mode="best")
    with pytest.raises(ConfigError, match="must be a sampler"):
        random_search(_toy_train, {"lr": [1e-3, 1e-2]}, 2, logdir=tmp_path)
    with pytest.raises(ConfigError, match="one folder name"):
        random_search(_toy_train, {"lr": LogUniform(1e-5, 1.0)}, 2, logdir=tmp_path, name="../x")


def test_digits_example_coarse_then_fine(tmp_path, capsys):
    """examples/search_digits.py end to end, tiny: a coarse and a fine search of real digits trainings."""
    from core.compare import SummaryCache, search_findings
    from core.logdir import LogDir
    from examples.search_digits import main

    assert main(["--logdir", str(tmp_path), "--coarse-trials", "4", "--coarse-epochs", "1", "--fine-trials", "2",
                 "--fine-epochs", "1", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "coarse: 4 trials" in out and "fine ranges: lr in [" in out
    ld = LogDir(tmp_path)
    ld.refresh()
    names = ld.names()
    assert names == [f"coarse-t{i:03d}" for i in range(4)] + ["fine-t000", "fine-t001"]
    summaries = SummaryCache().summaries(ld.runs())
    spaces = {json.dumps(s.search_space, sort_keys=True) for s in summaries}
    assert len(spaces) == 2  # the fine search has its own, narrower, space
    fine = [s for s in summaries if s.run.startswith("fine")]
    lo, hi = fine[0].search_space["lr"]["low"], fine[0].search_space["lr"]["high"]
    assert all(lo <= s.hparams["lr"] <= hi for s in fine)
    coarse = [s for s in summaries if s.run.startswith("coarse") and s.best_val_acc == s.best_val_acc]
    best = max(coarse, key=lambda s: s.best_val_acc)
    assert lo <= best.hparams["lr"] <= hi  # the fine range is around the best coarse trial
    search_findings(summaries)  # runs on real data without error
