"""``core.views``: what a figure reads from a run comes back bounded, with its spikes and NaNs, from one moment."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from core import views
from core.reader import Run


def _acts(step: int, names: list[str], value: float | None = None, **fields) -> dict:
    """An acts record whose every field of every layer is ``value`` (default: the step), histograms of step counts."""
    k = len(names)
    v = float(step) if value is None else value
    rec = {"kind": "acts", "step": step, "time": 100.0 + step, "layers": names,
           **{f: [v] * k for f in ("mean", "std", "min", "max", "zero_frac", "dead_frac", "sat_frac")},
           "nan": [0] * k, "inf": [0] * k, "hist_lo": [-1.0] * k, "hist_hi": [1.0] * k, "hist": [[step, 1]] * k}
    rec.update(fields)
    return rec


def _params(step: int, names: list[str], ratio: list[float | None]) -> dict:
    k = len(names)
    return {"kind": "params", "step": step, "time": 100.0 + step, "params": names, "upd_ratio": ratio,
            "grad_norm": [1.0] * k}


def _scalars(step: int, **values) -> dict:
    return {"kind": "scalars", "step": step, "time": 100.0 + step, "values": values}


def _run(write_run, records, file: str, **kw) -> Run:
    run = Run(write_run(records, file=file), **kw)
    run.update()
    return run


def test_a_long_series_comes_back_bounded_with_its_spike_and_its_nan(write_run):
    n = 20_000
    loss = np.linspace(3.0, 1.0, n)
    loss[7_777] = 50.0
    recs = [_scalars(s, loss=float(v)) for s, v in enumerate(loss)]
    recs[12_345] = {**_scalars(12_345, loss=None), "nonfinite": {"loss": "nan"}}
    run = _run(write_run, recs, "scalars.r0.jsonl")
    s = views.series(run, "loss", max_points=500)
    assert len(s) <= 504 and s.name == "loss"
    assert np.all(np.diff(s.steps) > 0)
    assert 7_777 in s.steps and float(s.values[s.steps == 7_777][0]) == 50.0
    assert 12_345 in s.steps and np.isnan(s.values[s.steps == 12_345][0])
    assert (s.steps[0], s.steps[-1]) == (0, n - 1)  # first and last points are always kept
    assert len(s.times) == len(s)
    assert len(views.series(run, "loss", max_points=None)) == n


def test_a_series_is_found_under_its_alias_and_is_empty_when_missing(write_run):
    run = _run(write_run, [_scalars(0, val_accuracy=0.5), _scalars(1, val_accuracy=0.75)], "scalars.r0.jsonl")
    s = views.series(run, "val_acc")
    assert s.name == "val_accuracy" and s.values.tolist() == [0.5, 0.75]
    assert len(views.series(run, "loss")) == 0


def test_layer_lines_share_the_figure_budget_and_keep_each_layers_extremes(write_run):
    names = [f"l{i}" for i in range(40)]
    recs = [_acts(s, names, value=0.1) for s in range(3_000)]
    recs[1_000] = _acts(1_000, names, value=0.9)  # a spike in every layer
    recs[2_000] = _acts(2_000, names, dead_frac=[None] * 40)  # no value of any layer at that step
    run = _run(write_run, recs, "layers.r0.jsonl")
    lines = views.layer_lines(run, "dead_frac", max_points=2000)
    assert lines.names == tuple(names) and lines.span == (0, 2_999)
    per = views.points_per_trace(40, 2000)
    assert per < 2000  # forty lines of a 2000-point budget each would pass the figure's budget
    for x, y in zip(lines.steps, lines.values):
        assert len(x) == len(y) <= per + 4
        assert 1_000 in x and y[x == 1_000][0] == 0.9
        assert 2_000 in x and np.isnan(y[x == 2_000][0])
    assert lines.drawable() == list(range(40))


def test_layer_lines_draw_only_the_layers_asked_for_in_their_order(write_run):
    run = _run(write_run, [_acts(s, ["a", "b", "c"]) for s in range(5)], "layers.r0.jsonl")
    lines = views.layer_lines(run, "mean", ["c", "gone", "a"])
    assert lines.names == ("c", "a")
    assert [v.tolist() for v in lines.values] == [[0, 1, 2, 3, 4]] * 2


def test_param_lines_on_a_log_axis_drop_what_it_cannot_draw(write_run):
    recs = [_params(0, ["W", "b"], [1e-3, 0.0]), _params(1, ["W", "b"], [-1.0, None]), _params(2, ["W", "b"], [2e-3, 0.0])]
    run = _run(write_run, recs, "layers.r0.jsonl")
    lines = views.param_lines(run, "upd_ratio", positive=True)
    assert lines.names == ("W", "b")
    assert np.array_equal(lines.values[0], [1e-3, np.nan, 2e-3], equal_nan=True)
    assert lines.drawable() == [0]  # b has no positive value
    assert views.param_value_at(run, "upd_ratio", "W", 1) == -1.0  # the value itself, not the drawn one
    assert np.isnan(views.param_value_at(run, "upd_ratio", "W", -5))
    assert np.isnan(views.param_value_at(run, "upd_ratio", "nope", 1))


def test_layers_at_a_step_and_an_empty_run(write_run):
    meta = {"run": "r", "layers": [{"name": "b", "kind": "relu"}, {"name": "a", "kind": "tanh"}]}
    run = Run(write_run([_acts(s, ["a", "b"]) for s in (0, 10, 20)], meta=meta, file="layers.r0.jsonl"))
    run.update()
    at = views.layers_at(run, step=15, fields=("mean",))
    assert (at.step, at.row, at.names, at.kinds) == (10, 1, ["b", "a"], ["relu", "tanh"])
    assert at.values["mean"].tolist() == [10.0, 10.0]
    assert views.layers_at(run).step == 20
    assert views.layers_at(run, step=-1).step is None
    assert views.layers_at(run, row=3).step is None
    empty = Run(write_run([_scalars(0, loss=1.0)], name="empty"))
    empty.update()
    assert views.layers_at(empty).step is None and views.layer_lines(empty, "mean").span is None


def test_histograms_come_from_the_kept_row_at_or_before_the_step(write_run):
    run = _run(write_run, [_acts(s, ["a", "b"]) for s in range(40)], "layers.r0.jsonl", max_hist_rows=8)
    step, lo, hi, counts = views.histograms_at(run, ["b"], row=39)
    kept, *_ = run.acts.histograms()
    assert step == kept[-1] and step <= 39 and counts.shape == (1, 2) and counts[0, 0] == step
    assert views.histograms_at(run, ["b"], row=40) is None
    steps, lo, hi, counts = views.histogram_history(run, "a", max_columns=3)
    assert len(steps) == 3 and steps[0] == 0 and steps[-1] == kept[-1]
    assert counts[:, 0].tolist() == steps.tolist()  # each column is the right step's histogram
    assert len(views.histogram_history(run, "nope")[0]) == 0


@pytest.mark.parametrize("n", [10, 4_001, 100_000])
def test_decimation_keeps_first_last_extremes_and_every_isolated_nan(n):
    rng = np.random.default_rng(n)
    y = rng.standard_normal(n)
    y[n // 2] = 1e9
    y[n // 3] = -1e9
    bad = [n // 5, n // 5 + 2] if n > 100 else []
    y[bad] = np.nan
    idx = views.decimate_index(y, 1000)
    assert len(idx) <= 1004 and np.all(np.diff(idx) > 0)
    assert {0, n - 1, n // 2, n // 3, *bad} <= set(idx.tolist())


def _update_between_reads(run: Run, monkeypatch) -> None:
    """Make every ``run.acts.field`` call first let another thread read the rest of the files (for up to 0.5 s)."""
    real = run.acts.field

    def field(name: str):
        t = threading.Thread(target=run.update)
        t.start()
        t.join(timeout=0.5)  # under run.reading() the update waits for the lock: the timeout passes
        return real(name)

    monkeypatch.setattr(run.acts, "field", field)


def test_the_columns_of_a_growing_run_describe_one_moment(write_run, monkeypatch):
    """An update between taking the steps and taking a field used to give lines whose values and steps were
    of two moments (more values than steps); every value written here is its step, so a mismatch shows."""
    names = ["a", "b", "c"]
    path = write_run([_acts(s, names) for s in range(500)], file="layers.r0.jsonl")
    run = Run(path)
    run.update()
    _update_between_reads(run, monkeypatch)
    write_run([_acts(s, names) for s in range(500, 900)], file="layers.r0.jsonl")
    lines = views.layer_lines(run, "mean", max_points=300)
    assert lines.span == (0, 499)
    for x, y in zip(lines.steps, lines.values):
        assert np.array_equal(x.astype(np.float64), y)
    write_run([_acts(s, names) for s in range(900, 1000)], file="layers.r0.jsonl")
    at = views.layers_at(run, fields=("std",))
    assert at.values["std"].tolist() == [float(at.step)] * 3
