"""``babysitter demo``: the dashboard with demo trainings running live, no data needed.

Small numpy networks on CS231n's spiral data (``babysitter.demo_training``) train in
background threads, slowed down so a person can watch, while the dashboard serves the
log directory. One variant is healthy; others show what the diagnoses catch.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import signal
import threading
from pathlib import Path

log = logging.getLogger(__name__)

NAME = "demo"
HELP = "start the dashboard with demo trainings running live in the background"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from babysitter.demo_training import VARIANTS

    parser.add_argument("logdir", nargs="?", default="./runs", metavar="LOGDIR", help="log directory for the demo runs")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8050, help="port to listen on")
    parser.add_argument("--variants", default="healthy,saturated,diverging",
                        help=f"comma-separated demo networks to train, from: {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=3000, help="training steps of each demo run")
    parser.add_argument("--step-delay", type=float, default=0.03,
                        help="seconds to wait after each step, so the curves grow at watching speed")
    parser.add_argument("--poll", action="store_true", help="poll the files instead of inotify events")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def clean_earlier_demo_runs(logdir: str | Path, variants) -> list[str]:
    """Remove the demo runs an earlier ``babysitter demo`` left in ``logdir`` (none still live).

    A run is the demo's when its folder is ``demo-<variant>`` or ``demo-<variant>-N`` and its
    ``meta.json`` records that variant of the demo's spiral data; anything else is left alone.
    Without this, every start adds ``demo-healthy-2``, ``-3``, ... and the killed ones show as crashed.

    Returns:
        The names of the removed runs.
    """
    from core.reader import Run

    root = Path(logdir)
    if not root.is_dir():
        return []
    pattern = re.compile(r"demo-(%s)(-\d+)?" % "|".join(map(re.escape, variants)))
    removed = []
    for child in sorted(root.iterdir()):
        m = pattern.fullmatch(child.name)
        if not m or child.is_symlink() or not child.is_dir():
            continue
        run = Run(child)
        run.update()
        hp = run.meta.hparams
        if hp.get("variant") != m.group(1) or not str(hp.get("dataset", "")).startswith("spiral"):
            continue
        if run.status() == "live":
            continue
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child.name)
    return removed


def run(args: argparse.Namespace) -> int:
    from babysitter.commands.dashboard import serve
    from babysitter.demo_training import VARIANTS, run_demo

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        log.error("--variants: unknown %s; choose from %s", ", ".join(unknown) or "(none given)", ", ".join(VARIANTS))
        return 2
    if args.steps < 1 or args.step_delay < 0:
        log.error("--steps must be at least 1 and --step-delay at least 0")
        return 2
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("monitor").setLevel(logging.ERROR)  # the demo's diverging run warns by design
    removed = clean_earlier_demo_runs(args.logdir, VARIANTS)
    if removed:
        log.debug("removed earlier demo runs: %s", ", ".join(removed))
    # The dashboard's imports first: started first, three training threads make them (and so the
    # URL line) several times slower on a small machine.
    import dashboard  # noqa: F401
    import werkzeug.serving  # noqa: F401

    stop = threading.Event()
    threads = []
    for i, variant in enumerate(variants):
        def train(variant: str = variant, seed: int = i) -> None:
            try:
                run_demo(args.logdir, steps=args.steps, step_delay=args.step_delay, name=f"demo-{variant}",
                         variant=variant, seed=seed, stop=stop)
            except Exception:  # the dashboard keeps serving what was written
                log.exception("demo training %s failed", variant)

        t = threading.Thread(target=train, name=f"demo-{variant}", daemon=True)
        t.start()
        threads.append(t)
    # A terminal closed or `kill` ends the demo like Ctrl-C: the runs are marked stopped, not left
    # "running" (and shown as crashed later).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        return serve(args.logdir, host=args.host, port=args.port, poll=args.poll, create=True,
                     banner=f"Babysitter demo ({len(variants)} trainings running live): dashboard")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
