"""Compare runs: the summary table, overlaid curves, hyperparameter scatter, edge-of-range warnings.

The lecture's last step of a hyperparameter search made visible: a sortable, filterable
table of every run (``core.compare`` summaries, computed once per run version); tick runs
to overlay their loss and validation accuracy; the studies of a search run on Optuna, each
with its trial counts, best trial and the finding that pruned each pruned trial (the table
groups runs by study); the chosen metric against each
hyperparameter on a log axis for log-sampled ones, coloured by a second; the
``edge_of_range`` warning with the range to try next; and parallel coordinates over all
numeric hyperparameters. Run names are data in the table and escaped text in the figures.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from typing import Any

from dash import Input, Output, State, dash_table, dcc, html, no_update
from dash.dash_table.Format import Format, Scheme, Trim

from core.compare import (
    HP_PREFIX, column_heading, hparam_specs, search_findings, sort_frame, summaries_frame,
)
from core.table import query_frame
from core.studies import study_summaries

from .. import ids, theme
from ..compare_figures import MAX_OVERLAY, overlay_figure, parallel_figure, scatter_figure
from ..context import AppContext
from . import Page
from ._common import card, checking_note, graph

log = logging.getLogger(__name__)

METRICS = (("best_val_acc", "best val accuracy"), ("final_val_acc", "final val accuracy"),
           ("final_train_acc", "final train accuracy"), ("gap", "train - val gap"), ("final_loss", "final loss"))
_NUMERIC = {"steps", "best_val_acc", "final_val_acc", "best_val_step", "final_train_acc", "gap", "final_loss",
            "errors", "warnings", "infos"}
_HIDDEN = ("diverged", "infos", "best_val_step")
_FMT = Format(precision=4, scheme=Scheme.decimal_or_exponent, trim=Trim.yes)
PAGE_SIZE = 20  # table rows per page (sorted, filtered and paged in the server)


class Snapshot:
    """What the compare page draws from, made once per catalog version (and at most every
    ``MIN_AGE`` s while summaries are being filled in): the summaries, their frame sorted by
    best val accuracy and grouped by study, the hyperparameter specs and the edge findings."""

    MIN_AGE = 3.0

    def __init__(self, ctx: AppContext) -> None:
        self.made = time.monotonic()
        self.summaries = ctx.catalog.summaries_now()
        self.pending = ctx.catalog.pending_count()
        self.checking = checking_note(ctx)
        df = sort_frame(summaries_frame(self.summaries), "best_val_acc")
        self.frame = df.sort_values("study", kind="stable", na_position="last")  # grouped by study, best first
        self.specs = hparam_specs(self.summaries)
        self.edges = search_findings(self.summaries)
        self.signature = hashlib.sha1(repr(_signature(self.frame)).encode()).hexdigest() + f":{self.pending}{self.checking}"


_SNAP_LOCK = threading.Lock()
BACKGROUND_ROWS = 1000  # a snapshot of more runs than this is remade in a thread while the last one is shown


def _snapshot(ctx: AppContext) -> Snapshot:
    """The current ``Snapshot`` (no refresh here: the route and the tick callbacks read new data first).

    Remaking one costs about a second per 10,000 runs: past ``BACKGROUND_ROWS`` runs, a request
    that finds the snapshot out of date gets the last one and a thread makes the next; when
    it is done, ``ctx.generation`` moves on and the next tick redraws the page.
    """
    ctx.catalog.fill_small()
    key = (ctx.catalog.version, int(time.time() // 10))  # statuses age: remade every 10 s at least
    with _SNAP_LOCK:
        got = ctx.page_state.get("compare")
        if got is not None and (got[0] == key or (got[1].pending and time.monotonic() - got[1].made < Snapshot.MIN_AGE)):
            return got[1]
        if got is not None and len(got[1].frame) > BACKGROUND_ROWS:
            if not ctx.page_state.get("compare-making"):
                ctx.page_state["compare-making"] = True
                threading.Thread(target=_remake, args=(ctx, key), name="babysitter-compare", daemon=True).start()
            return got[1]
        snap = Snapshot(ctx)
        ctx.page_state["compare"] = (key, snap)
        return snap


def _remake(ctx: AppContext, key: tuple[int, int]) -> None:
    try:
        snap = Snapshot(ctx)
        with _SNAP_LOCK:
            ctx.page_state["compare"] = (key, snap)
        ctx.generation += 1
    except Exception:  # the page keeps the last table; the next out-of-date request tries again
        log.exception("remaking the comparison table failed")
    finally:
        with _SNAP_LOCK:
            ctx.page_state["compare-making"] = False


def page_rows(snap: Snapshot, page: int, sort_by: Any, filter_query: Any) -> tuple[list[dict[str, Any]], int]:
    """One page of the table, sorted and filtered in the server: (rows, page count)."""
    df = query_frame(snap.frame, filter_query if isinstance(filter_query, str) else None)
    if isinstance(sort_by, list) and sort_by and isinstance(sort_by[0], dict) and sort_by[0].get("column_id") in df.columns:
        col = sort_by[0]["column_id"]
        df = sort_frame(df, col, descending=sort_by[0].get("direction") == "desc")
    pages = max(1, -(-len(df) // PAGE_SIZE))
    page = min(max(0, page if isinstance(page, int) and not isinstance(page, bool) else 0), pages - 1)
    return table_data(df.iloc[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]), pages


def _count_text(snap: Snapshot) -> str:
    text = f"{len(snap.frame)} runs"
    if snap.pending:
        text += f" · summarising {snap.pending} more in the background"
    return text + snap.checking


def _cell(v: Any) -> Any:
    if v is None or isinstance(v, str) or isinstance(v, bool):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None  # pandas NA
    if isinstance(v, float) and not math.isfinite(f):
        return None
    return v.item() if hasattr(v, "item") else v


def table_data(df) -> list[dict[str, Any]]:
    """Rows for the DataTable: ``id`` is the run name; NaN as empty cells; objects as text."""
    rows = []
    for rec in df.to_dict("records"):
        row = {k: _cell(v) for k, v in rec.items()}
        row["diverged"] = "yes" if rec.get("diverged") else ""
        row["id"] = rec["run"]
        rows.append(row)
    return rows


def table_columns(df, specs: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """DataTable columns: the summary, then hyperparameters (those that vary between runs first)."""
    specs = specs or {}
    hp = [c for c in df.columns if c.startswith(HP_PREFIX)]
    hp.sort(key=lambda c: (not specs.get(c[len(HP_PREFIX):], {}).get("varying", True), c))
    cols = []
    for c in [c for c in df.columns if not c.startswith(HP_PREFIX)] + hp:
        if c in _HIDDEN:
            continue
        spec: dict[str, Any] = {"name": column_heading(c), "id": c}
        if c in _NUMERIC or (c.startswith(HP_PREFIX) and df[c].map(lambda v: isinstance(v, (int, float))
                                                                   and not isinstance(v, bool)).all()):
            spec.update(type="numeric", format=_FMT)
        cols.append(spec)
    return cols


def edges_view(edges) -> Any:
    if not edges:
        return html.P("No hyperparameter's best value sits at the edge of its sampled range.", className="bs-muted")
    items = []
    for e in edges:
        f = e.finding
        items.append(html.Div([
            html.Span("edge of range", className="bs-badge", style={"background": theme.SEVERITY_COLORS["warning"]}),
            html.Span(f" {e.search or 'search'} · {e.param}: ", style={"fontWeight": 600}),
            html.Span(f.message),
            html.Div(["Try next: ", html.B(f"{e.param} in [{e.suggest_low:.3g}, {e.suggest_high:.3g}]"
                                           + (" (log-uniform)" if e.log else ""))], className="bs-muted"),
        ], className="compare-edge", style={"marginBottom": "8px"}))
    return html.Div(items)


def studies_view(summaries) -> Any:
    """Each study: its trials by state, its best trial, and what pruned each pruned trial."""
    studies = study_summaries(summaries)
    if not studies:
        return html.P("No run is a trial of a study (monitor.search.random_search records them).",
                      className="bs-muted")
    items = []
    for st in studies:
        counts = ", ".join(f"{n} {state}" for state, n in st.states.items() if n)
        best = (f"best {st.best_run} ({st.metric or 'value'} {st.best_value:.4g})" if st.best_run
                else "no complete trial yet")
        pruned = [html.Li([html.Span(f"{run} ", style={"fontWeight": 600}),
                           html.Span(f"after step {steps}: " if steps is not None else ": "),
                           html.Span(f"{f.rule}: {f.message}" if f is not None else "?")])
                  for run, steps, f in st.pruned]
        items.append(html.Div([
            html.Span(st.name, style={"fontWeight": 600}),
            html.Span(f" · {st.trials} trials ({counts}) · {best}"),
            html.Div(f"storage: {st.storage}", className="bs-muted") if st.storage else None,
            html.Details([html.Summary(f"{len(pruned)} pruned trials"), html.Ul(pruned)]) if pruned else None,
        ], className="compare-study", style={"marginBottom": "8px"}))
    return html.Div(items)


def _numeric_params(specs: dict[str, dict[str, Any]]) -> list[str]:
    # Sampled parameters first (what a search varies), log-sampled ones (learning rate,
    # regularization: the ones that matter most) before the others.
    nums = [k for k, s in specs.items() if s["numeric"] and s["varying"]]
    return sorted(nums, key=lambda k: (not specs[k].get("sampled"), not specs[k]["log"], k))


def _param_options(specs: dict[str, dict[str, Any]]) -> tuple[list[str], list[dict[str, str]]]:
    """The numeric hyperparameters and the dropdown options that offer them."""
    params = _numeric_params(specs)
    return params, [{"label": p + (" (log)" if specs[p]["log"] else ""), "value": p} for p in params]


def _signature(df) -> list[Any]:
    return [df["run"].tolist(), df["status"].tolist(), df["steps"].astype("float64").fillna(-1).tolist(),
            df["best_val_acc"].fillna(-1).tolist()]


def _curves(ctx: AppContext, names: list[str], metric: str):
    out = []
    for n in names:
        run = ctx.run(n)
        if run is None:
            continue
        s = run.metric(metric)
        if len(s):
            out.append((n, s.steps, s.values))
    return out


def layout(ctx: AppContext, query: dict[str, str] | None = None) -> Any:
    snap = _snapshot(ctx)
    summaries, df, specs, edges = snap.summaries, snap.frame, snap.specs, snap.edges
    params, opts = _param_options(specs)
    x0 = params[0] if params else None
    c0 = params[1] if len(params) > 1 else None
    by_param = {e.param: e for e in edges}
    rows, pages = page_rows(snap, 0, [], "")
    return html.Div([
        dcc.Store(id=ids.COMPARE_SEEN, data=snap.signature),
        dcc.Store(id=ids.COMPARE_PICKED, data=[]),
        html.Div([html.H2("Compare runs"),
                  html.Span(_count_text(snap), id=ids.COMPARE_COUNT, className="bs-muted")], className="bs-title"),
        card("Studies", html.Div(studies_view(summaries), id=ids.COMPARE_STUDIES)),
        card("Search findings", html.Div(edges_view(edges), id=ids.COMPARE_EDGES)),
        card(None,
             html.P("Sort by clicking a heading; filter with the row under it (e.g. > 0.9, or text). "
                    "Tick runs to overlay their curves below.", className="bs-muted"),
             dash_table.DataTable(
                 id=ids.COMPARE_TABLE, data=rows, columns=table_columns(df, specs),
                 row_selectable="multi", selected_row_ids=[], sort_action="custom", sort_mode="single",
                 sort_by=[], filter_action="custom", filter_query="", page_action="custom", page_current=0,
                 page_size=PAGE_SIZE, page_count=pages, style_table={"overflowX": "auto"},
                 style_cell={"fontFamily": theme.FONT, "fontSize": "13px", "padding": "4px 8px",
                             "maxWidth": "260px", "overflow": "hidden", "textOverflow": "ellipsis"},
                 style_header={"fontWeight": 600, "background": "#f0f4f8"},
                 style_data_conditional=[
                     {"if": {"filter_query": '{status} = "crashed"', "column_id": "status"},
                      "color": theme.STATUS_COLORS["crashed"], "fontWeight": 600},
                     {"if": {"filter_query": '{status} = "live"', "column_id": "status"},
                      "color": theme.STATUS_COLORS["live"], "fontWeight": 600},
                     {"if": {"filter_query": '{status} = "pruned"', "column_id": "status"},
                      "color": theme.STATUS_COLORS["pruned"], "fontWeight": 600},
                 ],
                 tooltip_duration=None)),
        html.Div([card(None, graph(ids.COMPARE_LOSS_GRAPH)), card(None, graph(ids.COMPARE_ACC_GRAPH))],
                 className="bs-grid2"),
        card(None,
             html.Div([
                 html.Label("x"),
                 html.Div(dcc.Dropdown(id=ids.COMPARE_SCATTER_X, options=opts, value=x0, clearable=False),
                          style={"minWidth": "200px"}),
                 html.Label("colour"),
                 html.Div(dcc.Dropdown(id=ids.COMPARE_SCATTER_COLOR, options=opts, value=c0),
                          style={"minWidth": "200px"}),
                 html.Label("metric"),
                 html.Div(dcc.Dropdown(id=ids.COMPARE_METRIC, value="best_val_acc", clearable=False,
                                       options=[{"label": b, "value": a} for a, b in METRICS]),
                          style={"minWidth": "200px"}),
             ], className="bs-controls"),
             dcc.Graph(id=ids.COMPARE_SCATTER_GRAPH,
                       figure=scatter_figure(df, x0, color=c0, specs=specs, edge=by_param.get(x0))
                       if x0 else scatter_figure(None, ""), config={"displaylogo": False},
                       style={"height": f"{theme.GRAPH_HEIGHT + 60}px"})),
        card(None, dcc.Graph(id=ids.COMPARE_PARALLEL_GRAPH, figure=parallel_figure(df, params, specs=specs),
                             config={"displaylogo": False}, style={"height": "380px"})),
    ])


def register(app: Any, ctx: AppContext) -> None:
    @app.callback(Output(ids.COMPARE_TABLE, "columns"),
                  Output(ids.COMPARE_EDGES, "children"), Output(ids.COMPARE_COUNT, "children"),
                  Output(ids.COMPARE_SEEN, "data"), Output(ids.COMPARE_SCATTER_X, "options"),
                  Output(ids.COMPARE_SCATTER_COLOR, "options"), Output(ids.COMPARE_STUDIES, "children"),
                  Input(ids.VERSION, "data"), State(ids.COMPARE_SEEN, "data"), prevent_initial_call=True)
    def _refresh(_version: Any, seen: Any) -> Any:
        snap = _snapshot(ctx)
        if snap.signature == seen:
            return (no_update,) * 7
        _, opts = _param_options(snap.specs)
        return (table_columns(snap.frame, snap.specs), edges_view(snap.edges), _count_text(snap), snap.signature,
                opts, opts, studies_view(snap.summaries))

    @app.callback(Output(ids.COMPARE_TABLE, "data"), Output(ids.COMPARE_TABLE, "page_count"),
                  Output(ids.COMPARE_TABLE, "selected_rows"), Output(ids.COMPARE_TABLE, "selected_row_ids"),
                  Input(ids.COMPARE_TABLE, "page_current"), Input(ids.COMPARE_TABLE, "sort_by"),
                  Input(ids.COMPARE_TABLE, "filter_query"), Input(ids.COMPARE_SEEN, "data"),
                  State(ids.COMPARE_PICKED, "data"), prevent_initial_call=True)
    def _page(page: Any, sort_by: Any, filter_query: Any, _seen: Any, picked: Any) -> Any:
        rows, pages = page_rows(_snapshot(ctx), page, sort_by, filter_query)
        picked = set(p for p in picked if isinstance(p, str)) if isinstance(picked, list) else set()
        sel = [i for i, r in enumerate(rows) if r["id"] in picked]
        return rows, pages, sel, [rows[i]["id"] for i in sel]

    @app.callback(Output(ids.COMPARE_PICKED, "data"), Input(ids.COMPARE_TABLE, "selected_row_ids"),
                  State(ids.COMPARE_TABLE, "data"), State(ids.COMPARE_PICKED, "data"), prevent_initial_call=True)
    def _pick(selected: Any, shown: Any, picked: Any) -> Any:
        # The ticks of the page shown replace that page's part of the runs picked on any page.
        picked = [p for p in picked if isinstance(p, str)] if isinstance(picked, list) else []
        selected = [n for n in selected if isinstance(n, str)] if isinstance(selected, list) else []
        on_page = {r.get("id") for r in shown if isinstance(r, dict)} if isinstance(shown, list) else set()
        keep = [p for p in picked if p not in on_page]
        out = list(dict.fromkeys(keep + selected))[:MAX_OVERLAY]
        return out if out != picked else no_update

    @app.callback(Output(ids.COMPARE_LOSS_GRAPH, "figure"), Output(ids.COMPARE_ACC_GRAPH, "figure"),
                  Input(ids.COMPARE_PICKED, "data"))
    def _overlay(selected: list[str] | None) -> Any:
        # At most MAX_OVERLAY distinct names are looked up: a request may list 200,000 of them.
        names = list(dict.fromkeys(n for n in (selected if isinstance(selected, list) else [])
                                   if isinstance(n, str)))[:MAX_OVERLAY]
        loss = _curves(ctx, names, "loss")
        acc = _curves(ctx, names, "val_acc")
        return (overlay_figure(loss, title="Training loss of the selected runs", y_title="loss", log_y=True,
                               max_points=ctx.max_points),
                overlay_figure(acc, title="Validation accuracy of the selected runs", y_title="val accuracy",
                               max_points=ctx.max_points, markers=True))

    @app.callback(Output(ids.COMPARE_SCATTER_GRAPH, "figure"), Output(ids.COMPARE_PARALLEL_GRAPH, "figure"),
                  Input(ids.COMPARE_SCATTER_X, "value"), Input(ids.COMPARE_SCATTER_COLOR, "value"),
                  Input(ids.COMPARE_METRIC, "value"),
                  Input(ids.COMPARE_SEEN, "data"), prevent_initial_call=True)
    def _scatter(x: str | None, color: str | None, metric: str | None, _seen: Any) -> Any:
        snap = _snapshot(ctx)
        df, specs, edges = snap.frame, snap.specs, snap.edges
        x, color, metric = (v if isinstance(v, str) else None for v in (x, color, metric))  # a request sends anything
        metric = metric if metric in dict(METRICS) else "best_val_acc"
        params = _numeric_params(specs)
        by_param = {e.param: e for e in edges} if metric == "best_val_acc" else {}
        scatter = (scatter_figure(df, x, metric=metric, color=color if color != x else None, specs=specs,
                                  edge=by_param.get(x)) if x in specs else scatter_figure(None, ""))
        return scatter, parallel_figure(df, params, metric=metric, specs=specs)


PAGE = Page(path="/compare", title="Compare", layout=layout, register=register)
