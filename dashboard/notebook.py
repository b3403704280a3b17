"""The dashboard inside a Jupyter notebook, in one line.

    from dashboard.notebook import inline, live
    inline("runs")          # the full dashboard in the output cell (an iframe to 127.0.0.1)
    live(mon)               # the compact summary of a run, redrawn every 2 s while it runs

``inline`` starts the dashboard server of a log directory once per kernel, on 127.0.0.1
and a free port (or ``port=``), in a background thread with its file watcher; calling it
again for the same directory shows the same server. The iframe points at
``http://127.0.0.1:PORT/``, so the browser showing the notebook must run on the machine of
the kernel (for a remote kernel, forward the port: ``ssh -L PORT:127.0.0.1:PORT host``).

``Monitor``, ``core.Run`` and ``core.LogDir`` display on their own as the compact summary
(``_repr_html_``, see ``core.notebook``); ``live`` keeps one such display up to date.
"""

from __future__ import annotations

import html
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["InlineDashboard", "inline", "live", "stop_all"]

_SERVERS: dict[Path, "InlineDashboard"] = {}
_LOCK = threading.Lock()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class InlineDashboard:
    """A dashboard server running in this process; displays as an iframe of itself.

    Attributes:
        url: where it serves (``http://127.0.0.1:PORT/``).
        logdir: the log directory it shows.
    """

    def __init__(self, logdir: str | Path, *, port: int | None = None, height: int = 760) -> None:
        from werkzeug.serving import make_server

        from core import LogDir

        from .app import create_app
        from .watcher import Watcher

        self.logdir = Path(logdir)
        self.height = height
        host = "127.0.0.1"
        self._logdir = LogDir(self.logdir)
        self._watcher = Watcher(self._logdir).start()
        try:
            app = create_app(self._logdir)
            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a request per second per open page
            self._server = make_server(host, port or _free_port(host), app.server, threaded=True)
        except BaseException:
            self._watcher.stop()
            raise
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="babysitter-dashboard", daemon=True)
        self._thread.start()

    def _repr_html_(self) -> str:
        src = html.escape(self.url, quote=True)
        return (f'<iframe src="{src}" width="100%" height="{int(self.height)}" frameborder="0" '
                f'title="Babysitter dashboard"></iframe>'
                f'<div style="font-size:12px;color:#555">Babysitter dashboard of {html.escape(str(self.logdir))} '
                f'at <a href="{src}" target="_blank">{src}</a></div>')

    def __repr__(self) -> str:
        return f"InlineDashboard({str(self.logdir)!r}, url={self.url!r})"

    def stop(self) -> None:
        """Stop the server and its watcher. Safe to call twice."""
        with _LOCK:
            if _SERVERS.get(self.logdir.resolve()) is self:
                del _SERVERS[self.logdir.resolve()]
        srv, self._server = getattr(self, "_server", None), None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
            self._watcher.stop()


def inline(logdir: str | Path | Any = "runs", *, port: int | None = None, height: int = 760) -> InlineDashboard:
    """Show the dashboard of ``logdir`` in the notebook (the last expression of a cell displays it).

    Args:
        logdir: a log directory, or a ``Monitor`` (its log directory is shown).
        port: the port to serve on (a free one by default).
        height: the iframe's height in pixels.
    """
    if hasattr(logdir, "logdir") and not isinstance(logdir, (str, Path)):
        logdir = logdir.logdir
    key = Path(logdir).resolve()
    with _LOCK:
        dash = _SERVERS.get(key)
        if dash is None or (port is not None and dash.port != port):
            dash = _SERVERS[key] = InlineDashboard(logdir, port=port, height=height)
    dash.height = height
    return dash


def stop_all() -> None:
    """Stop every server ``inline`` started."""
    with _LOCK:
        servers = list(_SERVERS.values())
    for s in servers:
        s.stop()


def live(obj: Any, *, interval: float = 2.0, timeout: float | None = None) -> Any:
    """Display ``obj``'s summary (a ``Monitor``, ``Run`` or ``LogDir``) and redraw it every ``interval`` s.

    Redrawing stops when the run is no longer running (a Monitor closed, a run finished or
    crashed), after ``timeout`` seconds, or when the kernel shuts down. Returns the display
    handle.
    """
    from IPython.display import HTML, display

    handle = display(HTML(obj._repr_html_()), display_id=True)

    def running() -> bool:
        closed = getattr(obj, "closed", None)  # a Monitor
        if isinstance(closed, bool):
            return not closed
        status = getattr(obj, "status", None)
        return callable(status) and status() == "live"

    def loop() -> None:
        end = None if timeout is None else time.monotonic() + timeout
        while running() and (end is None or time.monotonic() < end):
            time.sleep(interval)
            try:
                handle.update(HTML(obj._repr_html_()))
            except Exception as err:  # the summary is a view: a failure ends the redraws, never the training
                log.warning("Babysitter: live summary stopped: %s", err)
                return
        try:
            handle.update(HTML(obj._repr_html_()))
        except Exception:
            pass

    threading.Thread(target=loop, name="babysitter-live", daemon=True).start()
    return handle
