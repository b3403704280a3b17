"""Figure builders and page helpers: pure functions, checked on their data."""

from __future__ import annotations


import numpy as np
import plotly.graph_objects as go
import pytest

from core import Finding
from core.views import Lines
from dashboard import figures as F
from dashboard.context import run_href
from dashboard.findings import merge_findings, severity_counts
from dashboard.pages import match
from dashboard.pages.layers import pick_layers


@pytest.mark.parametrize("n", [10, 1999, 2000, 2001, 100_000])
def test_decimate_bounds_and_keeps_extremes(n):
    rng = np.random.default_rng(n)
    y = rng.standard_normal(n)
    spike_at = n // 3
    y[spike_at] = 1e6
    idx = F.decimate_index(y, 2000)
    assert len(idx) <= 2004
    assert np.all(np.diff(idx) > 0)
    assert idx[0] == 0 and idx[-1] == n - 1
    assert spike_at in idx
    assert y.min() == y[idx].min() or n <= 2000


def test_decimate_keeps_nan_markers():
    y = np.linspace(1, 2, 50_000)
    y[[100, 30_000, 30_001]] = np.nan
    y[40_000] = np.inf
    idx = F.decimate_index(y, 2000)
    for i in (100, 30_000, 40_000):
        assert i in idx
    # a long NaN tail is thinned, not kept whole
    y2 = np.concatenate([np.ones(10_000), np.full(40_000, np.nan)])
    idx2 = F.decimate_index(y2, 2000)
    assert 10_000 in idx2 and len(idx2) < 3000


def test_rebin_keeps_mass_and_places_it():
    lo = np.array([0.0, -1.0, np.nan, 5.0])
    hi = np.array([1.0, 2.0, np.nan, 5.0])  # last row: a constant layer
    counts = np.array([[1, 2, 3, 4], [4, 4, 4, 4], [9, 9, 9, 9], [0, 7, 0, 0]])
    edges, out = F.rebin(lo, hi, counts, bins=12)
    assert len(edges) == 13 and edges[0] == -1.0 and edges[-1] == 5.0
    np.testing.assert_allclose(out.sum(axis=1), [10, 16, 0, 7])
    # row 0 lives in [0, 1]: nothing below 0 or above 1
    assert out[0][edges[1:] <= 0].sum() == 0 and out[0][edges[:-1] >= 1].sum() == 0
    assert out[3, -1] == 7


def test_loss_figure_marks_nan_and_log_scale():
    steps = np.arange(100)
    loss = np.linspace(3, 1, 100)
    loss[60] = np.nan
    loss[80] = np.inf
    fig = F.loss_figure(steps, loss, log_y=True)
    marks = [t for t in fig.data if t.name == "NaN/Inf loss"]
    assert len(marks) == 1
    assert list(marks[0].x) == [60, 80]
    assert list(marks[0].text) == ["nan", "inf"]
    assert fig.layout.yaxis.type == "log"
    assert F.loss_figure(steps, np.ones(100)).layout.yaxis.type == "linear"
    assert all(t.name != "NaN/Inf loss" for t in F.loss_figure(steps, np.ones(100)).data)


def test_loss_figure_decimates_long_runs():
    fig = F.loss_figure(np.arange(50_000), np.random.default_rng(0).random(50_000), max_points=2000)
    assert len(fig.data[0].x) <= 2004


def test_accuracy_figure_shades_the_gap():
    ts = np.arange(0, 100)
    ta = np.linspace(0.1, 1.0, 100)
    vs = np.arange(0, 100, 10)
    va = np.linspace(0.1, 0.6, 10)
    fig = F.accuracy_figure(ts, ta, vs, va)
    fills = [t for t in fig.data if t.fill == "tonexty"]
    assert len(fills) == 1 and fills[0].name == "train-val gap"
    base = fig.data[list(fig.data).index(fills[0]) - 1]
    np.testing.assert_allclose(base.y, np.interp(vs, ts, ta))
    assert {t.name for t in fig.data} >= {"train acc", "val acc"}


def test_depth_figure_has_mean_and_std_per_layer():
    names = [f"fc{i}" for i in range(5)]
    fig = F.depth_figure(names, np.arange(5.0), np.ones(5) * 2, step=40, highlight="fc2")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [list(t.y) for t in lines] == [[0, 1, 2, 3, 4], [2, 2, 2, 2, 2]]
    assert "step 40" in fig.layout.title.text
    rings = [t for t in fig.data if t.mode == "markers"]
    assert [float(t.y[0]) for t in rings] == [2.0, 2.0]


def test_depth_figure_labels_fewer_layers_the_longer_their_names():
    def labelled(names):
        return list(F.depth_figure(names, np.zeros(len(names)), np.ones(len(names))).layout.xaxis.ticktext)

    assert labelled([f"fc{i}" for i in range(20)]) == [f"fc{i}" for i in range(20)]  # short names: every one
    long = labelled([f"block{i:03d}.act" for i in range(200)])
    assert 4 <= len(long) <= 11 and long[0] == "block000.act"  # slanted, about 20 px apart at 1000 px
    assert len(labelled([f"encoder.layers.{i}.self_attn.out_proj" for i in range(50)])) == 4
    assert labelled(["", ""]) == ["", ""]  # names the reader accepts


def test_update_ratio_figure_draws_band_on_log_axis():
    steps = np.arange(10)
    ratio = np.column_stack([np.full(10, 1e-3), np.full(10, 1e-1), np.full(10, np.nan)])
    fig = F.update_ratio_figure(Lines.of(steps, ratio, ["W1", "W2", "W3"]))
    assert fig.layout.yaxis.type == "log"
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == 1 and (rects[0].y0, rects[0].y1) == F.RATIO_BAND
    # The band is named in the legend (a label inside the plot was drawn under the curves);
    # the all-NaN parameter is not drawn.
    assert [t.name for t in fig.data] == ["healthy band 1e-4 .. 1e-2", "W1", "W2"]
    assert not fig.layout.annotations


def test_many_traces_share_a_point_budget():
    steps = np.arange(10_000)
    ratio = np.random.default_rng(1).random((10_000, 100)) * 1e-3
    fig = F.update_ratio_figure(Lines.of(steps, ratio, [f"p{i}" for i in range(100)]), max_points=2000)
    total = sum(len(t.x) for t in fig.data)
    assert len(fig.data) == 101  # the band's legend entry and 100 parameters
    assert total <= F.FIGURE_POINT_BUDGET + 100 * 8


def test_heatmap_share_columns_sum_to_one():
    steps = np.array([0, 10, 20])
    lo, hi = np.array([-1.0, -2.0, -0.5]), np.array([1.0, 2.0, 0.5])
    counts = np.ones((3, 16))
    fig = F.heatmap_figure("fc1", steps, lo, hi, counts)
    z = np.asarray(fig.data[0].z)
    np.testing.assert_allclose(z.sum(axis=0), 1.0)
    assert list(fig.data[0].x) == [0, 10, 20]


def test_histograms_and_dead_saturation_figures():
    names = ["a", "b"]
    fig = F.histograms_figure(names, np.array([0.0, -1.0]), np.array([1.0, 1.0]), np.ones((2, 8)), step=5)
    assert len(fig.data) == 2 and all(isinstance(t, go.Bar) for t in fig.data)
    steps = np.arange(4)
    dead = np.array([[0.1, np.nan]] * 4)
    sat = np.array([[np.nan, 0.5]] * 4)
    fig = F.dead_saturation_figure(Lines.of(steps, dead, names), Lines.of(steps, sat, names))
    assert [t.name for t in fig.data] == ["a", "b"]


def test_each_histogram_and_each_line_is_drawn_in_its_own_subplot():
    # The traces are added in one call (as dicts): each still lands in its subplot.
    names = [f"l{i}" for i in range(6)]
    fig = F.histograms_figure(names, np.zeros(6), np.ones(6), np.ones((6, 4)), cols=4)
    assert [(t.name, t.xaxis, t.yaxis) for t in fig.data] == [(n, f"x{i + 1 if i else ''}", f"y{i + 1 if i else ''}")
                                                              for i, n in enumerate(names)]
    assert all(isinstance(t, go.Bar) for t in fig.data)
    steps = np.arange(4)
    dead = np.array([[0.1, np.nan, 0.2]] * 4)
    sat = np.array([[np.nan, 0.5, np.nan]] * 4)
    fig = F.dead_saturation_figure(Lines.of(steps, dead, names[:3]), Lines.of(steps, sat, names[:3]), highlight="l2")
    assert [(t.name, t.xaxis, t.yaxis) for t in fig.data] == [("l0", "x", "y"), ("l2", "x", "y"), ("l1", "x2", "y2")]
    assert all(isinstance(t, go.Scatter) for t in fig.data)
    assert [t.line.width for t in fig.data] == [1.3, 3, 1.3]  # the highlighted layer stands out
    lines = Lines.of(steps, np.full((4, 2), 1e-3), ["w", "b"])
    assert [t.name for t in F.update_ratio_figure(lines).data][1:] == ["w", "b"]  # after the healthy band's entry


def test_the_no_layer_note_sits_on_the_empty_subplot():
    """A ReLU-only run: the note was drawn at the middle of the dead-units subplot, over its lines,
    and the empty saturation subplot (dropped by Plotly.js for want of a trace) showed only its title."""
    steps = np.arange(5)
    fig = F.dead_saturation_figure(Lines.of(steps, np.full((5, 1), 0.2), ["fc1"]),
                                   Lines.of(steps, np.full((5, 1), np.nan), ["fc1"]))
    note = [a for a in fig.layout.annotations if a.text == "no layer of this kind"]
    assert len(note) == 1 and (note[0].xref, note[0].yref) == ("x2 domain", "y2 domain")
    assert {(t.xaxis, t.yaxis) for t in fig.data} == {("x", "y"), ("x2", "y2")}  # both subplots kept
    assert [t.name for t in fig.data if t.showlegend is not False] == ["fc1"]


@pytest.mark.parametrize("loss,want", [
    (np.linspace(2.3, 0.1, 50), False),                               # 23x: linear reads fine
    (np.geomspace(2.3, 1e-3, 50), True),                              # more than two decades
    (np.r_[1.1, 4.7, np.inf, np.inf, np.geomspace(1e12, 6e9, 20)], True),  # diverged
    (np.r_[1.0, np.nan, 0.5], True),
    (np.linspace(1.0, -1.0, 5), False),                               # a negative loss has no log axis
])
def test_the_loss_axis_is_log_by_default_when_the_loss_spans_decades_or_diverges(loss, want):
    fig = F.loss_figure(np.arange(len(loss)), loss)
    assert fig.layout.yaxis.type == ("log" if want else "linear")
    assert F.loss_figure(np.arange(len(loss)), loss, log_y=False).layout.yaxis.type == "linear"  # the toggle


def test_tick_labels_use_exponents_not_si_prefixes():
    """Plotly's default writes 1e-12 as "1p" and 6e9 as "6B"; every axis, subplots included, uses 1e-12."""
    fig = F.dead_saturation_figure(Lines.of(np.arange(3), np.full((3, 1), 0.1), ["a"]),
                                   Lines.of(np.arange(3), np.full((3, 1), 0.1), ["a"]))
    tpl = fig.layout.template.layout
    assert tpl.xaxis.exponentformat == "e" and tpl.yaxis.exponentformat == "e"


def test_empty_inputs_give_a_message():
    e = np.empty(0)
    for fig in (F.loss_figure(e, e), F.accuracy_figure(e, e, e, e), F.lr_figure(e, e),
                F.depth_figure([], e, e), F.heatmap_figure("x", e, e, e, np.empty((0, 0)))):
        assert fig.layout.annotations and fig.layout.annotations[0].text


def test_route_matching_and_hrefs_round_trip():
    hostile = "<img src=x onerror=alert(1)>"
    href = run_href(hostile, "layers", layer="a b")
    path, _, query = href.partition("?")
    assert "<" not in href and query == "layer=a+b"
    assert match("/run/<run>/layers", path) == {"run": hostile}
    assert match("/run/<run>", path) is None
    assert match("/", "/") == {}


def test_findings_merge_newest_first_and_count():
    a = Finding("nan_loss", "error", 50)
    b = Finding("dead_relu", "warning", 10, ("fc1",))
    b_later = Finding("dead_relu", "warning", 30, ("fc1",))
    merged = merge_findings([a, b_later], [b])
    assert [(f.rule, f.step) for f in merged] == [("nan_loss", 50), ("dead_relu", 10)]
    assert severity_counts(merged) == {"error": 1, "warning": 1, "info": 0}


def test_pick_layers_keeps_highlight():
    names = [f"l{i}" for i in range(100)]
    picked = pick_layers(names, "l37", k=12)
    assert len(picked) == 12 and "l37" in picked and picked[0] == "l0" and picked[-1] == "l99"
    assert pick_layers(names[:5], None) == names[:5]


def test_layer_legends_and_hover_read_name_and_module_class_literally():
    names = ["encoder.layers.0.relu()", "fc<b>1</b>", "plain"]
    types = {"encoder.layers.0.relu()": "relu()", "fc<b>1</b>": "Linear"}
    steps = np.arange(3)
    frac = np.full((3, 3), 0.1)
    fig = F.dead_saturation_figure(Lines.of(steps, frac, names), Lines.of(steps, frac, names), types=types)
    legend = [tr.name for tr in fig.data[:3]]
    assert legend == ["encoder.layers.0.relu()", "fc&lt;b&gt;1&lt;/b&gt; (Linear)", "plain"]
    fig = F.depth_figure(names, np.zeros(3), np.ones(3), kinds=["relu", "linear", "tanh"], types=types)
    assert list(fig.data[0].text) == ["encoder.layers.0.relu()", "fc&lt;b&gt;1&lt;/b&gt; (Linear)", "plain (tanh)"]
    fig = F.histograms_figure(names, np.zeros(3), np.ones(3), np.ones((3, 4)), types=types)
    assert [a.text for a in fig.layout.annotations] == legend


def test_parallel_coordinates_of_many_runs_draw_the_best_by_the_metric():
    import pandas as pd

    from core.compare import HP_PREFIX
    from dashboard.compare_figures import MAX_LINES, parallel_figure

    n = MAX_LINES + 500
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"run": [f"r{i}" for i in range(n)], HP_PREFIX + "lr": 10 ** rng.uniform(-5, 0, n),
                       "best_val_acc": rng.uniform(0, 1, n), "final_loss": rng.uniform(0, 3, n)})
    df.loc[3, "best_val_acc"] = np.nan  # left out, and said
    specs = {"lr": {"log": True}}
    fig = parallel_figure(df, ["lr"], specs=specs)
    acc = np.asarray(fig.data[0].dimensions[-1]["values"])
    assert len(acc) == MAX_LINES
    assert acc.min() >= np.sort(df["best_val_acc"].dropna())[-MAX_LINES]  # the best, not any
    assert fig.layout.title.text == (f"Parallel coordinates: the best {MAX_LINES:,} of {n - 1:,} runs by "
                                     "best_val_acc (1 run without a value left out)")
    loss = np.asarray(parallel_figure(df, ["lr"], metric="final_loss", specs=specs).data[0].dimensions[-1]["values"])
    assert loss.max() <= np.sort(df["final_loss"])[MAX_LINES - 1]  # lower is better
    few = parallel_figure(df.head(10), ["lr"], specs=specs)
    assert len(few.data[0].dimensions[-1]["values"]) == 9 and few.layout.title.text.startswith("Parallel coordinates (")


def test_a_log_sampled_scatter_axis_labels_values_without_minor_ticks():
    import pandas as pd

    from core.compare import HP_PREFIX
    from dashboard.compare_figures import scatter_figure

    df = pd.DataFrame({"run": ["a", "b", "c"], HP_PREFIX + "lr": [0.01, 0.5, 30.0], "best_val_acc": [0.93, 0.98, 0.48]})
    log = scatter_figure(df, "lr", specs={"lr": {"log": True}}).layout.xaxis
    assert log.type == "log" and log.tickformat  # 0.4, not a lone "4" between decades
    assert not log.minor.ticks  # marks beside close labels read as stray characters
    assert scatter_figure(df, "lr").layout.xaxis.type == "linear"
