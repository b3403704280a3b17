"""The subcommands of ``babysitter``, and what they share: one answer to a path that holds no runs.

``check``, ``compare``, ``report`` and ``dashboard`` all take a path to runs. A path that does
not exist, or a folder with no run in it, is the same mistake whichever command is given it,
so each answers it with the same sentence (``usage_error``) and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["EXIT_USAGE", "PathError", "missing_path", "no_runs", "find_runs", "open_logdir", "usage_error"]

EXIT_USAGE = 2


class PathError(Exception):
    """A path given on the command line that holds no run; ``str()`` is the sentence to print."""


def missing_path(raw: str | Path) -> PathError:
    return PathError(f"{raw}: no such run folder or log directory")


def no_runs(raw: str | Path) -> PathError:
    return PathError(f"{raw}: neither a run folder (meta.json, *.jsonl) nor a log directory holding runs")


def open_logdir(raw: str | Path) -> Any:
    """``raw`` as a read ``LogDir`` (its runs as the dashboard lists them: no hidden folder, no symlink out).

    Raises:
        PathError: when ``raw`` does not exist, is itself a run folder, or holds no run.
    """
    from core.reader import is_run_dir
    from core.logdir import LogDir

    p = Path(raw)
    if not p.is_dir():
        raise missing_path(raw)
    if is_run_dir(p):
        raise PathError(f"{raw}: a run folder, not a log directory; give the folder that holds it "
                        f"({p.resolve().parent}) to compare its runs")
    logdir = LogDir(p)
    logdir.refresh()  # lists the runs; each is read when asked for
    if not logdir.names():
        raise no_runs(raw)
    return logdir


def open_catalog(logdir: Any) -> Any:
    """The ``core.catalog.Catalog`` of a listed ``LogDir`` with every run summarised.

    Summaries persisted by an earlier command or dashboard over unchanged runs are reused
    (``core.index``); the others are read now, on every core when there are many.
    """
    from core.catalog import Catalog

    catalog = Catalog(logdir)
    catalog.refresh()
    catalog.fill(parallel=True)
    return catalog


def find_runs(raw: str | Path) -> list[tuple[Path, Any]]:
    """``(folder, read Run)`` of the run at ``raw``, or of every run of the log directory ``raw``.

    Raises:
        PathError: when ``raw`` does not exist, is not a folder, or holds no run.
    """
    from core.reader import Run, is_run_dir

    p = Path(raw)
    if not p.is_dir():
        raise missing_path(raw)
    if is_run_dir(p):
        run = Run(p)
        run.update()
        return [(p, run)]
    try:
        logdir = open_logdir(p)
    except PathError:
        raise no_runs(raw) from None
    return [(p / r.name, r) for r in logdir.runs()]


def usage_error(command: str, message: str) -> int:
    """Print ``babysitter COMMAND: error: MESSAGE`` to stderr (control characters escaped); returns 2."""
    from babysitter._text import safe_text

    print(f"babysitter {command}: error: {safe_text(message, None)}", file=sys.stderr)
    return EXIT_USAGE
