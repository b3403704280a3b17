"""The Dash app factory: ``create_app(logdir) -> dash.Dash``.

The app is a shell (top bar, live indicator, a ``dcc.Location`` router) around pages.

Pages live in ``dashboard/pages/``, one module each, exposing ``PAGE = Page(...)``
(see ``dashboard/pages/__init__.py``). To add a page:

1. write ``dashboard/pages/<name>.py`` with ``layout(ctx, **captures, query=dict)`` and,
   when it has callbacks, ``register(app, ctx)``; put its component ids in ``dashboard/ids.py``
   and its figure builders in ``dashboard/figures.py`` (or a module of its own);
2. end it with ``PAGE = Page(path="/<name>", title="...", layout=layout, register=register)``;
3. list ``"<name>"`` in ``PAGE_MODULES`` (``"compare"`` is listed already: it is picked up
   as soon as ``dashboard/pages/compare.py`` exists, and the top bar links to it).

Live refresh: a ``dcc.Interval`` (1 s) asks the server for the version of what the
current page shows (``Catalog.version`` for the run list, ``Run.data_version`` for a run's
pages). The server first reads what the file watcher marked dirty (``LogDir.refresh``,
only new bytes), then answers ``no_update`` when the version is the one the page holds,
so an idle dashboard costs one tiny request per second. Page callbacks take the version
store as input and redraw only when it changed. While a run opened sampled is searched
(``core._sample``: a step per refresh, for a minute on a gigabyte), only the search
store moves (``Run.version``), and with it only the sentence that says how far the
search has got: the figures are redrawn when the search finds something. The "live / last update N s ago"
indicator is drawn in the browser (a clientside callback) from the same store.

Host check (DNS rebinding): every request whose ``Host`` header does not name a loopback
host (``localhost``, ``127.x.x.x``, ``[::1]``) or one of ``allowed_hosts`` (what ``--host``
was given) is answered 421 before it reaches a page or a callback, so a web page whose
name was re-pointed at 127.0.0.1 cannot read the runs through the user's browser.

Safety: every run name, message and fix is passed to Dash components as text (never
as HTML, never through Markdown), and pages reach runs only through ``LogDir.get``,
which refuses names that would leave the log directory.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any, Iterable
from urllib.parse import parse_qsl, unquote

import dash
import flask
# Imported here, before any request: plotly imports pandas lazily, and two request threads
# importing it for the first time at once fail ("partially initialized module 'pandas'").
import pandas  # noqa: F401
from dash import ALL, Input, Output, State, dcc, html, no_update

from core import LogDir

from . import ids, pages, theme
from .context import AppContext
from .pages import _common as run_pages

log = logging.getLogger(__name__)

__all__ = ["create_app", "host_allowed", "version_key"]

_INDEX = """<!DOCTYPE html>
<html>
    <head>
        {%metas%}
        <title>{%title%}</title>
        {%favicon%}
        {%css%}
        <style>""" + theme.CSS + """</style>
    </head>
    <body>
        {%app_entry%}
        <footer>
            {%config%}
            {%scripts%}
            {%renderer%}
        </footer>
    </body>
</html>"""

_LIVE_JS = """
function(n, data) {
    var trig = (dash_clientside.callback_context.triggered || []).map(function (t) { return t.prop_id; });
    if (!data) { return ["connecting", "bs-live"]; }
    if (trig.some(function (p) { return p.indexOf("app-version") === 0; }) || window.__bsOffset === undefined) {
        window.__bsOffset = Date.now() / 1000 - data.now;
    }
    var age = Math.max(0, Math.round(Date.now() / 1000 - window.__bsOffset - data.t));
    var text = data.t ? "last update " + (%s)(age) + " ago" : "no data yet";
    return [(data.live ? "live" : "idle") + " \\u00b7 " + text, data.live ? "bs-live on" : "bs-live"];
}
""" % run_pages.AGE_TEXT_JS


def _text_or_none(v: Any) -> str | None:
    # What a request sends as a URL part may be anything; only a string is a URL part.
    return v if isinstance(v, str) else None


def version_key(ctx: AppContext, pathname: str | None, registered: list[pages.Page], now: float) -> dict[str, Any]:
    """What the page at ``pathname`` shows, as a value that changes exactly when it must be redrawn.

    Returns ``{"key": [...], "live": bool, "t": time of the newest data}``, and for a run's
    page ``"read"``: what the search store holds, its ``Run.version`` while a sampled file is
    searched, else None (a run read in full makes no request for it).
    """
    for page in registered:
        caps = pages.match(page.path, pathname or "/")
        if caps is None:
            continue
        if "run" in caps:
            run = ctx.run(caps["run"])
            if run is None:
                return {"key": ["missing", caps["run"]], "live": False, "t": None}
            status = run.status(now=now, stale_after=ctx.stale_after)
            return {"key": ["run", run.name, run.data_version, status], "live": status == "live", "t": run.last_time,
                    "read": run.version if run.searching else None}
        break
    live, newest = ctx.catalog.liveness(now)
    # The list shows ages and live/crashed status: redraw it every 10 s even without new data.
    return {"key": ["dir", ctx.catalog.version, ctx.generation, int(now // 10)], "live": live, "t": newest}


def _host_name(host: str) -> str:
    """The name part of a ``Host`` header value: ``"[::1]:8050"`` -> ``"::1"``, ``"Localhost:80"`` -> ``"localhost"``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_allowed(header: str | None, allowed: Iterable[str] = ()) -> bool:
    """True when a request's ``Host`` header names a loopback host or one of ``allowed``.

    Loopback names are ``localhost`` (and ``*.localhost``), 127.0.0.0/8 and ``::1``. A header
    with a port is judged by its name; a missing or empty header is refused.
    """
    if not header:
        return False
    name = _host_name(header)
    if name in {_host_name(a) for a in allowed if a}:
        return True
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def create_app(logdir: LogDir, *, interval_ms: int = 1000, max_points: int = 2000, stale_after: float = 60.0,
               title: str = "Babysitter", allowed_hosts: Iterable[str] = (), index: Any = "default",
               summarise: bool = True) -> dash.Dash:
    """Build the dashboard over ``logdir``.

    The caller keeps ``logdir`` fresh by marking runs dirty (``dashboard.watcher.Watcher``
    does this from file-system events); the app reads the marked runs on each refresh tick.

    Args:
        logdir: the log directory to show.
        interval_ms: live refresh period in milliseconds.
        max_points: most points per trace sent to the browser (longer series are decimated).
        stale_after: seconds without writes before a running run counts as crashed.
        title: the browser title.
        allowed_hosts: host names accepted in the ``Host`` header besides the loopback names
            (the address the server is bound to when it is not loopback).
        index: where run summaries persist between starts (``core.index``): ``"default"``
            (``$BABYSITTER_CACHE`` or ``~/.cache/babysitter``), a ``SummaryIndex``, or None (memory).
        summarise: summarise the runs the index does not hold in a background worker
            (``core.catalog``); pages meanwhile show them as pending.

    Returns:
        The Dash app; serve it with ``app.run(host="127.0.0.1", port=..., debug=False)``
        or through WSGI (``app.server``).
    """
    ctx = AppContext(logdir=logdir, max_points=max_points, stale_after=stale_after, index=index)
    if summarise:
        ctx.catalog.start()
    registered = pages.load_pages()
    app = dash.Dash(__name__, title=title, update_title=None, suppress_callback_exceptions=True,
                    serve_locally=True, assets_folder="_no_assets")
    app.index_string = _INDEX
    allowed = tuple(allowed_hosts)

    @app.server.before_request
    def _check_host() -> Any:
        host = flask.request.headers.get("Host")
        if host_allowed(host, allowed):
            return None
        log.warning("refused a request for Host %r (not a loopback name)", (host or "")[:100])
        return ("Refused: this dashboard answers only requests addressed to localhost or 127.0.0.1 "
                "(or the --host it was started with).\n", 421, {"Content-Type": "text/plain; charset=utf-8"})

    @app.server.errorhandler(dash.exceptions.DependencyException)
    def _unknown_file(_err: Exception) -> tuple[str, int]:
        # A request for a file of a library Dash does not serve ("../../etc/passwd"): not found, not a 500.
        return "Not found", 404
    has_compare = any(p.path == "/compare" for p in registered)
    top = [dcc.Link("Babysitter", href="/", className="bs-brand"),
           html.Div(id=ids.CRUMBS, className="bs-crumbs")]
    if has_compare:
        top.append(dcc.Link("Compare runs", href="/compare"))
    top.append(html.Div("connecting", id=ids.LIVE, className="bs-live"))
    app.layout = html.Div([
        dcc.Location(id=ids.URL),
        dcc.Interval(id=ids.TICK, interval=interval_ms),
        dcc.Store(id=ids.VERSION),
        dcc.Store(id=ids.SEARCH),
        html.Div(top, className="bs-top"),
        html.Div(id=ids.PAGE, className="bs-main"),
    ])

    @app.callback(Output(ids.PAGE, "children"), Output(ids.CRUMBS, "children"),
                  Input(ids.URL, "pathname"), Input(ids.URL, "search"))
    def _route(pathname: str | None, search: str | None) -> Any:
        ctx.refresh(wait=True)  # a run created since the last tick is found at once
        return _render(_text_or_none(pathname), _text_or_none(search))

    @app.callback(Output(ids.PAGE, "children", allow_duplicate=True), Output(ids.CRUMBS, "children",
                                                                             allow_duplicate=True),
                  Input(ids.VERSION, "data"), State({"type": ids.MISSING, "i": ALL}, "data"),
                  State(ids.URL, "pathname"), State(ids.URL, "search"), prevent_initial_call=True)
    def _retry_missing(version: Any, missing: list[str], pathname: str | None, search: str | None) -> Any:
        # Pattern-matching State: an empty list (not an error) on pages that found their run.
        pathname, search = _text_or_none(pathname), _text_or_none(search)
        if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
            missing = []
        if not missing:
            # A page showing a run that has gone (deleted, renamed) says so instead of staying stale.
            key = version.get("key") if isinstance(version, dict) else None
            if isinstance(key, list) and key[:1] == ["missing"]:
                return _render(pathname, search)
            return no_update, no_update
        if ctx.run(missing[0]) is None:
            return no_update, no_update
        return _render(pathname, search)

    def _render(pathname: str | None, search: str | None) -> Any:
        query = dict(parse_qsl((search or "").lstrip("?")))
        for page in registered:
            caps = pages.match(page.path, pathname or "/")
            if caps is not None:
                crumbs: list[Any] = [dcc.Link("Runs", href="/")]
                if "run" in caps:
                    crumbs += [" / ", caps["run"]]
                if page.tab or "run" not in caps:
                    crumbs += [" / ", page.title] if page.path != "/" else []
                run = ctx.run(caps.get("run"))
                if run is None:
                    return page.layout(ctx, **caps, query=query), crumbs
                with run.reading():  # a layout reads several columns of a run that may be growing
                    return page.layout(ctx, **caps, query=query), crumbs
        return html.Div([html.H2("Page not found"), html.P(["Nothing at ", html.Code(unquote(pathname or ""))]),
                         dcc.Link("Back to all runs", href="/")], className="bs-card"), dcc.Link("Runs", href="/")

    @app.callback(Output(ids.VERSION, "data"), Output(ids.SEARCH, "data"), Input(ids.TICK, "n_intervals"),
                  State(ids.URL, "pathname"), State(ids.VERSION, "data"), State(ids.SEARCH, "data"))
    def _tick(_n: int | None, pathname: str | None, seen: dict[str, Any] | None, read: Any) -> Any:
        ctx.refresh()
        now = time.time()
        cur = version_key(ctx, _text_or_none(pathname), registered, now)
        now_read = cur.pop("read", None)
        search = no_update if now_read == read else now_read
        if isinstance(seen, dict) and seen.get("key") == cur["key"] and seen.get("live") == cur["live"]:
            return no_update, search
        cur["now"] = now
        return cur, search

    app.clientside_callback(_LIVE_JS, Output(ids.LIVE, "children"), Output(ids.LIVE, "className"),
                            Input(ids.TICK, "n_intervals"), Input(ids.VERSION, "data"))

    run_pages.register(app, ctx)  # the header every page of one run shows
    for page in registered:
        if page.register is not None:
            page.register(app, ctx)
    app.babysitter_context = ctx  # for tests and WSGI wrappers
    return app
