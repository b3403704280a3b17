"""``babysitter report PATH -o report.html``: a self-contained HTML report of one run or of a log directory.

The HTML is the dashboard's (``dashboard.report``: the pages' figures and style sheet, in
a file that opens offline); this command finds the runs, hands them to it and writes the
file, replacing an old one only once the new one is complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "report"
HELP = "write a self-contained HTML report (opens offline) of one run folder or a whole log directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a run folder, or a log directory for a comparison report")
    parser.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: %(default)s)")
    parser.add_argument("--max-runs", type=int, default=20,
                        help="comparison: how many of the best runs to overlay in the curve plots "
                             "(default: %(default)s)")


def write_report(path: str | Path, output: str | Path, *, max_runs: int = 20) -> str:
    """Write the report of ``path`` (a run folder or a log directory) to ``output``; returns ``"run"`` or ``"comparison"``.

    Raises:
        PathError: when ``path`` does not exist or holds no run (nothing is written then).
        OSError: when ``output`` cannot be written.
    """
    from babysitter.commands import find_runs, open_logdir
    from core.reader import is_run_dir
    from dashboard.report import comparison_report, run_report

    if is_run_dir(Path(path)):
        text, kind = run_report(find_runs(path)[0][1]), "run"
    else:
        text, kind = comparison_report(open_logdir(path), max_runs=max_runs), "comparison"
    out = Path(output)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return kind


def run(args: argparse.Namespace) -> int:
    from babysitter.commands import PathError, usage_error

    try:
        kind = write_report(args.path, args.output, max_runs=args.max_runs)
    except PathError as err:
        return usage_error(NAME, str(err))
    except OSError as err:
        return usage_error(NAME, f"cannot write {args.output}: {err}")
    print(f"wrote {kind} report {args.output}")
    return 0
