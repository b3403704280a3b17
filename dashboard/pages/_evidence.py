"""The evidence card: the finding a link names (``?rule=...&step=...``), drawn at the top of its page."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from core import Run

from .. import ids, theme
from ..context import AppContext
from ..evidence import evidence_figure, find_finding
from ._common import badge, card


def evidence_card(ctx: AppContext, run: Run, query: dict[str, str] | None) -> Any:
    """The card for the finding named in ``query``; None when the query names none (or it is gone)."""
    if not query or not query.get("rule"):
        return None
    f = find_finding(ctx.findings(run), query)
    if f is None:
        return card(None, html.Div(f"No {query.get('rule')!s} finding in this run (any more).", className="bs-muted"),
                    id=ids.EVIDENCE)
    color = theme.SEVERITY_COLORS.get(f.severity, theme.MUTED)
    head = html.Div([badge(f.severity, color), html.Span(f.rule, className="rule"),
                     html.Span(f"step {f.step}", className="bs-muted"),
                     html.Span(["layers: ", ", ".join(f.layers)]) if f.layers else None], className="head")
    return card(None,
                html.Div([head, html.Div(f.message, className="msg")], className="bs-finding",
                         style={"borderLeftColor": color}),
                dcc.Graph(id=ids.EVIDENCE_GRAPH, figure=evidence_figure(run, f, max_points=ctx.max_points),
                          config={"displaylogo": False, "responsive": True}),
                id=ids.EVIDENCE)
