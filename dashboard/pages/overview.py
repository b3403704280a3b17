"""One run at a glance: findings (explanation and fix, newest first), loss, accuracy, learning rate."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, dcc, html, no_update

from core import Finding, Run
from core import views

from .. import ids, run_figures, theme
from ..context import AppContext, run_href
from . import Page
from ..evidence import evidence_href
from ..findings import no_findings_text, recorded_error
from ._common import badge, card, graph, not_found, run_header
from ._evidence import evidence_card


def finding_item(run: Run, f: Finding) -> html.Div:
    """One finding as text; each layer it names links to that layer (or parameter) on its page."""
    links: list[Any] = []
    acts, params = set(views.layer_names(run)), set(views.param_names(run))
    for name in f.layers:
        if name in acts or name not in params:
            href = run_href(run.name, "layers", layer=name)
        else:
            href = run_href(run.name, "updates", param=name)
        links.extend([dcc.Link(name, href=href, className="bs-layer-link"), " "])
    color = theme.SEVERITY_COLORS.get(f.severity, theme.MUTED)
    head = [badge(f.severity, color), html.Span(f.rule, className="rule"), html.Span(f"step {f.step}", className="bs-muted")]
    if links:
        head.append(html.Span(["layers: ", *links]))
    href = evidence_href(run, f)
    if href is not None:
        head.append(dcc.Link("show the plot", href=href, className="bs-evidence-link"))
    body = [html.Div(head, className="head"), html.Div(f.message, className="msg")]
    if f.fix:
        body.append(html.Div(["Fix: ", f.fix], className="fix"))
    return html.Div(body, className="bs-finding", style={"borderLeftColor": color})


def crash_note(run: Run) -> html.Div | None:
    """The error that stopped a crashed training (``meta.json``'s ``error``), as text; None without one."""
    error = recorded_error(run.meta.error)
    if error is None:
        return None
    where = f" after step {run.last_step}" if run.last_step is not None else ""
    return html.Div([html.Div(f"Training stopped with an error{where}:", className="head"),
                     html.Div(error, className="msg")], className="bs-crash", role="alert")


def findings_list(run: Run, findings: list[Finding], status: str = "live") -> Any:
    """The findings, or a sentence that fits the run: "so far" only while it can still change.

    A run that crashed with a recorded error shows that error first, above the findings.
    """
    body = ([finding_item(run, f) for f in findings] if findings
            else html.Div(no_findings_text(status), className="bs-muted"))
    note = crash_note(run)
    if note is None:
        return body
    return [note, *(body if isinstance(body, list) else [body])]


def problems_list(run: Run) -> Any:
    probs = run.all_problems()
    if not probs:
        return None
    total = run.problem_count + (len(probs) - len(run.problems))
    items = [html.Li(str(p)) for p in probs[:20]]
    if total > 20:
        items.append(html.Li(f"... and {total - 20} more", className="bs-muted"))
    return html.Details([html.Summary(f"{total} reading problem(s) (lines skipped)"), html.Ul(items)])


def layout(ctx: AppContext, run: str = "", query: dict[str, str] | None = None) -> Any:
    r = ctx.run(run)
    if r is None:
        return not_found(run)
    return html.Div([
        run_header(ctx, r, ""),
        evidence_card(ctx, r, query),
        card("Findings", html.Div(findings_list(r, ctx.findings(r), r.status(stale_after=ctx.stale_after)),
                                  id=ids.FINDINGS),
             html.Div(problems_list(r), id=ids.PROBLEMS)),
        card(None,
             html.Div([html.Label("loss axis"),
                       # "auto": log when the loss spans more than two decades or diverged
                       # (figures.loss_wants_log), so the default view tells the truth.
                       dcc.RadioItems(id=ids.LOSS_SCALE, options=[{"label": " auto", "value": "auto"},
                                                                   {"label": " linear", "value": "linear"},
                                                                   {"label": " log", "value": "log"}],
                                      value="auto", inline=True, inputStyle={"marginLeft": "10px"})],
                      className="bs-controls"),
             graph(ids.LOSS_GRAPH)),
        html.Div([card(None, graph(ids.ACC_GRAPH, theme.SMALL_GRAPH_HEIGHT)),
                  card(None, graph(ids.LR_GRAPH, theme.SMALL_GRAPH_HEIGHT))], className="bs-grid2"),
    ])


def register(app: Any, ctx: AppContext) -> None:
    @app.callback(
        Output(ids.FINDINGS, "children"), Output(ids.PROBLEMS, "children"),
        Output(ids.ACC_GRAPH, "figure"), Output(ids.LR_GRAPH, "figure"),
        Input(ids.VERSION, "data"), State(ids.RUN_NAME, "data"))
    def _update(_version: Any, name: str) -> Any:
        run = ctx.run(name)
        if run is None:
            return (no_update,) * 4
        return ctx.draw("overview", run, (), lambda: _draw(run))

    def _draw(run: Any) -> Any:
        n = ctx.max_points
        return (findings_list(run, ctx.findings(run), run.status(stale_after=ctx.stale_after)), problems_list(run),
                run_figures.accuracy(run, max_points=n), run_figures.lr(run, max_points=n))

    @app.callback(Output(ids.LOSS_GRAPH, "figure"),
                  Input(ids.VERSION, "data"), Input(ids.LOSS_SCALE, "value"), State(ids.RUN_NAME, "data"))
    def _loss_graph(_version: Any, scale: str, name: str) -> Any:
        run = ctx.run(name)
        if run is None:
            return no_update
        return ctx.draw("overview-loss", run, (scale,), lambda: _draw_loss(run, scale))

    def _draw_loss(run: Any, scale: Any) -> Any:
        return run_figures.loss(run, log_y=None if scale == "auto" else scale == "log", max_points=ctx.max_points)


PAGE = Page(path="/run/<run>", title="Overview", layout=layout, register=register, tab=True)
