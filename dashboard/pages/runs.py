"""The run list: every run of the log directory with its status, alerts, last step and age."""

from __future__ import annotations

import time
from typing import Any

from dash import Input, Output, dcc, html

from core import Run

from .. import ids
from ..context import AppContext, run_href
from . import Page
from ._common import age_text, card, severity_badges, status_badge


def runs_table(ctx: AppContext, runs: list[Run], now: float | None = None) -> html.Div:
    """The table of runs (newest write first). Names are plain text inside links."""
    now = time.time() if now is None else now
    if not runs:
        return html.Div([
            html.P("No runs in this log directory yet."),
            html.P("Start a training with the Monitor pointed at it; runs appear here as they are written.",
                   className="bs-muted"),
        ], className="bs-empty")
    rows = []
    for run in sorted(runs, key=lambda r: -(r.last_time or r.meta.created or 0)):
        findings = ctx.findings(run)
        badges = severity_badges(findings) or [html.Span("none", className="bs-muted")]
        rows.append(html.Tr([
            html.Td(dcc.Link(run.name, href=run_href(run.name)), className="name"),
            html.Td(status_badge(run.status(now=now, stale_after=ctx.stale_after))),
            html.Td(badges),
            html.Td("-" if run.last_step is None else str(run.last_step)),
            html.Td(str(len(run.acts.names)) if run.acts.names else "-"),
            html.Td(age_text(now - run.last_time) if run.last_time else "-"),
        ]))
    head = html.Tr([html.Th(h) for h in ("run", "status", "alerts", "last step", "layers", "last write")])
    return html.Table([html.Thead(head), html.Tbody(rows)], className="bs-table")


def layout(ctx: AppContext, query: dict[str, str] | None = None) -> Any:
    ctx.refresh()
    return html.Div([
        html.Div([html.H2("Runs"), html.Span(str(ctx.logdir.path), className="bs-muted")], className="bs-title"),
        card(None, html.Div(runs_table(ctx, ctx.logdir.runs()), id=ids.RUNS_TABLE)),
    ])


def register(app: Any, ctx: AppContext) -> None:
    @app.callback(Output(ids.RUNS_TABLE, "children"), Input(ids.VERSION, "data"), prevent_initial_call=True)
    def _refresh_table(_version: Any) -> Any:
        return runs_table(ctx, ctx.logdir.runs())


PAGE = Page(path="/", title="Runs", layout=layout, register=register)
