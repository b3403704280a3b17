"""The figures of one run, drawn from ``core.views``: what the run pages and the HTML report both show.

Each function reads what its figure needs through ``core.views`` (downsampled there) and
hands it to the pure builders of ``figures``; the pages' callbacks and ``dashboard.report``
call the same function, so a page and the report of a run draw the same plot.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from core import views
from core.schema import RELU_FAMILY, SATURATING

from . import figures

__all__ = ["loss", "accuracy", "lr", "depth", "depth_of", "dead_saturation", "update_ratio", "grad_norm"]


def loss(run: Any, *, log_y: bool | None = None, max_points: int = 2000) -> go.Figure:
    """Training and validation loss; ``log_y=None`` picks the axis (``figures.loss_wants_log``)."""
    tr, val = (views.series(run, m, max_points=max_points) for m in ("loss", "val_loss"))
    return figures.loss_figure(tr.steps, tr.values, val_steps=val.steps, val_loss=val.values, log_y=log_y,
                               max_points=max_points)


def accuracy(run: Any, *, max_points: int = 2000) -> go.Figure:
    """Training and validation accuracy with the gap between them shaded."""
    ta, va = (views.series(run, m, max_points=max_points) for m in ("train_acc", "val_acc"))
    return figures.accuracy_figure(ta.steps, ta.values, va.steps, va.values, max_points=max_points)


def lr(run: Any, *, max_points: int = 2000) -> go.Figure:
    """The learning rate over steps."""
    s = views.series(run, "lr", max_points=max_points)
    return figures.lr_figure(s.steps, s.values, max_points=max_points)


def depth_of(at: views.LayersAt, *, highlight: str | None = None, types: dict[str, str] | None = None) -> go.Figure:
    """The depth plot of ``at`` (``views.layers_at`` with ``mean`` and ``std``)."""
    if at.step is None:
        return figures.depth_figure([], [], [])
    return figures.depth_figure(at.names, at.values["mean"], at.values["std"], step=at.step, highlight=highlight,
                                kinds=[k or "?" for k in at.kinds], types=types)


def depth(run: Any, *, row: int | None = None, highlight: str | None = None) -> go.Figure:
    """Activation mean and std by depth at activation row ``row`` (default: the last logged step)."""
    with run.reading():
        return depth_of(views.layers_at(run, row=row), highlight=highlight, types=run.layer_types())


def dead_saturation(run: Any, *, highlight: str | None = None, max_points: int = 2000) -> go.Figure:
    """Dead fraction of the ReLU-family layers and saturated fraction of the tanh/sigmoid ones over steps."""
    with run.reading():  # one moment of a growing run for both subplots
        names = run.layer_order()
        kinds = run.layer_kinds()
        # A layer of unknown kind could be either: it is drawn in both.
        relu = [n for n in names if kinds.get(n) in RELU_FAMILY or kinds.get(n) is None]
        sats = [n for n in names if kinds.get(n) in SATURATING or kinds.get(n) is None]
        dead = views.layer_lines(run, "dead_frac", relu, max_points=max_points)
        sat = views.layer_lines(run, "sat_frac", sats, max_points=max_points)
        types = run.layer_types()
    return figures.dead_saturation_figure(dead, sat, max_points=max_points, highlight=highlight, types=types)


def update_ratio(run: Any, *, highlight: str | None = None, max_points: int = 2000) -> go.Figure:
    """The update:weight ratio of every parameter tensor, on a log axis."""
    lines = views.param_lines(run, "upd_ratio", max_points=max_points, positive=True)
    return figures.update_ratio_figure(lines, max_points=max_points, highlight=highlight)


def grad_norm(run: Any, *, highlight: str | None = None, max_points: int = 2000) -> go.Figure:
    """The gradient norm of every parameter tensor, on a log axis."""
    lines = views.param_lines(run, "grad_norm", max_points=max_points, positive=True)
    return figures.grad_norm_figure(lines, max_points=max_points, highlight=highlight)
