"""Run summaries, their incremental cache, and the edge_of_range search check."""

from __future__ import annotations

import json
import math
import time

import pytest

from core.compare import (
    HP_PREFIX, SummaryCache, edge_of_range, search_findings, summarize, summarize_logdir,
)
from core.errors import ConfigError
from core.reader import Run
from core.logdir import LogDir


def write_run(root, name, scalars, *, status="finished", hparams=None, space=None, error=None, findings=()):
    """A run folder written by hand per docs/format.md: meta.json plus scalars.r0.jsonl."""
    d = root / name
    d.mkdir(parents=True)
    meta = {"format": "babysitter", "format_version": 1, "run": name, "created": time.time(), "status": status,
            "ended": None, "error": error, "hparams": hparams or {}, "search_space": space or {}, "layers": []}
    (d / "meta.json").write_text(json.dumps(meta))
    with open(d / "scalars.r0.jsonl", "w") as f:
        for step, values in scalars:
            vals, tags = {}, {}
            for k, v in values.items():
                if isinstance(v, float) and not math.isfinite(v):
                    vals[k], tags[k] = None, ("nan" if v != v else "inf" if v > 0 else "-inf")
                else:
                    vals[k] = v
            rec = {"kind": "scalars", "step": step, "time": 1.0 + step, "values": vals}
            if tags:
                rec["nonfinite"] = tags
            f.write(json.dumps(rec) + "\n")
        for fd in findings:
            f.write(json.dumps({"kind": "finding", **fd}) + "\n")
    return d


def append(run_dir, step, **values):
    with open(run_dir / "scalars.r0.jsonl", "a") as f:
        f.write(json.dumps({"kind": "scalars", "step": step, "time": 1.0 + step, "values": values}) + "\n")


def test_summary_of_a_finished_run(tmp_path):
    rows = [(s, {"loss": 2.3 - 0.1 * s, "train_acc": 0.1 * s}) for s in range(10)]
    rows += [(4, {"val_acc": 0.30}), (6, {"val_acc": 0.50}), (8, {"val_acc": 0.45})]
    rows.append((9, {"train_acc": 0.99}))  # after the last validation: not part of the gap
    write_run(tmp_path, "a", rows, hparams={"lr": 1e-3})
    run = Run(tmp_path / "a")
    run.update()
    s = summarize(run)
    assert s.status == "finished" and s.steps == 9
    assert s.final_val_acc == pytest.approx(0.45)
    assert (s.best_val_acc, s.best_val_step) == (pytest.approx(0.50), 6)
    assert s.final_train_acc == pytest.approx(0.8)  # the train accuracy at step 8, the last validation
    assert s.gap == pytest.approx(0.8 - 0.45)
    assert s.final_loss == pytest.approx(2.3 - 0.9)
    assert not s.diverged
    assert s.hparams == {"lr": 1e-3}


def test_summary_of_a_nan_run(tmp_path):
    rows = [(0, {"loss": 2.3, "val_acc": 0.1}), (1, {"loss": 40.0}), (2, {"loss": float("nan"), "val_acc": float("nan")})]
    nan_finding = {"step": 2, "rule": "nan_loss", "severity": "error", "layers": [], "message": "NaN", "fix": "lower lr"}
    write_run(tmp_path, "nan", rows, findings=[nan_finding])
    run = Run(tmp_path / "nan")
    run.update()
    s = summarize(run)
    assert s.diverged
    assert math.isnan(s.final_loss)
    assert math.isnan(s.final_val_acc)  # the last value, as logged
    assert s.best_val_acc == pytest.approx(0.1)  # the best finite one
    assert s.severities["error"] >= 1 and "nan_loss" in s.rules
    js = s.to_json()
    assert js["final_loss"] is None and js["diverged"] is True
    json.dumps(js, allow_nan=False)  # strict JSON


def test_summary_of_a_crashed_run(tmp_path):
    write_run(tmp_path, "boom", [(0, {"loss": 2.3})], status="crashed", error="RuntimeError: CUDA out of memory")
    write_run(tmp_path, "empty", [], status="crashed", error="ValueError: bad shape")
    ld = LogDir(tmp_path)
    ld.refresh()
    cache = SummaryCache()
    by = {s.run: s for s in cache.summaries(ld.runs())}
    assert by["boom"].status == "crashed" and by["boom"].steps == 0
    assert by["boom"].error == "RuntimeError: CUDA out of memory"
    assert math.isnan(by["boom"].final_val_acc) and math.isnan(by["boom"].gap)
    assert by["empty"].steps is None and math.isnan(by["empty"].final_loss) and not by["empty"].diverged
    df = summarize_logdir(ld)
    assert list(df["status"]) == ["crashed", "crashed"]
    assert df["steps"].isna().tolist() == [False, True]


def test_cache_updates_only_the_run_that_changed(tmp_path):
    for i in range(5):
        write_run(tmp_path, f"r{i}", [(0, {"loss": 2.0, "val_acc": 0.1 * i})], status="running", hparams={"i": i})
    ld = LogDir(tmp_path)
    ld.refresh()
    cache = SummaryCache()
    first = cache.summaries(ld.runs())
    assert cache.computed == 5
    again = cache.summaries(ld.runs())
    assert cache.computed == 5 and again == first  # nothing changed: nothing recomputed
    append(tmp_path / "r3", 1, loss=1.5, val_acc=0.9)
    ld.mark_dirty("r3")
    ld.refresh()
    third = {s.run: s for s in cache.summaries(ld.runs())}
    assert cache.computed == 6
    assert third["r3"].best_val_acc == pytest.approx(0.9) and third["r3"].steps == 1
    assert third["r1"] is {s.run: s for s in first}["r1"]
    df = summarize_logdir(ld, cache)
    assert cache.computed == 6
    assert df.loc[df["run"] == "r3", "best_val_acc"].item() == pytest.approx(0.9)
    assert df[HP_PREFIX + "i"].tolist() == [0, 1, 2, 3, 4]


def test_hyperparameter_names_cannot_shadow_summary_columns(tmp_path):
    write_run(tmp_path, "x", [(0, {"loss": 1.0})], hparams={"status": "evil", "run": "<b>"})
    df = summarize_logdir(tmp_path)
    assert df["status"].item() == "finished" and df["run"].item() == "x"
    assert df["hp.status"].item() == "evil"


LOG_SPACE = {"lr": {"type": "loguniform", "low": 1e-6, "high": 1e-2, "log": True}}


def _trials(best_lr, others=(1e-5, 1e-4, 3e-4)):
    return [("s-t000", {"lr": best_lr}, 0.9)] + [(f"s-t{i + 1:03d}", {"lr": v}, 0.5) for i, v in enumerate(others)]


@pytest.mark.parametrize("best_lr, side", [
    (1.5e-6, "low"),   # log position 0.04
    (8e-3, "high"),    # 0.98
    (1e-2, "high"),    # the end itself
    (1e-6, "low"),
])
def test_edge_of_range_fires_at_either_end(best_lr, side):
    (e,) = edge_of_range(_trials(best_lr), LOG_SPACE)
    assert e.param == "lr" and e.side == side and e.best_run == "s-t000"
    assert e.finding.rule == "edge_of_range" and e.finding.severity == "warning"
    # The suggested range keeps the width (4 decades) and is centred on the best value, in log space.
    assert math.log10(e.suggest_high / e.suggest_low) == pytest.approx(4.0)
    assert math.sqrt(e.suggest_low * e.suggest_high) == pytest.approx(best_lr)
    assert "[" in e.finding.fix and e.search == "s"


@pytest.mark.parametrize("best_lr", [1e-4, 3e-3, 6e-6, 3.9e-3])
def test_edge_of_range_quiet_inside(best_lr):
    # 6e-6 is at log position 0.19 and 3.9e-3 at 0.90: inside in log space.
    assert edge_of_range(_trials(best_lr), LOG_SPACE) == []


def test_edge_of_range_measures_log_params_in_log_space():
    # 1e-3 is at 10% of [1e-6, 1e-2]... in value it sits at 0.1, in log space at 0.75: not an edge.
    assert edge_of_range(_trials(1e-3), LOG_SPACE) == []
    lin = {"lr": {"type": "uniform", "low": 1e-6, "high": 1e-2, "log": False}}
    (e,) = edge_of_range(_trials(5e-4), lin)  # linear position 0.05
    assert e.side == "low" and not e.log


def test_edge_of_range_options_and_guards():
    assert edge_of_range(_trials(1e-6)[:2], LOG_SPACE) == []  # fewer than min_trials
    crashed = [("a", {"lr": 1e-6}, None), ("b", {"lr": 1e-4}, 0.5), ("c", {"lr": 3e-4}, 0.4), ("d", {"lr": 1e-3}, 0.3)]
    assert edge_of_range(crashed, LOG_SPACE) == []  # a crashed run does not count as best
    lossy = [("a", {"lr": 1e-6}, 0.1), ("b", {"lr": 1e-4}, 0.5), ("c", {"lr": 3e-4}, 0.6)]
    assert edge_of_range(lossy, LOG_SPACE) == []  # highest is c, inside
    (e,) = edge_of_range(lossy, LOG_SPACE, mode="min")  # lowest (a loss, say) is a, at the low end
    assert e.best_run == "a" and e.side == "low"
    # 5e-6 sits at log position 0.17: an edge for outer=0.2, not for the default 0.1.
    assert edge_of_range(_trials(5e-6), LOG_SPACE) == []
    assert edge_of_range(_trials(5e-6), LOG_SPACE, outer=0.2)[0].side == "low"
    for bad, match in [({"mode": "best"}, "mode"), ({"outer": 0.5}, "outer"), ({"min_trials": 0}, "min_trials")]:
        with pytest.raises(ConfigError, match=match):
            edge_of_range(_trials(1e-6), LOG_SPACE, **bad)
    choice = {"act": {"type": "choice", "choices": ["relu", "tanh"]}}
    assert edge_of_range([(n, {"act": "relu"}, v) for n, _, v in _trials(1e-6)], choice) == []


def test_search_findings_group_runs_by_search_space(tmp_path):
    coarse = {"lr": {"type": "loguniform", "low": 1e-6, "high": 1e-1, "log": True}}
    fine = {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2, "log": True}}
    for i, (lr, acc) in enumerate([(5e-2, 0.9), (1e-5, 0.2), (1e-3, 0.6)]):
        write_run(tmp_path, f"coarse-t{i:03d}", [(0, {"loss": 1.0, "val_acc": acc})], hparams={"lr": lr}, space=coarse)
    for i, (lr, acc) in enumerate([(1e-3, 0.9), (2e-4, 0.5), (8e-3, 0.6)]):
        write_run(tmp_path, f"fine-t{i:03d}", [(0, {"loss": 1.0, "val_acc": acc})], hparams={"lr": lr}, space=fine)
    write_run(tmp_path, "alone", [(0, {"loss": 1.0, "val_acc": 1.0})], hparams={"lr": 1e-6})
    ld = LogDir(tmp_path)
    ld.refresh()
    found = search_findings(SummaryCache().summaries(ld.runs()))
    assert [(e.search, e.param, e.side, e.best_run) for e in found] == [("coarse", "lr", "high", "coarse-t000")]


def test_edge_of_range_is_in_the_diagnosis_registry(tmp_path):
    from core.diagnose import diagnose, rule_ids, threshold_table

    assert "edge_of_range" in rule_ids()
    assert ("edge_of_range.outer", 0.1) in [(t[0], t[1]) for t in threshold_table()]
    # On one run it says nothing, even when that run's value sits at the edge of its range.
    write_run(tmp_path, "s-t000", [(0, {"loss": 2.0, "val_acc": 0.9})], hparams={"lr": 1e-6}, space=LOG_SPACE)
    assert all(f.rule != "edge_of_range" for f in diagnose(tmp_path / "s-t000"))


def _spread_trials(values, score):
    return [(f"s-t{i:03d}", {"lr": v}, score(v)) for i, v in enumerate(values)]


# Ten log-uniform samples of [1e-6, 1e-2] whose highest, 1e-3, sits at 75% of the range: none in the outer 10%.
SPREAD = [1.2e-6, 4e-6, 1e-5, 2.5e-5, 6e-5, 1.1e-4, 2.2e-4, 3.5e-4, 6e-4, 1e-3]


def test_edge_of_range_fires_when_the_best_is_the_highest_sample_and_the_objective_rises_toward_it():
    rising = _spread_trials(SPREAD, lambda v: 0.5 + 0.04 * math.log10(v) + (0.01 if v == 4e-6 else 0.0))
    (e,) = edge_of_range(rising, LOG_SPACE)
    assert (e.reason, e.side, e.best_value, e.best_run) == ("trend", "high", 1e-3, "s-t009")
    assert e.position == pytest.approx(0.75) and e.trend > 0.9
    # The message says why and gives the range to try next: the same 4 decades, centred on 1e-3.
    assert "highest value sampled" in e.finding.message and "rank correlation" in e.finding.message
    assert (e.suggest_low, e.suggest_high) == (pytest.approx(1e-5), pytest.approx(0.1))
    assert "[1e-05, 0.1]" in e.finding.fix
    falling = _spread_trials(SPREAD, lambda v: -math.log10(v))  # best at the lowest sample, 1.2e-6
    (e,) = edge_of_range(falling, LOG_SPACE)
    assert e.side == "low" and e.best_value == 1.2e-6


def test_edge_of_range_trend_needs_a_trend_and_enough_runs():
    # The best run holds the highest value, but the objective does not rise toward it.
    zigzag = _spread_trials(SPREAD, lambda v: 0.9 if v == 1e-3 else (0.6 if SPREAD.index(v) % 2 else 0.7 - v))
    assert edge_of_range(zigzag, LOG_SPACE) == []
    # Best in the middle: no edge, whatever the trend.
    peak = _spread_trials(SPREAD, lambda v: -abs(math.log10(v) + 4.5))
    assert edge_of_range(peak, LOG_SPACE) == []
    rising = _spread_trials(SPREAD, lambda v: math.log10(v))
    assert edge_of_range(rising[-5:], LOG_SPACE) == []  # 5 runs: below min_trend_trials (6)
    assert edge_of_range(rising[-5:], LOG_SPACE, min_trend_trials=5)[0].reason == "trend"
    assert edge_of_range(rising, LOG_SPACE, min_trend=1.0)[0].reason == "trend"  # a perfect rank order


def test_edge_of_range_trend_on_a_real_random_search(tmp_path):
    """Ten real trainings: with 1 epoch, accuracy rises with the learning rate up to the highest sample."""
    from monitor.search import LogUniform, random_search
    from tests._nets import train_mlp

    def train(trial):
        kw = trial.monitor_kwargs
        train_mlp(tmp_path, trial.name, lr=trial.hparams["lr"], epochs=1, every=50, seed=trial.seed,
                  search_space=kw["search_space"])

    # Seed 2 draws a highest learning rate of 0.11, at 81% of [1e-5, 1] in log space.
    result = random_search(train, {"lr": LogUniform(1e-5, 1.0)}, 10, logdir=tmp_path, name="lr", seed=2)
    best = result.best
    assert best.hparams["lr"] == max(t.hparams["lr"] for t in result.trials)
    (e,) = result.edge_findings()
    assert e.reason == "trend" and e.side == "high" and e.trend >= 0.6 and 0.7 < e.position < 0.9
    ld = LogDir(tmp_path)
    ld.refresh()
    (e2,) = search_findings(SummaryCache().summaries(ld.runs()))
    assert (e2.reason, e2.best_run, e2.side) == ("trend", best.name, "high")
