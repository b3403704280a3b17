"""Figure builders for comparing runs: pure functions from summaries and series to Plotly figures.

Used by the compare page and by ``babysitter report``. Every name that reaches a figure
(run names, hyperparameter names and values) goes through ``plot_text`` first: Plotly
draws trace names and labels as a small HTML subset, and a name must show as the text it is.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from core.compare import HP_PREFIX, EdgeOfRange
from core.table import higher_is_better

from . import theme
from ._text import plot_text
from .figures import _thin, empty_figure

__all__ = ["plot_text", "overlay_figure", "scatter_figure", "parallel_figure", "MAX_OVERLAY"]

MAX_OVERLAY = 40  # runs drawn at once in an overlay; more are unreadable anyway
MAX_LINES = 1000  # runs drawn in parallel coordinates (the best by the metric); 10,000 lines are one blot


def overlay_figure(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], *, title: str, y_title: str,
                   log_y: bool = False, max_points: int = 1000, markers: bool = False) -> go.Figure:
    """One line per run: the same metric of several runs over steps.

    Args:
        curves: ``(run name, steps, values)`` per run, at most ``MAX_OVERLAY`` drawn.
        title: figure title.
        y_title: y axis title.
        log_y: log y axis (non-positive values are dropped by Plotly).
        max_points: most points per line (min/max decimation keeps spikes).
        markers: draw markers as well (sparse series such as validation accuracy).
    """
    curves = [c for c in curves if len(c[1])][:MAX_OVERLAY]
    if not curves:
        return empty_figure(f"Select runs to overlay their {y_title}.", theme.GRAPH_HEIGHT)
    fig = go.Figure(layout=theme.base_layout(title=dict(text=plot_text(title), x=0.01, font=dict(size=14)),
                                             hovermode="closest", showlegend=True,  # the name, even for one run
                                             legend=theme.SIDE_LEGEND))
    for i, (name, steps, values) in enumerate(curves):
        x, y = _thin(np.asarray(steps), np.asarray(values, np.float64), max_points)
        label = plot_text(name, 40)
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers" if markers else "lines", name=label,
            line=dict(color=theme.PALETTE[i % len(theme.PALETTE)], width=1.5), marker=dict(size=4),
            hovertemplate=f"{label}<br>step %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=plot_text(y_title), type="log" if log_y else "linear")
    return fig


def _numeric(col) -> np.ndarray:
    import pandas as pd

    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def scatter_figure(df, param: str, *, metric: str = "best_val_acc", color: str | None = None,
                   specs: dict[str, dict[str, Any]] | None = None, edge: EdgeOfRange | None = None) -> go.Figure:
    """The metric of every run against one hyperparameter, coloured by a second.

    The x axis is logarithmic for log-sampled parameters. The outer 10% of the sampled
    range at each end (in the axis's own scale) is shaded; when ``edge`` says the best run
    sits there, the title says so and the range to try next is drawn as a dashed box.
    Runs without a metric value (crashed, diverged) are drawn as red crosses along the bottom;
    trials a search pruned as triangles, never starred as the best.

    Args:
        df: summary DataFrame (``core.compare.summaries_frame``).
        param: hyperparameter name (without the ``hp.`` prefix).
        metric: summary column for the y axis.
        color: a second hyperparameter to colour by (log10 of it when log-sampled).
        specs: ``core.compare.hparam_specs`` (log scale and sampled range of each parameter).
        edge: the ``edge_of_range`` result for this parameter, if any.
    """
    specs = specs or {}
    col = HP_PREFIX + param
    if not param:
        return empty_figure("No numeric hyperparameter varies between these runs (yet).", theme.GRAPH_HEIGHT)
    if df is None or col not in df.columns or not len(df):
        return empty_figure(f"No runs record the hyperparameter {plot_text(param)}.", theme.GRAPH_HEIGHT)
    spec = specs.get(param, {})
    log_x = bool(spec.get("log"))
    x = _numeric(df[col])
    y = _numeric(df[metric]) if metric in df.columns else np.full(len(df), np.nan)
    names = [plot_text(n, 60) for n in df["run"]]
    ok_x = np.isfinite(x) & ((x > 0) if log_x else True)
    pruned = ok_x & (df["status"] == "pruned").to_numpy() if "status" in df.columns else np.zeros(len(df), bool)
    good = ok_x & np.isfinite(y) & ~pruned
    bad = ok_x & ~np.isfinite(y) & ~pruned
    title = f"{plot_text(metric)} vs {plot_text(param)}" + (" (log)" if log_x else "")
    if edge is not None:
        title += f" — best at the {edge.side} edge: try [{edge.suggest_low:.3g}, {edge.suggest_high:.3g}]"
    fig = go.Figure(layout=theme.base_layout(title=dict(text=title, x=0.01, font=dict(size=14)), hovermode="closest"))
    marker: dict[str, Any] = dict(size=9, color=theme.ACCENT, line=dict(width=0.5, color="#ffffff"))
    if color and HP_PREFIX + color in df.columns:
        c = _numeric(df[HP_PREFIX + color])
        c_log = bool(specs.get(color, {}).get("log"))
        if c_log:
            c = np.where(c > 0, np.log10(np.where(c > 0, c, 1.0)), np.nan)
        if np.isfinite(c[good]).any():
            marker.update(color=c[good], colorscale="Viridis", showscale=True,
                          colorbar=dict(theme.COLORBAR,
                                        title=dict(text=("log10 " if c_log else "") + plot_text(color, 30))))
    text = [n for n, g in zip(names, good) if g]
    # Plain lists: a few hundred points at most, and readable as such in the browser's figure data.
    fig.add_trace(go.Scatter(
        x=x[good].tolist(), y=y[good].tolist(), mode="markers", name="runs", marker=marker, text=text,
        hovertemplate=f"%{{text}}<br>{plot_text(param)} = %{{x:.4g}}<br>{plot_text(metric)} = %{{y:.4g}}<extra></extra>"))
    if bad.any():
        floor = float(np.nanmin(y[good])) if good.any() else 0.0
        fig.add_trace(go.Scatter(
            x=x[bad], y=np.full(int(bad.sum()), floor), mode="markers", name="crashed / no value",
            marker=dict(symbol="x", size=9, color=theme.NAN_MARK), text=[n for n, b in zip(names, bad) if b],
            hovertemplate=f"%{{text}}<br>{plot_text(param)} = %{{x:.4g}}: no {plot_text(metric)}<extra></extra>"))
    if pruned.any():
        floor = float(np.nanmin(y[good])) if good.any() else 0.0
        yp = np.where(np.isfinite(y[pruned]), y[pruned], floor)
        fig.add_trace(go.Scatter(
            x=x[pruned].tolist(), y=yp.tolist(), mode="markers", name="pruned",
            marker=dict(symbol="triangle-down", size=9, color=theme.STATUS_COLORS["pruned"]),
            text=[n for n, p in zip(names, pruned) if p],
            hovertemplate=f"%{{text}}<br>{plot_text(param)} = %{{x:.4g}}: pruned<extra></extra>"))
    if good.any():
        i = int(np.flatnonzero(good)[np.nanargmax(y[good]) if higher_is_better(metric) else np.nanargmin(y[good])])
        fig.add_trace(go.Scatter(x=[x[i]], y=[y[i]], mode="markers", name="best",
                                 marker=dict(symbol="star", size=16, color=theme.HIGHLIGHT), hoverinfo="skip"))
    lo, hi = spec.get("low"), spec.get("high")
    if lo is not None and hi is not None and (not log_x or lo > 0):
        f, inv = (math.log10, lambda u: 10.0 ** u) if log_x else (float, float)
        a, b = f(lo), f(hi)
        outer = edge.outer if edge is not None else 0.1
        # Shapes take data values on log axes (unlike annotations), so no log10 here.
        for x0, x1 in ((lo, inv(a + outer * (b - a))), (inv(b - outer * (b - a)), hi)):
            fig.add_vrect(x0=x0, x1=x1, fillcolor="rgba(224, 138, 0, 0.10)", line_width=0, layer="below")
        for v in (lo, hi):
            fig.add_vline(x=v, line=dict(color=theme.MUTED, width=1, dash="dot"))
    if edge is not None:
        fig.add_vrect(x0=edge.suggest_low, x1=edge.suggest_high, line=dict(color=theme.SEVERITY_COLORS["warning"],
                      width=1.5, dash="dash"), fillcolor="rgba(0,0,0,0)", layer="above")
    fig.update_xaxes(type="log" if log_x else "linear", title_text=plot_text(param))
    if log_x:
        # Over a decade or two Plotly labels every digit ("4 5 ... 9 1 2 ..."), which reads as
        # 4 for 0.4: label the values themselves. No minor ticks: beside labels a few pixels
        # apart they read as stray marks ("0.05'"), and the labelled ticks' grid marks the scale.
        # Values themselves are wider than digits: every digit's label over a decade or more runs
        # into its neighbours near the decade's top ("0.0070.0080.0090.01"), so 1-2-5 there, and
        # the decades alone over more than three.
        shown = [v for v in (*x[ok_x].tolist(), lo, hi) if v is not None and v > 0 and math.isfinite(v)]
        span = math.log10(max(shown) / min(shown)) if shown else 0.0
        if span > 0.7:
            fig.update_xaxes(tickformat=theme.TICKFORMAT, dtick=1 if span > 3 else "D2")
        else:  # within a decade Plotly's ticks are linear ones: fewer of them
            fig.update_xaxes(tickformat=theme.TICKFORMAT, nticks=6)
    fig.update_yaxes(title_text=plot_text(metric))
    return fig


def parallel_figure(df, params: Sequence[str], *, metric: str = "best_val_acc",
                    specs: dict[str, dict[str, Any]] | None = None) -> go.Figure:
    """Parallel coordinates: one axis per numeric hyperparameter (log10 of log-sampled ones) and the metric.

    Runs without a value of ``metric`` (crashed, diverged) are left out; the title says how many.
    Of more than ``MAX_LINES`` runs, the best ``MAX_LINES`` by ``metric`` are drawn, and the
    title says so (a browser takes seconds over 10,000 lines, which show nothing but one blot).
    """
    specs = specs or {}
    if df is None or not len(df) or metric not in df.columns:
        return empty_figure("No runs to compare.", theme.GRAPH_HEIGHT)
    y = _numeric(df[metric])
    keep = np.isfinite(y)
    dims = []
    for p in params:
        col = HP_PREFIX + p
        if col not in df.columns:
            continue
        v = _numeric(df[col])
        if not np.isfinite(v[keep]).any():
            continue
        if specs.get(p, {}).get("log"):
            v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
            label = f"log10 {plot_text(p, 30)}"
        else:
            label = plot_text(p, 30)
        keep &= np.isfinite(v)
        dims.append((label, v))
    if not dims or not keep.any():
        return empty_figure("No numeric hyperparameters with a value to draw.", theme.GRAPH_HEIGHT)
    left_out = int(len(df) - keep.sum())
    title = "Parallel coordinates"
    rows = np.flatnonzero(keep)
    if len(rows) > MAX_LINES:
        order = np.argsort(-y[rows] if higher_is_better(metric) else y[rows], kind="stable")
        rows = np.sort(rows[order[:MAX_LINES]])
        title += f": the best {MAX_LINES:,} of {int(keep.sum()):,} runs by {plot_text(metric, 30)}"
    if left_out:
        title += f" ({left_out} run{'s' if left_out != 1 else ''} without a value left out)"
    dimensions = [dict(label=label, values=v[rows], tickformat=theme.TICKFORMAT) for label, v in dims]
    dimensions.append(dict(label=plot_text(metric, 30), values=y[rows], tickformat=theme.TICKFORMAT))
    fig = go.Figure(go.Parcoords(
        line=dict(color=y[rows], colorscale="Viridis", showscale=True, colorbar=theme.COLORBAR),
        dimensions=dimensions))
    # The axis names and top range labels stand above the plot area: the title goes above them,
    # pinned to the top of the figure.
    fig.update_layout(**theme.base_layout(title=dict(text=title, x=0.01, y=1, yref="container", yanchor="top",
                                                     pad=dict(t=10), font=dict(size=14)),
                                          margin=dict(l=64, r=64, t=96, b=32)))
    return fig
