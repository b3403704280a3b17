"""Pieces shared by the pages: badges, the run header with its tabs, cards, ages."""

from __future__ import annotations

import time
from typing import Any

from dash import dcc, html

from core import Finding, Run

from .. import ids, theme
from ..context import AppContext, run_href
from ..findings import severity_counts

RUN_TABS = (("", "Overview"), ("layers", "Layers"), ("updates", "Updates"))


def badge(text: str, color: str, title: str | None = None) -> html.Span:
    return html.Span(text, className="bs-badge", style={"background": color}, title=title)


def status_badge(status: str) -> html.Span:
    return badge(status, theme.STATUS_COLORS.get(status, theme.MUTED))


def severity_badges(findings: list[Finding]) -> list[html.Span]:
    counts = severity_counts(findings)
    out = []
    for sev in ("error", "warning", "info"):
        if counts.get(sev):
            out.append(badge(f"{counts[sev]} {sev}{'s' if counts[sev] > 1 else ''}", theme.SEVERITY_COLORS[sev]))
    return out


def age_text(seconds: float | None) -> str:
    """``"12 s"``, ``"5 min"``, ``"3 h"``, ``"2 d"``."""
    if seconds is None or seconds != seconds:
        return "-"
    s = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit}"
    return f"{int(s)} s"


def card(title: str | None, *children: Any, **kw: Any) -> html.Div:
    head = [html.H3(title)] if title else []
    return html.Div([*head, *children], className="bs-card", **kw)


def graph(id_: str, height: int = theme.GRAPH_HEIGHT) -> dcc.Graph:
    return dcc.Graph(id=id_, config={"displaylogo": False, "responsive": True}, style={"height": f"{height}px"})


def not_found(name: str | None) -> html.Div:
    return html.Div([
        dcc.Store(id={"type": ids.MISSING, "i": 0}, data=name),
        html.H2("Run not found"),
        html.P(["No run called ", html.Code(str(name)), " in this log directory (yet: this page shows it "
                             "as soon as it appears). "]),
        dcc.Link("Back to all runs", href="/"),
    ], className="bs-card")


def run_header(ctx: AppContext, run: Run, active: str) -> html.Div:
    """Title (name, status, alert counts) and the tabs of one run's pages."""
    findings = ctx.findings(run)
    tabs = [dcc.Link(label, href=run_href(run.name, page), className="active" if page == active else "")
            for page, label in RUN_TABS]
    last = f"step {run.last_step}" if run.last_step is not None else "no steps yet"
    age = age_text(time.time() - run.last_time) if run.last_time else "-"
    return html.Div([
        dcc.Store(id=ids.RUN_NAME, data=run.name),
        html.Div([
            html.H2(run.name),
            status_badge(run.status(stale_after=ctx.stale_after)),
            *severity_badges(findings),
            html.Span(f"{last} · last write {age} ago", className="bs-muted"),
        ], className="bs-title", id=ids.RUN_HEADER),
        html.Div(tabs, className="bs-tabs"),
    ])
