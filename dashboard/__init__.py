"""The Babysitter dashboard: a Dash app over a log directory, kept fresh by a file watcher.

    from core import LogDir
    from dashboard import create_app, Watcher

    logdir = LogDir("runs")
    with Watcher(logdir):
        create_app(logdir).run(host="127.0.0.1", port=8050, debug=False)
"""

from __future__ import annotations

from .app import create_app
from .watcher import Watcher

__all__ = ["create_app", "Watcher"]
