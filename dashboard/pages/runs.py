"""The run list: every run of the log directory with its status, alerts, last step and age.

Rows come from ``core.catalog`` (no run is read to list it): most recently written first,
``PAGE_SIZE`` to a page, filtered by part of the name in the server. A run not summarised
yet (a large log directory on its first start) shows as ``summarising`` until the
background worker reaches it.
"""

from __future__ import annotations

import time
from typing import Any

from dash import Input, Output, State, ctx as dash_ctx, dcc, html

from core.catalog import Row

from .. import ids
from ..findings import recorded_error
from ..context import AppContext, run_href
from . import Page
from ._common import age_text, card, checking_note, count_badges, status_badge

PAGE_SIZE = 50


def _alerts(row: Row) -> list[Any]:
    if row.record is None:
        return [html.Span("summarising…", className="bs-muted")]
    return count_badges(row.record.summary.severities) or [html.Span("none", className="bs-muted")]


def _select(ctx: AppContext, text: str | None, page: int, now: float) -> tuple[list[Row], int, int, int]:
    """(rows of ``page``, the page shown, rows matching, rows in all)."""
    rows = ctx.catalog.rows(now)
    total = len(rows)
    needle = text.strip().lower() if isinstance(text, str) else ""
    if needle:
        rows = [r for r in rows if needle in r.name.lower()]
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(max(0, page), pages - 1)
    return rows[page * PAGE_SIZE:(page + 1) * PAGE_SIZE], page, len(rows), total


def runs_table(ctx: AppContext, rows: list[Row], now: float, *, filtered: bool = False) -> html.Div | html.Table:
    """The table of ``rows``. Names are plain text inside links."""
    if not rows:
        if filtered:
            return html.P("No run name contains that text.", className="bs-muted")
        return html.Div([
            html.P("No runs in this log directory yet."),
            html.P("Start a training with the Monitor pointed at it; runs appear here as they are written.",
                   className="bs-muted"),
        ], className="bs-empty")
    body = []
    for r in rows:
        rec = r.record
        steps = rec.summary.steps if rec is not None else None
        body.append(html.Tr([
            html.Td(dcc.Link(r.name, href=run_href(r.name)), className="name"),
            html.Td(status_badge(r.status, recorded_error(rec.summary.error) if rec is not None else None)
                    if r.status != "pending" else html.Span("-", className="bs-muted")),
            html.Td(_alerts(r)),
            html.Td("-" if steps is None else str(steps)),
            html.Td(str(rec.layers) if rec is not None and rec.layers else "-"),
            html.Td(age_text(now - r.activity) if r.activity else "-"),
        ]))
    head = html.Tr([html.Th(h) for h in ("run", "status", "alerts", "last step", "layers", "last write")])
    return html.Table([html.Thead(head), html.Tbody(body)], className="bs-table")


def pager_text(ctx: AppContext, shown: int, page: int, matching: int, total: int) -> str:
    if not total:
        return ""
    first = page * PAGE_SIZE + 1
    text = (f"runs {first}–{first + shown - 1} of {matching}" if shown else f"0 of {total} runs")
    if matching != total:
        text += f" matching (of {total})"
    pending = ctx.catalog.pending_count()
    if pending:
        text += f" · summarising {pending} of {total} in the background"
    return text + checking_note(ctx)


def _view(ctx: AppContext, text: str | None, page: int) -> tuple[Any, str, int, bool, bool, dict, dict]:
    """(table, pager text, page shown, newer disabled, older disabled, newer style, older style)."""
    ctx.catalog.fill_small()  # a small log directory: every row complete at once
    now = time.time()
    rows, page, matching, total = _select(ctx, text, page, now)
    table = runs_table(ctx, rows, now, filtered=bool(total))
    last = max(0, -(-matching // PAGE_SIZE) - 1)
    shown = {} if last else {"display": "none"}  # one page: no page buttons
    return table, pager_text(ctx, len(rows), page, matching, total), page, page <= 0, page >= last, shown, shown


def layout(ctx: AppContext, query: dict[str, str] | None = None) -> Any:
    ctx.refresh()
    table, text, page, first, last, style, _ = _view(ctx, None, 0)
    return html.Div([
        html.Div([html.H2("Runs"), html.Span(str(ctx.logdir.path), className="bs-muted")], className="bs-title"),
        card(None,
             html.Div([
                 dcc.Input(id=ids.RUNS_FILTER, type="search", placeholder="filter by name", debounce=True,
                           className="bs-filter", value=""),
                 html.Div([
                     html.Button("‹ newer", id=ids.RUNS_PREV, className="bs-button", disabled=first, style=style),
                     html.Button("older ›", id=ids.RUNS_NEXT, className="bs-button", disabled=last, style=style),
                 ], className="bs-buttons"),
                 html.Span(text, id=ids.RUNS_PAGER, className="bs-muted bs-pager"),
             ], className="bs-controls"),
             dcc.Store(id=ids.RUNS_PAGE, data=page),
             html.Div(table, id=ids.RUNS_TABLE)),
    ])


def register(app: Any, ctx: AppContext) -> None:
    @app.callback(Output(ids.RUNS_TABLE, "children"), Output(ids.RUNS_PAGER, "children"),
                  Output(ids.RUNS_PAGE, "data"), Output(ids.RUNS_PREV, "disabled"), Output(ids.RUNS_NEXT, "disabled"),
                  Output(ids.RUNS_PREV, "style"), Output(ids.RUNS_NEXT, "style"),
                  Input(ids.VERSION, "data"), Input(ids.RUNS_FILTER, "value"), Input(ids.RUNS_PREV, "n_clicks"),
                  Input(ids.RUNS_NEXT, "n_clicks"), State(ids.RUNS_PAGE, "data"), prevent_initial_call=True)
    def _refresh_table(_version: Any, text: Any, _prev: Any, _next: Any, page: Any) -> Any:
        page = page if isinstance(page, int) and not isinstance(page, bool) else 0
        trig = dash_ctx.triggered_id
        if trig == ids.RUNS_PREV:
            page -= 1
        elif trig == ids.RUNS_NEXT:
            page += 1
        elif trig == ids.RUNS_FILTER:
            page = 0
        return _view(ctx, text if isinstance(text, str) else None, page)


PAGE = Page(path="/", title="Runs", layout=layout, register=register)
