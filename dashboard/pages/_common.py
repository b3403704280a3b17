"""Pieces shared by the pages: badges, the run header with its tabs, cards, ages."""

from __future__ import annotations

import time
from typing import Any

from dash import Input, Output, State, dcc, html, no_update

from core import Finding, Run
from core.schema import KIND_SCALARS

from .. import ids, theme
from ..context import AppContext, run_href
from ..findings import recorded_error, severity_counts

RUN_TABS = (("", "Overview"), ("layers", "Layers"), ("updates", "Updates"))


def badge(text: str, color: str, title: str | None = None) -> html.Span:
    return html.Span(text, className="bs-badge", style={"background": color}, title=title)


def status_badge(status: str, error: str | None = None) -> html.Span:
    """The status as a coloured badge; a recorded ``error`` (a crashed run's) is its tooltip."""
    title = f"stopped with: {error[:ERROR_TITLE_CHARS]}" if error else None
    return badge(status, theme.STATUS_COLORS.get(status, theme.MUTED), title=title)


ERROR_TITLE_CHARS = 300  # of a crashed run's error in its status badge's tooltip (the overview shows all)


def severity_badges(findings: list[Finding]) -> list[html.Span]:
    return count_badges(severity_counts(findings))


def count_badges(counts: dict[str, int]) -> list[html.Span]:
    """``2 errors``, ``1 warning`` badges from findings counted by severity."""
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


def checking_note(ctx: AppContext) -> str:
    """What the run list and the comparison add while a restart's list, seeded from the summary
    index, is still being compared with the files (``core.LogDir.seed``); else ""."""
    return "" if ctx.logdir.verified else " · checking every run for changes since the last start"


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


def header_status(ctx: AppContext, run: Run) -> list[Any]:
    """The live part of a run's title: status, alert counts and the last step."""
    last = f"step {run.last_step}" if run.last_step is not None else "no steps yet"
    return [status_badge(run.status(stale_after=ctx.stale_after), recorded_error(run.meta.error)),
            *severity_badges(ctx.findings(run)),
            html.Span(last, className="bs-muted")]


def sampled_note(run: Run) -> str:
    """What part of a run opened sampled is shown (``core._sample``), as a sentence; ``""`` when all of it."""
    parts, searching = [], []
    for s in run.sampled():
        shown, total = s.steps()
        what = "scalar steps" if s.kinds == (KIND_SCALARS,) else "logged steps"
        parts.append(f"{s.file} ({s.size / 1e6:,.0f} MB): {shown:,} of about {total:,} {what}")
        if not s.searched:
            searching.append(f"{s.file} {100 * s.scanned // max(1, s.head_end)}%")
    if not parts:
        return ""
    found = ("Searching the rest for findings and NaN/Inf losses: " + ", ".join(searching) + " done." if searching
             else "Every finding and NaN/Inf loss in these files was read.")
    return "Large run, shown sampled: " + "; ".join(parts) + " (evenly spaced, the last part in full). " + found


def run_header(ctx: AppContext, run: Run, active: str) -> html.Div:
    """Title (name, status, alert counts, last step and write) and the tabs of one run's pages.

    The status part is redrawn by ``register``'s callback whenever the run's version changes;
    the age of the last write is counted in the browser (``_AGE_JS``) on every tick.
    """
    tabs = [dcc.Link(label, href=run_href(run.name, page), className="active" if page == active else "")
            for page, label in RUN_TABS]
    age = age_text(time.time() - run.last_time) if run.last_time else "-"
    return html.Div([
        dcc.Store(id=ids.RUN_NAME, data=run.name),
        html.Div([
            html.H2(run.name),
            html.Span(header_status(ctx, run), id=ids.RUN_STATUS, className="bs-title-live"),
            html.Span(f"last write {age} ago", id=ids.RUN_AGE, className="bs-muted"),
        ], className="bs-title", id=ids.RUN_HEADER),
        html.Div(sampled_note(run), id=ids.RUN_SAMPLED, className="bs-muted"),
        html.Div(tabs, className="bs-tabs"),
    ])


# ``age_text`` in the browser (the same units), for the indicators counted there.
AGE_TEXT_JS = """function (s) {
    var units = [["d", 86400], ["h", 3600], ["min", 60]];
    for (var i = 0; i < units.length; i++) {
        if (s >= units[i][1]) { return Math.floor(s / units[i][1]) + " " + units[i][0]; }
    }
    return Math.floor(s) + " s";
}"""

# The server/browser clock offset comes from the shell's live indicator.
_AGE_JS = """
function(n, data) {
    if (!data || !data.key || data.key[0] !== "run") { return dash_clientside.no_update; }
    if (!data.t) { return "last write - ago"; }
    var off = window.__bsOffset === undefined ? 0 : window.__bsOffset;
    var s = Math.max(0, Date.now() / 1000 - off - data.t);
    return "last write " + (%s)(s) + " ago";
}
""" % AGE_TEXT_JS


def register(app: Any, ctx: AppContext) -> None:
    """The run header's callbacks, shared by every page of one run."""

    @app.callback(Output(ids.RUN_STATUS, "children"), Output(ids.RUN_SAMPLED, "children"),
                  Input(ids.VERSION, "data"), State(ids.RUN_NAME, "data"))
    def _status(_version: Any, name: str) -> Any:
        run = ctx.run(name)
        return (no_update, no_update) if run is None else (header_status(ctx, run), sampled_note(run))

    @app.callback(Output(ids.RUN_SAMPLED, "children", allow_duplicate=True), Input(ids.SEARCH, "data"),
                  State(ids.RUN_NAME, "data"), prevent_initial_call=True)
    def _searched(_read: Any, name: str) -> Any:
        # How far the search of a sampled run has got: it moves without new data (see dashboard.app).
        run = ctx.run(name)
        return no_update if run is None else sampled_note(run)

    app.clientside_callback(_AGE_JS, Output(ids.RUN_AGE, "children"),
                            Input(ids.TICK, "n_intervals"), Input(ids.VERSION, "data"))
