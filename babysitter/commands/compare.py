"""``babysitter compare LOGDIR``: the runs of a log directory side by side, and the search checks, headless."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import orjson

from babysitter._text import safe_text

NAME = "compare"
HELP = "print one summary row per run of a log directory and the search findings (edge of range)"

# Columns printed in the text table, with their headings; hyperparameters follow.
_TEXT_COLUMNS = (
    ("run", "run"), ("status", "status"), ("steps", "steps"), ("best_val_acc", "best_val"),
    ("final_val_acc", "val"), ("final_train_acc", "train"), ("gap", "gap"), ("final_loss", "loss"),
    ("errors", "E"), ("warnings", "W"), ("findings", "findings"),
)
_MAX_CELL = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", metavar="LOGDIR", help="log directory holding one folder per run")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: {'runs': [...], 'studies': [...], 'search_findings': [...]} "
                             "(strict: NaN as null)")
    parser.add_argument("--sort", metavar="COL", default="best_val_acc",
                        help="column to sort by (a summary column or a hyperparameter name; '-COL' for descending)")
    parser.add_argument("--filter", metavar="TEXT", default=None,
                        help="keep rows matching 'COL OP VALUE' (OP: = != > < >= <=, e.g. 'lr<1e-3', "
                             "'status=finished'), else rows whose name, status or findings contain TEXT")
    parser.add_argument("--all-columns", action="store_true",
                        help="also show hyperparameters that are the same in every run as columns")
    from core.edge import DEFAULT_OUTER

    parser.add_argument("--outer", type=float, default=DEFAULT_OUTER,
                        help="edge_of_range: fraction of the range at each end that counts as the edge")


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    try:
        import pandas as pd

        if v is pd.NA:
            return "-"
    except ImportError:  # pragma: no cover
        pass
    return safe_text(v, _MAX_CELL)


def _constant(col) -> bool:
    return len({json.dumps(v, default=str, sort_keys=True) for v in col.tolist()}) <= 1


def format_table(df, *, all_columns: bool = False) -> str:
    """The summary DataFrame as an aligned text table.

    Hyperparameters that are the same in every row are listed once below the table
    instead of as columns, unless ``all_columns``.
    """
    cols = [(c, h) for c, h in _TEXT_COLUMNS if c in df.columns]
    hp = [c for c in df.columns if c.startswith("hp.")]
    same = [] if all_columns or len(df) < 2 else [c for c in hp if _constant(df[c])]
    from core.compare import column_heading

    cols += [(c, safe_text(column_heading(c), 28)) for c in hp if c not in same]
    rows = [[h for _, h in cols]]
    for rec in df[[c for c, _ in cols]].itertuples(index=False):
        rows.append([_cell(v) for v in rec])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if same:
        lines.append("same in every run: " + ", ".join(f"{safe_text(c[3:], 20)}={_cell(df[c].iloc[0])}" for c in same))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from core.compare import filter_frame, search_findings, sort_frame, summaries_frame
    from core.errors import ConfigError
    from core.studies import study_summaries

    from babysitter.commands import PathError, open_catalog, open_logdir, usage_error

    path = Path(args.logdir)
    try:
        ld = open_logdir(args.logdir)
    except PathError as err:
        return usage_error(NAME, str(err))
    summaries = open_catalog(ld).summaries_now()  # persisted summaries of unchanged runs are reused
    studies = study_summaries(summaries)
    try:
        edges = search_findings(summaries, outer=args.outer)
        df = summaries_frame(summaries)
        df = sort_frame(filter_frame(df, args.filter), args.sort)
    except ConfigError as err:
        return usage_error(NAME, str(err))
    if args.json:
        keep = set(df["run"])
        by_name = {s.run: s for s in summaries}
        out = {"logdir": str(path), "runs": [by_name[n].to_json() for n in df["run"] if n in keep],
               "studies": [st.to_json() for st in studies], "search_findings": [e.to_json() for e in edges]}
        # orjson: the standard encoder with an indent runs in Python (seconds over 10,000 runs).
        # Summaries are finite by ``to_json``; anything else not finite is written as null.
        sys.stdout.write(orjson.dumps(out, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if df.empty:
        print(f"none of the {len(summaries)} runs in {safe_text(path, 200)} match the filter")
    elif not studies:
        print(format_table(df, all_columns=args.all_columns))
        print(f"\n{len(df)} of {len(summaries)} runs")
    else:
        _print_by_study(df, studies, all_columns=args.all_columns)
        print(f"\n{len(df)} of {len(summaries)} runs")
    if edges:
        print("\nSearch findings:")
        for e in edges:
            f = e.finding
            print(f"  [{f.severity}] {f.rule} ({safe_text(e.search or '?', 60)}, {safe_text(e.param, 60)}): "
                  f"{safe_text(f.message, 400)}")
            print(f"      fix: {safe_text(f.fix, 400)}")
    return 0


def _print_by_study(df, studies, *, all_columns: bool) -> None:
    """One table per study (with its trial counts, best trial and what pruned the others), then other runs."""
    in_study = set()
    for st in studies:
        in_study.update(st.runs)
        counts = ", ".join(f"{n} {state}" for state, n in st.states.items() if n)
        best = (f"best {safe_text(st.best_run, 60)} ({safe_text(st.metric or 'value', 30)} {_cell(st.best_value)})"
                if st.best_run else "no complete trial yet")
        where = f" on {safe_text(st.storage, 120)}" if st.storage else ""
        print(f"study {safe_text(st.name, 60)}{where}: {st.trials} trials ({counts}); {best}")
        part = df[df["run"].isin(st.runs)]
        part = part.drop(columns=[c for c in part.columns if c.startswith("hp.") and part[c].isna().all()])
        if len(part):
            print(format_table(part, all_columns=all_columns))
        for run, steps, finding in st.pruned:
            why = f"{safe_text(finding.rule, 60)}: {safe_text(finding.message, 300)}" if finding is not None else "?"
            print(f"  pruned {safe_text(run, 60)} after step {_cell(steps)}: {why}")
        print()
    rest = df[~df["run"].isin(in_study)]
    if len(rest):
        print("other runs")
        rest = rest.drop(columns=[c for c in rest.columns if c.startswith("hp.") and rest[c].isna().all()])
        print(format_table(rest, all_columns=all_columns))
