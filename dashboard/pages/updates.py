"""Parameter updates: update:weight ratio per parameter on a log axis with the healthy band, gradient norms."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, dcc, html, no_update

from core import views

from .. import ids, run_figures
from ..context import AppContext
from . import Page
from ._common import card, graph, not_found, run_header
from ._evidence import evidence_card


def layout(ctx: AppContext, run: str = "", query: dict[str, str] | None = None) -> Any:
    r = ctx.run(run)
    if r is None:
        return not_found(run)
    names = views.param_names(r)
    param = (query or {}).get("param")
    return html.Div([
        run_header(ctx, r, "updates"),
        evidence_card(ctx, r, query),
        card(None,
             html.Div([html.Label("highlight"),
                       html.Div(dcc.Dropdown(id=ids.PARAM_PICK, options=[{"label": n, "value": n} for n in names],
                                             value=param if param in names else None, placeholder="parameter"),
                                style={"minWidth": "260px"})], className="bs-controls"),
             html.P("The lecture's rule of thumb: each step should change a weight by about 1/1000 of its size. "
                    "Far above the band, the learning rate is too high for that layer; far below, too low.",
                    className="bs-muted"),
             graph(ids.RATIO_GRAPH, 420)),
        card(None, graph(ids.GRAD_GRAPH)),
    ])


def register(app: Any, ctx: AppContext) -> None:
    @app.callback(Output(ids.RATIO_GRAPH, "figure"), Output(ids.GRAD_GRAPH, "figure"),
                  Output(ids.PARAM_PICK, "options"),
                  Input(ids.VERSION, "data"), Input(ids.PARAM_PICK, "value"), State(ids.RUN_NAME, "data"))
    def _update(_version: Any, param: str | None, name: str) -> Any:
        run = ctx.run(name)
        if run is None:
            return no_update, no_update, no_update
        return ctx.draw("updates", run, (param,), lambda: _draw(run, param))

    def _draw(run: Any, param: str | None) -> Any:
        n = ctx.max_points
        # Each figure reads one moment of a growing run (core.views) and is drawn outside its lock.
        return (run_figures.update_ratio(run, highlight=param, max_points=n),
                run_figures.grad_norm(run, highlight=param, max_points=n),
                [{"label": p, "value": p} for p in views.param_names(run)])


PAGE = Page(path="/run/<run>/updates", title="Updates", layout=layout, register=register, tab=True)
