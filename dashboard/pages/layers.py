"""Per-layer activations: mean and std versus depth at a chosen step, histograms, dead and saturated units."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from dash import Input, Output, State, dcc, html, no_update

from core import Run
from core.schema import RELU_FAMILY, SATURATING

from .. import figures, ids, theme
from ..context import AppContext
from . import Page
from ._common import card, graph, not_found, run_header
from ._evidence import evidence_card

MAX_SMALL_MULTIPLES = 12


def _order(run: Run) -> tuple[list[str], np.ndarray]:
    """Layer names in depth order and their column indices in ``run.acts``."""
    names = run.layer_order()
    return names, np.array([run.acts.index[n] for n in names], dtype=np.intp)


def _marks(steps: np.ndarray) -> dict[int, str]:
    n = len(steps)
    if not n:
        return {}
    picks = np.unique(np.linspace(0, n - 1, min(n, 8)).round().astype(int))
    return {int(i): str(int(steps[i])) for i in picks}


def _row(value: Any) -> int | None:
    """A slider position sent by the browser, or None when it is not one (a request may send anything)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def slider_state(run: Run, value: int | None, old_max: int | None) -> tuple[int, dict[int, str], int]:
    """``(max, marks, value)`` of the step slider; a slider at its end follows new steps."""
    value, old_max = _row(value), _row(old_max)
    steps = run.acts.step_array()
    new_max = max(0, len(steps) - 1)
    if value is None or old_max is None or value >= old_max or value > new_max:
        value = new_max
    return new_max, _marks(steps), value


def pick_layers(names: list[str], highlight: str | None, k: int = MAX_SMALL_MULTIPLES) -> list[str]:
    """At most ``k`` layers spread over depth, always including ``highlight``."""
    if len(names) <= k:
        return list(names)
    idx = set(np.linspace(0, len(names) - 1, k).round().astype(int).tolist())
    if highlight in names and names.index(highlight) not in idx:
        h = names.index(highlight)
        idx.discard(min(idx - {0, len(names) - 1}, key=lambda i: abs(i - h)))
        idx.add(h)
    return [names[i] for i in sorted(idx)]


def depth_data(run: Run, row: int, highlight: str | None) -> Any:
    names, cols = _order(run)
    if not names or row is None or row >= len(run.acts):
        return figures.depth_figure([], [], [])
    step = int(run.acts.step_array()[row])
    kinds = run.layer_kinds()
    return figures.depth_figure(names, run.acts.field("mean")[row, cols], run.acts.field("std")[row, cols],
                                step=step, highlight=highlight, kinds=[kinds.get(n, "?") for n in names],
                                types=run.layer_types())


def hist_data(run: Run, row: int, highlight: str | None) -> Any:
    names, _ = _order(run)
    hsteps, lo, hi, counts = run.acts.histograms()
    if not names or not len(hsteps) or row is None or row >= len(run.acts):
        return figures.histograms_figure([], [], [], [])
    step = int(run.acts.step_array()[row])
    # Old histograms are thinned on long runs: show the kept row at or before the step.
    h = max(0, int(np.searchsorted(hsteps, step, side="right")) - 1)
    show = pick_layers(names, highlight)
    cols = [run.acts.index[n] for n in show]
    return figures.histograms_figure(show, lo[h, cols], hi[h, cols], counts[h, cols], step=int(hsteps[h]),
                                     highlight=highlight, types=run.layer_types())


def nan_note(run: Run, row: int | None) -> str:
    """Which layers had no finite statistic at ``row`` (a diverged run), as a sentence; ``""`` when none.

    Their points are missing from the depth plot and their histograms from the small
    multiples, and without this sentence the page would look merely empty.
    """
    names, cols = _order(run)
    if not names or row is None or not 0 <= row < len(run.acts):
        return ""
    mean, std = run.acts.field("mean")[row, cols], run.acts.field("std")[row, cols]
    bad = [n for n, m, s in zip(names, mean, std) if not (np.isfinite(m) and np.isfinite(s))]
    if not bad:
        return ""
    step = int(run.acts.step_array()[row])
    if len(bad) == len(names):
        return (f"At step {step} every recorded value of every layer was NaN or Inf (the training diverged): "
                "there is nothing to draw. Move the slider back to see the steps before it.")
    shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
    return f"At step {step} every recorded value of {shown} was NaN or Inf: those layers are not drawn."


def layout(ctx: AppContext, run: str = "", query: dict[str, str] | None = None) -> Any:
    r = ctx.run(run)
    if r is None:
        return not_found(run)
    query = query or {}
    names, _ = _order(r)
    layer = query.get("layer") if query.get("layer") in names else (names[0] if names else None)
    steps = r.acts.step_array()
    value = len(steps) - 1 if len(steps) else 0
    if re.fullmatch(r"-?[0-9]{1,19}", query.get("step", "")):  # not str.isdigit: "²" is a digit to it
        at = r.acts.row_at(int(query["step"]))
        value = at if at is not None else 0
    note = None
    if query.get("layer") and query.get("layer") not in names:
        note = html.Div(f"No activation statistics for {query.get('layer')!s} in this run.", className="bs-muted")
    return html.Div([
        run_header(ctx, r, "layers"),
        evidence_card(ctx, r, query),
        card(None,
             note,
             html.Div([
                 html.Label("step"),
                 html.Div(dcc.Slider(id=ids.STEP_SLIDER, min=0, max=max(0, len(steps) - 1), step=1, value=value,
                                     marks=_marks(steps), updatemode="drag", included=False,
                                     allow_direct_input=False), className="bs-slider"),
                 html.Span(id=ids.STEP_LABEL, className="bs-muted"),
             ], className="bs-controls"),
             html.Div([
                 html.Label("layer"),
                 html.Div(dcc.Dropdown(id=ids.LAYER_PICK, options=[{"label": n, "value": n} for n in names],
                                       value=layer, clearable=False), style={"minWidth": "260px"}),
             ], className="bs-controls"),
             html.Div(id=ids.DEPTH_NOTE, className="bs-muted", style={"color": theme.SEVERITY_COLORS["error"]}),
             graph(ids.DEPTH_GRAPH)),
        card(None, dcc.Graph(id=ids.HIST_GRAPH, config={"displaylogo": False})),
        html.Div([card(None, graph(ids.HEATMAP_GRAPH, theme.DEADSAT_HEIGHT)),
                  card(None, graph(ids.DEADSAT_GRAPH, theme.DEADSAT_HEIGHT))], className="bs-grid2"),
    ])


def register(app: Any, ctx: AppContext) -> None:
    @app.callback(Output(ids.STEP_SLIDER, "max"), Output(ids.STEP_SLIDER, "marks"), Output(ids.STEP_SLIDER, "value"),
                  Output(ids.LAYER_PICK, "options"),
                  Input(ids.VERSION, "data"),
                  State(ids.STEP_SLIDER, "value"), State(ids.STEP_SLIDER, "max"), State(ids.RUN_NAME, "data"),
                  prevent_initial_call=True)
    def _follow(_version: Any, value: int | None, old_max: int | None, name: str) -> Any:
        run = ctx.run(name)
        if run is None:
            return (no_update,) * 4
        with run.reading():
            new_max, marks, value = slider_state(run, value, old_max)
            return new_max, marks, value, [{"label": n, "value": n} for n in run.layer_order()]

    @app.callback(Output(ids.DEPTH_GRAPH, "figure"), Output(ids.HIST_GRAPH, "figure"), Output(ids.STEP_LABEL, "children"),
                  Output(ids.DEPTH_NOTE, "children"),
                  Input(ids.STEP_SLIDER, "value"), Input(ids.LAYER_PICK, "value"), State(ids.RUN_NAME, "data"))
    def _at_step(row: int | None, layer: str | None, name: str) -> Any:
        run = ctx.run(name)
        if run is None:
            return (no_update,) * 4
        row = _row(row)
        return ctx.draw("layers-step", run, (row, layer), lambda: _draw_at_step(run, row, layer))

    def _draw_at_step(run: Run, row: int | None, layer: Any) -> Any:
        with run.reading():  # one moment of a growing run for all four outputs
            steps = run.acts.step_array()
            label = f"step {int(steps[row])}" if row is not None and 0 <= row < len(steps) else ""
            return depth_data(run, row, layer), hist_data(run, row, layer), label, nan_note(run, row)

    @app.callback(Output(ids.HEATMAP_GRAPH, "figure"), Output(ids.DEADSAT_GRAPH, "figure"),
                  Input(ids.VERSION, "data"), Input(ids.LAYER_PICK, "value"), State(ids.RUN_NAME, "data"))
    def _over_time(_version: Any, layer: str | None, name: str) -> Any:
        run = ctx.run(name)
        if run is None:
            return no_update, no_update
        return ctx.draw("layers-time", run, (layer,), lambda: _draw_over_time(run, layer))

    def _draw_over_time(run: Run, layer: Any) -> Any:
        with run.reading():  # one moment of a growing run; copies (fancy indexing), drawn after
            names, cols = _order(run)
            if not names:
                msg = figures.empty_figure("No layer statistics recorded yet.")
                return msg, msg
            layer = layer if layer in names else names[0]
            hsteps, lo, hi, counts = run.acts.histograms()
            j = run.acts.index[layer]
            hsteps, lo, hi, counts = hsteps.copy(), lo[:, j].copy(), hi[:, j].copy(), counts[:, j].copy()
            steps = run.acts.step_array().copy()
            kinds = run.layer_kinds()
            dead = run.acts.field("dead_frac")[:, cols]
            sat = run.acts.field("sat_frac")[:, cols]
        heat = figures.heatmap_figure(layer, hsteps, lo, hi, counts)
        relu = np.array([kinds.get(n) in RELU_FAMILY or kinds.get(n) is None for n in names])
        sats = np.array([kinds.get(n) in SATURATING or kinds.get(n) is None for n in names])
        dead = np.where(relu[None, :], dead, np.nan)
        sat = np.where(sats[None, :], sat, np.nan)
        return heat, figures.dead_saturation_figure(steps, dead, sat, names, max_points=ctx.max_points,
                                                    highlight=layer, types=run.layer_types())


PAGE = Page(path="/run/<run>/layers", title="Layers", layout=layout, register=register, tab=True)
