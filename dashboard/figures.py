"""Figure builders: pure functions from arrays to Plotly figures.

No function here reads a file or touches Dash; callbacks fetch the data from ``core``
(``core.views``, which downsamples what it reads) and pass it in. A long series passed in
whole is decimated the same way before it is drawn (``core.views.decimate_index``: min/max
bucketing keeps every spike visible, and non-finite points are kept so that a NaN is never
decimated away). Names from a run are drawn through ``plot_text`` (literal text, never
Plotly markup).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.views import FIGURE_POINT_BUDGET, Lines, decimate_index, points_per_trace

from . import theme
from ._text import plot_text

__all__ = [
    "decimate_index", "rebin", "loss_figure", "accuracy_figure", "lr_figure", "depth_figure",
    "histograms_figure", "heatmap_figure", "dead_saturation_figure", "update_ratio_figure", "grad_norm_figure",
    "empty_figure", "points_per_trace", "layer_labels", "loss_wants_log", "HEALTHY_RATIO", "RATIO_BAND",
    "LOG_SPAN", "FIGURE_POINT_BUDGET", "Lines",
]

HEALTHY_RATIO = 1e-3          # the lecture's "update:weight should be around 1e-3"
RATIO_BAND = (1e-4, 1e-2)     # drawn as the healthy band
LOG_SPAN = 100.0              # a loss spanning more than two decades is drawn on a log axis by default


def _thin(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    idx = decimate_index(y, max_points)
    return np.asarray(x)[idx], np.asarray(y, dtype=np.float64)[idx]


def layer_labels(names: Sequence[str], types: Mapping[str, str] | None, limit: int | None = None) -> list[str]:
    """``name (Type)`` per layer whose module class is known, else the name; escaped for Plotly's label markup.

    With ``limit``, a longer label keeps its last ``limit`` characters (the distinguishing part and the class).
    """
    types = types or {}
    out = []
    for n in names:
        t = types.get(n)
        # an activation function's name says it already: "block.relu()", not "block.relu() (relu())"
        label = f"{n} ({t})" if t and t not in str(n).rsplit(".", 1)[-1] else str(n)
        if limit is not None and len(label) > limit:
            label = "…" + label[-(limit - 1):]
        out.append(plot_text(label, len(label)))
    return out


def empty_figure(message: str, height: int = theme.SMALL_GRAPH_HEIGHT) -> go.Figure:
    """A blank figure that says why it is blank."""
    fig = go.Figure(layout=theme.base_layout(height=height))
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font=dict(color=theme.MUTED, size=13))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def loss_wants_log(*series: np.ndarray | None) -> bool:
    """True when a loss reads truthfully only on a log axis.

    That is when its positive finite values span more than ``LOG_SPAN`` (two decades), or
    when it diverged (a NaN/Inf value): on a linear axis a loss that blew up to 1e12 and
    then crept down to 6e9 looks like a recovery.
    """
    vals = [np.asarray(s, np.float64) for s in series if s is not None and len(s)]
    if not vals:
        return False
    v = np.concatenate(vals)
    if not np.isfinite(v).all():
        return True
    pos = v[v > 0]
    return bool(len(pos) and (v <= 0).sum() == 0 and pos.max() > LOG_SPAN * pos.min())


def loss_figure(steps: np.ndarray, loss: np.ndarray, *, val_steps: np.ndarray | None = None,
                val_loss: np.ndarray | None = None, log_y: bool | None = None, max_points: int = 2000) -> go.Figure:
    """Training loss (and validation loss) over steps; NaN/Inf points marked with a red cross.

    Args:
        steps, loss: the training loss series (non-finite values allowed).
        val_steps, val_loss: optional validation loss.
        log_y: draw the y axis on a log scale; ``None`` decides from the data (``loss_wants_log``).
        max_points: most points per trace.
    """
    steps = np.asarray(steps)
    loss = np.asarray(loss, dtype=np.float64)
    if not len(steps):
        return empty_figure("No loss recorded.", theme.GRAPH_HEIGHT)
    if log_y is None:
        log_y = loss_wants_log(loss, val_loss)
    fig = go.Figure(layout=theme.base_layout(title=dict(text="Loss", x=0.01, font=dict(size=14))))
    x, y = _thin(steps, loss, max_points)
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="train loss", line=dict(color=theme.TRAIN, width=1.5)))
    finite_vals = [loss[np.isfinite(loss)]]
    if val_steps is not None and val_loss is not None and len(val_steps):
        vx, vy = _thin(np.asarray(val_steps), np.asarray(val_loss, np.float64), max_points)
        fig.add_trace(go.Scatter(x=vx, y=vy, mode="lines+markers", name="val loss",
                                 line=dict(color=theme.VAL, width=1.5), marker=dict(size=4)))
        finite_vals.append(vy[np.isfinite(vy)])
    bad = ~np.isfinite(y)
    if bad.any():
        allf = np.concatenate(finite_vals)
        if log_y:
            allf = allf[allf > 0]
        top = float(allf.max()) if len(allf) else 1.0
        labels = ["nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") for v in y[bad]]
        fig.add_trace(go.Scatter(
            x=x[bad], y=np.full(int(bad.sum()), top), mode="markers", name="NaN/Inf loss",
            marker=dict(symbol="x", size=10, color=theme.NAN_MARK, line=dict(width=2, color=theme.NAN_MARK)),
            text=labels, hovertemplate="step %{x}: loss = %{text}<extra></extra>"))
        fig.add_vline(x=float(x[bad][0]), line=dict(color=theme.NAN_MARK, dash="dot", width=1))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(type="log" if log_y else "linear", title_text="loss")
    return fig


def accuracy_figure(train_steps: np.ndarray, train_acc: np.ndarray, val_steps: np.ndarray, val_acc: np.ndarray,
                    *, max_points: int = 2000) -> go.Figure:
    """Training and validation accuracy, with the gap between them shaded.

    The training accuracy is interpolated at the validation steps to draw the gap (the
    lecture's overfitting picture: a big gap means overfitting, none at low accuracy means
    underfitting).
    """
    ts, ta = np.asarray(train_steps), np.asarray(train_acc, np.float64)
    vs, va = np.asarray(val_steps), np.asarray(val_acc, np.float64)
    if not len(ts) and not len(vs):
        return empty_figure("No accuracy recorded (log train_acc / val_acc).")
    fig = go.Figure(layout=theme.base_layout(title=dict(text="Accuracy", x=0.01, font=dict(size=14)),
                                             height=theme.SMALL_GRAPH_HEIGHT))
    tf = np.isfinite(ta)
    if len(vs) and tf.sum() >= 1:
        gx, gy = _thin(vs, va, max_points)
        ti = np.interp(gx, ts[tf], ta[tf])
        fig.add_trace(go.Scatter(x=gx, y=ti, mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=gx, y=gy, mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor=theme.GAP_FILL, name="train-val gap", hoverinfo="skip"))
    if len(ts):
        x, y = _thin(ts, ta, max_points)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="train acc", line=dict(color=theme.TRAIN, width=1.5)))
    if len(vs):
        x, y = _thin(vs, va, max_points)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name="val acc",
                                 line=dict(color=theme.VAL, width=1.5), marker=dict(size=4)))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="accuracy")
    return fig


def lr_figure(steps: np.ndarray, lr: np.ndarray, *, max_points: int = 2000) -> go.Figure:
    """Learning rate over steps (log axis when it spans more than a factor of 10)."""
    steps, lr = np.asarray(steps), np.asarray(lr, np.float64)
    if not len(steps):
        return empty_figure("No learning rate recorded.<br>Log lr=..., or pass the optimizer to watch().")
    x, y = _thin(steps, lr, max_points)
    fig = go.Figure(layout=theme.base_layout(title=dict(text="Learning rate", x=0.01, font=dict(size=14)),
                                             height=theme.SMALL_GRAPH_HEIGHT, showlegend=False))
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="lr", line=dict(color=theme.TRAIN, width=1.5, shape="hv")))
    pos = y[np.isfinite(y) & (y > 0)]
    if len(pos) and pos.max() > 10 * pos.min():
        fig.update_yaxes(type="log", exponentformat="power")
    elif len(pos):
        fig.update_yaxes(range=[0, float(pos.max()) * 1.25])
    fig.update_xaxes(title_text="step")
    return fig


def depth_figure(names: Sequence[str], mean: np.ndarray, std: np.ndarray, *, step: int | None = None,
                 highlight: str | None = None, kinds: Sequence[str] | None = None,
                 types: Mapping[str, str] | None = None) -> go.Figure:
    """Activation mean and standard deviation versus depth at one step (the lecture's plot)."""
    names = list(names)
    if not names:
        return empty_figure("No layer statistics recorded.", theme.GRAPH_HEIGHT)
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1)
    depth = np.arange(1, len(names) + 1)
    hover = ([f"{plot_text(n, 200)} ({plot_text(k, 60)})" for n, k in zip(names, kinds)] if kinds
             else [plot_text(n, 200) for n in names])
    if types:  # "name (Class)" where meta.json says what computes the layer
        hover = [lab if n in types else h for n, h, lab in zip(names, hover, layer_labels(names, types, 200))]
    for col, (vals, color) in enumerate(((mean, theme.MEAN), (std, theme.STD)), start=1):
        fig.add_trace(go.Scatter(x=depth, y=vals, mode="lines+markers", marker=dict(size=6, color=color),
                                 line=dict(color=color), text=hover, name=("mean", "std")[col - 1],
                                 hovertemplate="%{text}<br>%{y:.4g}<extra></extra>"), row=1, col=col)
        if highlight in names:
            i = names.index(highlight)
            fig.add_trace(go.Scatter(x=[depth[i]], y=[vals[i]], mode="markers", showlegend=False,
                                     marker=dict(size=13, color="rgba(0,0,0,0)",
                                                 line=dict(color=theme.HIGHLIGHT, width=2)),
                                     hoverinfo="skip"), row=1, col=col)
    title = "Activations by depth" + (f" at step {step}" if step is not None else "")
    fig.update_layout(**theme.base_layout(title=dict(text=title, x=0.01, font=dict(size=14)), showlegend=False,
                                          hovermode="closest"))
    # Slanted labels need about 20 px apart on a half-page subplot (330 px in a 1000 px window):
    # at most 20 short names, fewer the longer they are ("block000.act": 11).
    labels = [plot_text(n, 40) for n in names]
    most = max(4, min(20, 140 // max(1, *map(len, labels))))
    tickvals = depth if len(names) <= most else depth[:: math.ceil(len(names) / most)]
    fig.update_xaxes(title_text="layer (depth)", tickvals=tickvals, ticktext=[labels[i - 1] for i in tickvals],
                     tickangle=-40 if len(names) > 6 else 0)
    # Axis titles rather than subplot titles: those sit in the top margin, under the figure's title.
    fig.update_yaxes(title_text="mean", row=1, col=1)
    fig.update_yaxes(title_text="std", row=1, col=2)
    return fig


def histograms_figure(names: Sequence[str], lo: np.ndarray, hi: np.ndarray, counts: np.ndarray,
                      *, step: int | None = None, highlight: str | None = None, cols: int = 4,
                      types: Mapping[str, str] | None = None) -> go.Figure:
    """Small multiples: one histogram per layer at one step.

    Args:
        names: the layers to draw (in order).
        lo, hi: ``[layer]`` histogram ranges.
        counts: ``[layer, bin]`` counts.
    """
    names = list(names)
    if not names:
        return empty_figure("No histograms recorded.")
    rows = math.ceil(len(names) / cols)
    titles = layer_labels(names, types, limit=40)  # short enough not to overlap the neighbouring title
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
                        vertical_spacing=min(0.12, 0.5 / rows), horizontal_spacing=0.05)
    bars, rows_of, cols_of = [], [], []
    for i, name in enumerate(names):
        c = np.asarray(counts[i], np.float64)
        a, b = float(lo[i]), float(hi[i])
        if not (np.isfinite(a) and np.isfinite(b)) or not len(c):
            continue
        width = (b - a) / len(c) if b > a else 1.0
        centers = a + (np.arange(len(c)) + 0.5) * width
        color = theme.HIGHLIGHT if name == highlight else theme.ACCENT
        bars.append(dict(type="bar", x=centers, y=c, width=width, marker=dict(color=color, line=dict(width=0)),
                         name=plot_text(name, 40), hovertemplate="%{x:.3g}: %{y}<extra></extra>"))
        rows_of.append(i // cols + 1)
        cols_of.append(i % cols + 1)
    if bars:  # in one call, as in ``_lines``
        fig.add_traces(bars, rows=rows_of, cols=cols_of)
    title = "Activation histograms" + (f" at step {step}" if step is not None else "")
    fig.update_layout(**theme.base_layout(title=dict(text=title, x=0.01, font=dict(size=14)), showlegend=False,
                                          height=max(theme.SMALL_GRAPH_HEIGHT, 190 * rows + 60), bargap=0,
                                          hovermode="closest", margin=dict(l=40, r=16, t=60, b=30)))
    fig.update_annotations(font=dict(size=11))
    fig.update_yaxes(showticklabels=False)
    return fig


def rebin(lo: np.ndarray, hi: np.ndarray, counts: np.ndarray, bins: int | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """Histograms with different ranges onto one common grid.

    Each row's counts are spread uniformly over its bins, and the mass falling in each cell
    of the common grid (from the smallest ``lo`` to the largest ``hi``) is taken from the
    piecewise-linear cumulative distribution, so totals are kept exactly.

    Args:
        lo, hi: ``[row]`` ranges; rows with a non-finite range come out as zeros.
        counts: ``[row, bin]``.
        bins: cells of the common grid (default: the source bin count).

    Returns:
        ``(edges, out)``: ``edges`` of length ``bins + 1`` and ``out[row, bin]``.
    """
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    counts = np.asarray(counts, np.float64)
    n, nb = counts.shape if counts.ndim == 2 else (0, 0)
    bins = bins or max(nb, 1)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return np.linspace(0.0, 1.0, bins + 1), np.zeros((n, bins))
    glo, ghi = float(lo[ok].min()), float(hi[ok].max())
    if ghi <= glo:
        ghi = glo + 1.0
    edges = np.linspace(glo, ghi, bins + 1)
    out = np.zeros((n, bins))
    for r in np.flatnonzero(ok):
        a, b = lo[r], hi[r]
        if b <= a:  # a constant layer: all mass at one point
            out[r, min(bins - 1, int((a - glo) / (ghi - glo) * bins))] = counts[r].sum()
            continue
        src = np.linspace(a, b, nb + 1)
        cdf = np.concatenate([[0.0], np.cumsum(counts[r])])
        out[r] = np.diff(np.interp(edges, src, cdf))
    return edges, out


def heatmap_figure(name: str, steps: np.ndarray, lo: np.ndarray, hi: np.ndarray, counts: np.ndarray,
                   *, max_columns: int = 1000) -> go.Figure:
    """One layer's activation histogram over time: step on x, value on y, share of units as colour."""
    steps = np.asarray(steps)
    if not len(steps):
        return empty_figure(f"No histograms recorded for {plot_text(name)} yet.")
    if len(steps) > max_columns:
        take = np.linspace(0, len(steps) - 1, max_columns).round().astype(int)
        steps, lo, hi, counts = steps[take], np.asarray(lo)[take], np.asarray(hi)[take], np.asarray(counts)[take]
    edges, grid = rebin(lo, hi, counts)
    total = grid.sum(axis=1, keepdims=True)
    share = np.divide(grid, total, out=np.zeros_like(grid), where=total > 0)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Heatmap(x=steps, y=centers, z=share.T, colorscale=theme.HEAT_SCALE, zmin=0,
                               colorbar=dict(theme.COLORBAR, title=dict(text="share")),
                               hovertemplate="step %{x}<br>value %{y:.3g}<br>share %{z:.3f}<extra></extra>"))
    fig.update_layout(**theme.base_layout(title=dict(text=f"{plot_text(name)}: histogram over time", x=0.01,
                                                     font=dict(size=14)), hovermode="closest",
                                          height=theme.DEADSAT_HEIGHT))  # it stands beside that figure
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="activation")
    return fig


def _lines(fig: go.Figure, lines: Lines, *, max_points: int, row: int | None = None, highlight: str | None = None,
           positive: bool = False, labels: Sequence[str] | None = None) -> int:
    """Add one trace per line that has any finite value; returns how many were drawn."""
    cols = [j for j in range(len(lines)) if np.isfinite(lines.values[j]).any()]
    per = points_per_trace(len(cols), max_points)
    traces = []
    for k, j in enumerate(cols):
        y = lines.values[j]
        if positive:
            y = np.where(y > 0, y, np.nan)
        x, yy = _thin(lines.steps[j], y, per)  # already within ``per`` when it comes from core.views
        name = lines.names[j]
        hl = name == highlight
        color = theme.HIGHLIGHT if hl else theme.PALETTE[k % len(theme.PALETTE)]
        traces.append(dict(type="scatter", x=x, y=yy, mode="lines", name=labels[j] if labels else plot_text(name, 40),
                           legendgroup=str(name), line=dict(color=color, width=3 if hl else 1.3)))
    # As dicts, in one call: Plotly checks each trace once (a ``go.Scatter`` is checked when made
    # and again when added), which is most of the time of a figure with a line for each of 200 layers.
    if traces:
        fig.add_traces(traces, rows=row, cols=None if row is None else 1)
    return len(cols)


def dead_saturation_figure(dead: Lines, sat: Lines, *, max_points: int = 2000, highlight: str | None = None,
                           types: Mapping[str, str] | None = None) -> go.Figure:
    """Dead-unit fraction (ReLU family) and saturated fraction (tanh/sigmoid) over time, per layer.

    Args:
        dead, sat: the layers each subplot draws (``core.views.layer_lines``); a layer without
            a finite value is not drawn.
    """
    span = dead.span or sat.span
    if span is None:
        return empty_figure("No layer statistics recorded.")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.16,
                        subplot_titles=("dead units (ReLU family)", "saturated units (tanh / sigmoid)"))
    drawn = []
    for r, lines in ((1, dead), (2, sat)):
        labels = layer_labels(lines.names, types, limit=40) if types else None
        drawn.append(_lines(fig, lines, max_points=max_points, row=r, highlight=highlight, labels=labels))
    for r, n in ((1, drawn[0]), (2, drawn[1])):
        if not n:
            # Plotly.js drops a subplot without a trace (its note then lands on the other one):
            # an empty trace keeps it, and the note names the subplot's own axes.
            fig.add_trace(go.Scatter(x=[float(span[0])], y=[None], mode="lines", showlegend=False,
                                     hoverinfo="skip"), row=r, col=1)
            suffix = "" if r == 1 else str(r)
            fig.add_annotation(text="no layer of this kind", showarrow=False, xref=f"x{suffix} domain",
                               yref=f"y{suffix} domain", x=0.5, y=0.5, font=dict(color=theme.MUTED))
    fig.update_layout(**theme.base_layout(height=theme.DEADSAT_HEIGHT,
                                          showlegend=len(set(dead.names) | set(sat.names)) <= 30,
                                          hovermode="closest", legend=theme.SIDE_LEGEND,
                                          margin=dict(l=56, r=16, t=40, b=40)))
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    fig.update_xaxes(showticklabels=True, range=[float(span[0]), float(span[1])] if span[1] > span[0] else None)
    fig.update_xaxes(title_text="step", row=2, col=1)
    return fig


def _any_finite(lines: Lines) -> bool:
    return any(np.isfinite(v).any() for v in lines.values)


def update_ratio_figure(lines: Lines, *, max_points: int = 2000, highlight: str | None = None) -> go.Figure:
    """Update:weight ratio per parameter over time on a log axis, with the healthy band around 1e-3."""
    if lines.span is None or not _any_finite(lines):
        return empty_figure("No update:weight ratios recorded (pass update= to Monitor.weights).",
                            theme.GRAPH_HEIGHT)
    fig = go.Figure(layout=theme.base_layout(
        title=dict(text="Update : weight ratio (healthy around 1e-3)", x=0.01, font=dict(size=14)),
        height=420, hovermode="closest", showlegend=len(lines) <= 30, legend=theme.SIDE_LEGEND))
    fig.add_hrect(y0=RATIO_BAND[0], y1=RATIO_BAND[1], fillcolor=theme.BAND_FILL, line_width=0, layer="below")
    fig.add_hline(y=HEALTHY_RATIO, line=dict(color=theme.BAND_LINE, dash="dash", width=1.5))
    # The band is named in the legend: a label inside the plot ends up under the curves.
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="healthy band 1e-4 .. 1e-2",
                             line=dict(color=theme.BAND_LINE, dash="dash", width=1.5), hoverinfo="skip"))
    _lines(fig, lines, max_points=max_points, highlight=highlight, positive=True)
    fig.update_yaxes(type="log", title_text="|update| / |weight|", exponentformat="power", dtick=1)
    fig.update_xaxes(title_text="step")
    return fig


def grad_norm_figure(lines: Lines, *, max_points: int = 2000, highlight: str | None = None) -> go.Figure:
    """Gradient norm per parameter over time on a log axis."""
    if lines.span is None or not _any_finite(lines):
        return empty_figure("No gradient norms recorded (pass grad= to Monitor.weights).")
    fig = go.Figure(layout=theme.base_layout(title=dict(text="Gradient norm", x=0.01, font=dict(size=14)),
                                             hovermode="closest", showlegend=len(lines) <= 30,
                                             legend=theme.SIDE_LEGEND))
    _lines(fig, lines, max_points=max_points, highlight=highlight, positive=True)
    fig.update_yaxes(type="log", title_text="|grad|", exponentformat="power")
    fig.update_xaxes(title_text="step")
    return fig
