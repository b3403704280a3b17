"""``babysitter dashboard [LOGDIR]``: serve the live dashboard over a log directory."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
from pathlib import Path

log = logging.getLogger(__name__)

NAME = "dashboard"
HELP = "serve the live dashboard over a log directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", nargs="?", default="./runs", metavar="LOGDIR",
                        help="log directory holding one folder per run")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; anything but loopback exposes your runs to the network. Requests "
                             "are answered only when their Host header is a loopback name or this address")
    parser.add_argument("--port", type=int, default=8050, help="port to listen on")
    parser.add_argument("--poll", action="store_true",
                        help="poll the files instead of inotify events (network file systems)")
    parser.add_argument("--create", action="store_true",
                        help="create LOGDIR when it does not exist (else a missing LOGDIR is an error: a typo)")
    parser.add_argument("--debug", action="store_true",
                        help="Dash debug mode (dev tools and tracebacks in the page); never on a shared host")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound, or None when it can."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        try:
            s.bind((host.strip("[]"), port))
        except OSError as err:
            return err.strerror or str(err)
    return None


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/"


def serve(logdir_path: str | Path, *, host: str = "127.0.0.1", port: int = 8050, poll: bool = False,
          debug: bool = False, banner: str = "Babysitter dashboard", create: bool = False) -> int:
    """Watch ``logdir_path`` and serve the dashboard until interrupted. Returns an exit status.

    A ``logdir_path`` that does not exist is a usage error (exit 2, the sentence ``check``,
    ``compare`` and ``report`` give), unless ``create``: a misspelled folder must not become
    a new, empty dashboard. An existing folder with no run yet is served: runs appear on the
    page as soon as a training writes them.
    """
    from babysitter.commands import missing_path, usage_error
    from core import LogDir, Sampling
    from dashboard import Watcher, create_app

    if not 0 < port < 65536:
        log.error("--port must be between 1 and 65535, got %d", port)
        return 2
    if not is_loopback(host):
        log.warning("binding %s: anyone who can reach this address can read your runs "
                    "(use --host 127.0.0.1 to keep the dashboard on this machine)", host)
    path = Path(logdir_path)
    if not path.is_dir():
        if not create:
            return usage_error(NAME, f"{missing_path(logdir_path)} (pass --create to start an empty one)")
        try:
            # exist_ok: made meanwhile is fine (``babysitter demo`` starts its trainings first).
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            return usage_error(NAME, f"{logdir_path}: not a directory")
        except OSError as err:
            return usage_error(NAME, f"{logdir_path}: cannot create the log directory ({err.strerror or err})")
    why = check_port(host, port)
    if why:
        log.error("cannot listen on %s:%d (%s); pick another with --port", host, port, why)
        return 1
    logdir = LogDir(logdir_path, sample=Sampling())  # a huge run opens in seconds, sampled
    watcher = Watcher(logdir, poll=poll)
    app = None
    try:
        app = create_app(logdir, allowed_hosts=[host])
        # A restart lists the runs its index holds and answers at once; a first start lists the
        # folder. The watcher's start (a watch on every run folder, then a full listing that
        # catches what changed meanwhile) runs in the background either way.
        if not app.babysitter_context.catalog.seed_listing():
            logdir.refresh(full=True)
        watcher.start(background=True)
        if debug:
            print(f"{banner} on {url_for(host, port)} (log dir {path.resolve()})", flush=True)
            app.run(host=host, port=port, debug=True, use_reloader=False)
        else:
            # Werkzeug's server directly: Dash's app.run prints "Dash is running on ..." (twice,
            # through its own handler and the root logger) and Flask its banner after our line.
            from werkzeug.serving import make_server

            server = make_server(host, port, app.server, threaded=True)
            print(f"{banner} on {url_for(host, port)} (log dir {path.resolve()})", flush=True)
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
        if app is not None:
            app.babysitter_context.catalog.close()  # the summary worker, and the index file
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.debug:
        # Werkzeug logs every request (one per second per open page) at INFO.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return serve(args.logdir, host=args.host, port=args.port, poll=args.poll, debug=args.debug, create=args.create)
