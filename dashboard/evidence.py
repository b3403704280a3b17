"""Evidence for a finding: the plot that shows it, at its step and layer, with its threshold drawn.

Every finding links to the page and plot where a person can see the problem for
themselves (``evidence_href``): the depth plot at that step for vanishing or exploding
activations, the layer's histogram and its dead/saturated fraction for ``dead_relu`` and
``saturation``, the update:weight ratios for ``update_ratio``, the gradient norms for the
gradient rules, the loss for the loss rules, the accuracy for the accuracy rules. The page
opened by the link draws ``evidence_figure`` at its top: the same plot restricted to what
the finding names, with the threshold and the finding's step marked. The HTML report puts
the same figure beside each finding.

All names reaching a figure go through ``plot_text`` (Plotly's label markup is escaped).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go

from core import Finding, Run
from core import views
from core.diagnose import UPDATE_RATIO_RELATIVE, Delta, DiagnosisConfig, activation_layers, is_bias, weights_by_depth

from . import figures, theme
from ._text import plot_text
from .context import run_href

__all__ = ["evidence_page", "evidence_href", "evidence_figure", "find_finding", "EVIDENCE_RULES"]

# rule -> the page that shows it ("" is the overview).
_PAGES = {
    "vanishing_activations": "layers", "exploding_activations": "layers", "saturation": "layers",
    "dead_relu": "layers", "symmetric_weights": "layers",
    "update_ratio": "updates", "vanishing_gradients": "updates", "exploding_gradients": "updates",
    "nan_loss": "", "loss_explosion": "", "lr_too_low": "", "initial_loss": "", "regularization_check": "",
    "overfitting": "", "underfitting": "", "cannot_overfit": "", "inputs_not_centered": "", "nonfinite_values": "",
}
EVIDENCE_RULES = frozenset(_PAGES)
_DEFAULTS = DiagnosisConfig()


def _param_of(run: Run, layer: str) -> str | None:
    """The weight tensor of ``layer`` as recorded (``fc1`` -> ``W1``), or the name itself when it is a parameter."""
    names = views.param_names(run)
    if layer in names:
        return layer
    for li in run.meta.layers:
        if li.name == layer:
            for p in li.params:
                if p in names and not is_bias(p):
                    return p
            return next((p for p in li.params if p in names), None)
    return None


def evidence_page(run: Run, f: Finding) -> tuple[str, dict[str, Any]] | None:
    """``(page, query)`` of the plot that shows ``f``, or None for a finding no plot shows (search findings, info)."""
    page = _PAGES.get(f.rule)
    if page is None:
        return None
    query: dict[str, Any] = {"rule": f.rule, "step": f.step}
    layer = f.layers[0] if f.layers else None
    if f.rule in ("vanishing_activations", "exploding_activations") and f.layers:
        layer = f.layers[-1]  # the deepest layer named: where the std has moved furthest
    if f.rule == "nonfinite_values" and layer is not None:
        page = "layers" if layer in views.layer_names(run) else "updates"
    if page == "layers" and layer is not None:
        query["layer"] = layer
    elif page == "updates" and layer is not None:
        query["param"] = _param_of(run, layer) or layer
    if layer is not None:
        query["finding_layer"] = layer
    return page, query


def evidence_href(run: Run, f: Finding) -> str | None:
    """The URL of the page that shows ``f``, with its step, layer and rule in the query."""
    got = evidence_page(run, f)
    if got is None:
        return None
    page, query = got
    return run_href(run.name, page, **query)


def find_finding(findings: list[Finding], query: dict[str, str]) -> Finding | None:
    """The finding a page's query names (``rule``, ``step`` and ``finding_layer``), or None."""
    rule = query.get("rule")
    if not rule:
        return None
    step = query.get("step")
    layer = query.get("finding_layer")
    best = None
    for f in findings:
        if f.rule != rule or (layer and layer not in f.layers):
            continue
        if step is not None and str(f.step) == step:
            return f
        best = best or f
    return best


def _mark_step(fig: go.Figure, step: int, **kw: Any) -> None:
    fig.add_vline(x=step, line=dict(color=theme.HIGHLIGHT, dash="dot", width=1.5), **kw)


def _threshold(fig: go.Figure, y: float, text: str, *, log: bool = False, col: int | None = None) -> None:
    """A dashed line at ``y`` with its label; ``log`` for a log axis (annotations take log10 there)."""
    fig.add_hline(y=y, line=dict(color=theme.HIGHLIGHT, dash="dash", width=1.5),
                  **({} if col is None else {"row": 1, "col": col}))
    if not math.isfinite(y) or (log and y <= 0):
        return
    axis = "" if col in (None, 1) else str(col)
    fig.add_annotation(text=plot_text(text), showarrow=False, x=0, xanchor="left", yanchor="bottom",
                       xref=f"x{axis} domain", yref=f"y{axis}", y=math.log10(y) if log else y,
                       font=dict(size=11, color=theme.HIGHLIGHT))


def _title(fig: go.Figure, f: Finding, what: str) -> go.Figure:
    # The legend goes to the right so that the title, subplot titles and legend never overlap.
    fig.update_layout(title=dict(text=plot_text(f"{f.rule} at step {f.step}: {what}", 120), x=0.01,
                                 font=dict(size=14)),
                      legend=dict(orientation="v", x=1.01, y=1, xanchor="left", yanchor="top", font=dict(size=10)),
                      margin=dict(t=64, r=130))
    return fig


def evidence_figure(run: Run, f: Finding, *, max_points: int = 2000) -> go.Figure:
    """The plot that shows ``f``: its layer(s) at its step, the threshold and the step marked."""
    try:
        build = _BUILDERS.get(f.rule, _loss)
        return build(run, f, max_points)
    except (IndexError, KeyError, ValueError) as err:  # a run rewritten under us, a layer gone
        return figures.empty_figure(plot_text(f"No plot for this finding: {err}", 100))


def _depth(run: Run, f: Finding, max_points: int) -> go.Figure:
    at = views.layers_at(run, step=f.step)
    if at.step is None:
        return figures.empty_figure("No activation statistics at this step.")
    names, std = at.names, at.values["std"]
    fig = figures.depth_figure(names, at.values["mean"], std, step=at.step,
                               highlight=f.layers[-1] if f.layers else None, kinds=[k or "?" for k in at.kinds])
    judged = activation_layers(Delta.of(run))  # the layers the rule compares
    base = float(std[names.index(judged[0])]) if judged and judged[0] in names else float("nan")
    if f.rule == "symmetric_weights":
        return _title(fig, f, "every unit of the layer computes the same output")
    th = f.threshold if f.threshold is not None else (
        _DEFAULTS.thresholds(f.rule).min_std_ratio if f.rule == "vanishing_activations" else
        _DEFAULTS.thresholds(f.rule).max_std_ratio)
    if math.isfinite(base) and base > 0:
        if f.rule == "exploding_activations" and th is not None and f.threshold == _DEFAULTS.thresholds(
                f.rule).max_growth:  # the growth-per-layer verdict: draw base x growth^depth
            depth = np.arange(len(names))
            first = names.index(judged[0])
            fig.add_trace(go.Scatter(x=depth + 1, y=base * th ** np.maximum(depth - first, 0), mode="lines",
                                     line=dict(color=theme.HIGHLIGHT, dash="dash", width=1.5),
                                     name=f"{th:g}x per layer", hoverinfo="skip"), row=1, col=2)
        else:
            _threshold(fig, base * th, f"{th:g} x std of {judged[0]}", log=True, col=2)
        fig.update_yaxes(type="log", row=1, col=2)
    word = "falls" if f.rule == "vanishing_activations" else "grows"
    return _title(fig, f, f"activation std {word} with depth")


def _fraction(run: Run, f: Finding, max_points: int) -> go.Figure:
    field = "sat_frac" if f.rule == "saturation" else "dead_frac"
    known = views.layer_names(run)
    lines = views.layer_lines(run, field, [n for n in f.layers if n in known] or known, max_points=max_points)
    fig = go.Figure(layout=theme.base_layout(hovermode="closest", showlegend=len(lines) <= 12))
    for k, (n, x, y) in enumerate(zip(lines.names, lines.steps, lines.values)):
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=plot_text(n, 40),
                                 marker=dict(size=5), line=dict(color=theme.PALETTE[k % len(theme.PALETTE)])))
    th = f.threshold if f.threshold is not None else getattr(
        _DEFAULTS.thresholds(f.rule), "max_sat_frac" if f.rule == "saturation" else "max_dead_frac")
    _threshold(fig, th, f"threshold {th:.0%}")
    _mark_step(fig, f.step)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title_text="saturated" if f.rule == "saturation" else "dead")
    fig.update_xaxes(title_text="step")
    return _title(fig, f, "saturated outputs" if f.rule == "saturation" else "dead units")


def _ratio(run: Run, f: Finding, max_points: int) -> go.Figure:
    params = [x for x in (_param_of(run, lay) for lay in f.layers) if x]
    judged = [n for n in views.param_names(run) if not is_bias(n)]  # the rule skips biases
    lines = views.param_lines(run, "upd_ratio", judged, max_points=max_points, positive=True)
    fig = figures.update_ratio_figure(lines, max_points=max_points, highlight=params[0] if params else None)
    if f.threshold is not None and f.threshold > 0 and UPDATE_RATIO_RELATIVE in f.message and params:
        # The relative verdict: the threshold is a factor of the siblings' median at that step.
        v = views.param_value_at(run, "upd_ratio", params[0], f.step)
        if math.isfinite(v) and f.value:
            ref = v / f.value
            _threshold(fig, ref * f.threshold, f"{f.threshold:g} x the other layers' median", log=True)
            fig.add_hline(y=ref, line=dict(color=theme.MUTED, dash="dot", width=1))
    elif f.threshold is not None and f.threshold > 0:
        _threshold(fig, f.threshold, f"threshold {f.threshold:g}", log=True)
    _mark_step(fig, f.step)
    return _title(fig, f, ", ".join(params) or "update:weight ratio")


def _grad(run: Run, f: Finding, max_points: int) -> go.Figure:
    params = [x for x in (_param_of(run, lay) for lay in f.layers) if x]
    order = weights_by_depth(Delta.of(run))
    lines = views.param_lines(run, "grad_norm", [n for n, _ in order] or None, max_points=max_points, positive=True)
    fig = figures.grad_norm_figure(lines, max_points=max_points, highlight=params[0] if params else None)
    if order and f.threshold is not None and len(lines):
        # the output layer's gradient norm (the last by depth) times the threshold, point by point
        fig.add_trace(go.Scatter(x=lines.steps[-1], y=lines.values[-1] * f.threshold, mode="lines",
                                 name=plot_text(f"{f.threshold:g} x {order[-1][0]}", 60),
                                 line=dict(color=theme.HIGHLIGHT, dash="dash", width=1.5)))
    _mark_step(fig, f.step)
    return _title(fig, f, "gradient norm by layer (threshold relative to the output layer)")


def _loss(run: Run, f: Finding, max_points: int) -> go.Figure:
    s = views.series(run, "loss", max_points=max_points)  # the first point and every extreme are kept
    vals = s.values[np.isfinite(s.values)]
    log_y = f.rule in ("loss_explosion", "nan_loss") and len(vals) and float(vals.min()) > 0
    fig = figures.loss_figure(s.steps, s.values, log_y=bool(log_y), max_points=max_points)
    if len(vals) and f.rule == "loss_explosion" and f.threshold:
        _threshold(fig, float(vals[0]) * f.threshold, f"{f.threshold:g} x the first loss", log=bool(log_y))
    if f.rule == "initial_loss" and run.meta.num_classes:
        c = run.meta.num_classes
        hinge = str(run.meta.hparams.get("loss", "")).lower() in ("svm", "hinge", "multiclass_hinge", "multi_margin")
        expected = (c - 1.0) if hinge else math.log(c)
        dev = _DEFAULTS.thresholds("initial_loss").max_rel_dev
        fig.add_hrect(y0=expected * (1 - dev), y1=expected * (1 + dev), fillcolor=theme.BAND_FILL, line_width=0,
                      layer="below")
        _threshold(fig, expected, f"expected first loss {expected:.3g}")
    if f.rule == "lr_too_low" and len(s.steps):
        fig.add_vrect(x0=float(s.steps[0]), x1=f.step, fillcolor=theme.GAP_FILL, line_width=0, layer="below",
                      annotation_text="window judged", annotation_position="top left")
    if f.rule == "regularization_check" and f.threshold is not None:
        _threshold(fig, f.threshold, f"log(C) + penalty share {f.threshold:.3g}")
    _mark_step(fig, f.step)
    return _title(fig, f, "the loss")


def _accuracy(run: Run, f: Finding, max_points: int) -> go.Figure:
    ta, va = (views.series(run, m, max_points=max_points) for m in ("train_acc", "val_acc"))
    fig = figures.accuracy_figure(ta.steps, ta.values, va.steps, va.values, max_points=max_points)
    if f.rule in ("underfitting", "cannot_overfit") and f.threshold is not None:
        _threshold(fig, f.threshold, f"training accuracy threshold {f.threshold:.0%}")
    _mark_step(fig, f.step)
    return _title(fig, f, "train and validation accuracy")


def _inputs(run: Run, f: Finding, max_points: int) -> go.Figure:
    inp = run.input_stats()
    steps, mean, std = inp["step"], inp["mean"], inp["std"]
    with np.errstate(all="ignore"):
        ratio = np.abs(mean) / std
    fig = go.Figure(layout=theme.base_layout(hovermode="closest"))
    fig.add_trace(go.Scatter(x=steps, y=ratio, mode="lines+markers", name="|mean| / std", marker=dict(size=5),
                             line=dict(color=theme.ACCENT)))
    if f.threshold is not None:
        _threshold(fig, f.threshold, f"threshold {f.threshold:g}")
    _mark_step(fig, f.step)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="|batch mean| / batch std", rangemode="tozero")
    return _title(fig, f, "the first layer's input")


_BUILDERS = {
    "vanishing_activations": _depth, "exploding_activations": _depth, "symmetric_weights": _depth,
    "saturation": _fraction, "dead_relu": _fraction,
    "update_ratio": _ratio, "vanishing_gradients": _grad, "exploding_gradients": _grad,
    "overfitting": _accuracy, "underfitting": _accuracy, "cannot_overfit": _accuracy,
    "inputs_not_centered": _inputs,
}
