"""Per-layer activations: mean and std versus depth at a chosen step, histograms, dead and saturated units."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from dash import Input, Output, State, dcc, html, no_update

from core import Run
from core import views

from .. import figures, ids, run_figures, theme
from ..context import AppContext
from . import Page
from ._common import card, graph, not_found, run_header
from ._evidence import evidence_card

MAX_SMALL_MULTIPLES = 12


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
    steps = views.layer_steps(run)
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


def hist_data(run: Run, row: int | None, highlight: str | None) -> Any:
    names = views.layer_names(run)
    show = pick_layers(names, highlight)
    got = views.histograms_at(run, show, row=row) if names and row is not None else None
    if got is None:
        return figures.histograms_figure([], [], [], [])
    step, lo, hi, counts = got
    return figures.histograms_figure(show, lo, hi, counts, step=step, highlight=highlight, types=run.layer_types())


def nan_note(run: Run, row: int | None) -> str:
    """Which layers had no finite statistic at ``row`` (a diverged run), as a sentence; ``""`` when none.

    Their points are missing from the depth plot and their histograms from the small
    multiples, and without this sentence the page would look merely empty.
    """
    if row is None or row < 0:
        return ""
    return _nan_note(views.layers_at(run, row=row))


def _nan_note(at: views.LayersAt) -> str:
    if at.step is None:
        return ""
    mean, std = at.values["mean"], at.values["std"]
    bad = [n for n, m, s in zip(at.names, mean, std) if not (np.isfinite(m) and np.isfinite(s))]
    if not bad:
        return ""
    if len(bad) == len(at.names):
        return (f"At step {at.step} every recorded value of every layer was NaN or Inf (the training diverged): "
                "there is nothing to draw. Move the slider back to see the steps before it.")
    shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
    return f"At step {at.step} every recorded value of {shown} was NaN or Inf: those layers are not drawn."


def layout(ctx: AppContext, run: str = "", query: dict[str, str] | None = None) -> Any:
    r = ctx.run(run)
    if r is None:
        return not_found(run)
    query = query or {}
    names = views.layer_names(r)
    layer = query.get("layer") if query.get("layer") in names else (names[0] if names else None)
    steps = views.layer_steps(r)
    value = len(steps) - 1 if len(steps) else 0
    if re.fullmatch(r"-?[0-9]{1,19}", query.get("step", "")):  # not str.isdigit: "²" is a digit to it
        at = views.layer_row_at(r, int(query["step"]))
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
            at = views.layers_at(run, row=row) if row is not None and row >= 0 else None
            if at is None or at.step is None:
                at = views.LayersAt(None, None, [], [], {})
            label = f"step {at.step}" if at.step is not None else ""
            return (run_figures.depth_of(at, highlight=layer, types=run.layer_types()), hist_data(run, row, layer),
                    label, _nan_note(at))

    @app.callback(Output(ids.HEATMAP_GRAPH, "figure"), Output(ids.DEADSAT_GRAPH, "figure"),
                  Input(ids.VERSION, "data"), Input(ids.LAYER_PICK, "value"), State(ids.RUN_NAME, "data"))
    def _over_time(_version: Any, layer: str | None, name: str) -> Any:
        run = ctx.run(name)
        if run is None:
            return no_update, no_update
        return ctx.draw("layers-time", run, (layer,), lambda: _draw_over_time(run, layer))

    def _draw_over_time(run: Run, layer: Any) -> Any:
        with run.reading():  # one moment of a growing run; only what is drawn is copied
            names = run.layer_order()
            if not names:
                msg = figures.empty_figure("No layer statistics recorded.")
                return msg, msg
            layer = layer if layer in names else names[0]
            hist = views.histogram_history(run, layer)
        return (figures.heatmap_figure(layer, *hist),
                run_figures.dead_saturation(run, highlight=layer, max_points=ctx.max_points))


PAGE = Page(path="/run/<run>/layers", title="Layers", layout=layout, register=register, tab=True)
