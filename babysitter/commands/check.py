"""``babysitter check RUN_DIR...``: the diagnoses of finished or live runs, for people and CI.

A run whose ``meta.json`` records an error (the exception that ended a crashed training,
written by the Monitor) gets a line ``ERROR   training stopped [after step N] with: <error>``
right under its header, before its findings. In ``--json`` (a list of findings) such a run
gets one more entry of the same shape, first among the run's entries (the crash is its newest
event): ``"rule": "crashed"``, ``"severity": "error"``, ``"step"`` the last step recorded (0
when none was), ``"message"`` saying so, and ``"error"`` the recorded text as it is.

Exit status: 0 when no ``error`` finding exists and no run crashed with a recorded error, 1
when one does, 2 on bad usage (a path that is neither a run folder nor a log directory
holding runs, an unknown or out-of-range threshold).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from babysitter._text import safe_text

NAME = "check"
HELP = ("Diagnose runs (the CS231n babysitting checklist); exit 1 when any finding is an error "
        "or a run crashed with an error.")

CRASH_RULE = "crashed"  # the ``rule`` of the --json entry of a run that crashed with a recorded error
CRASH_FIX = ("Read the traceback the training script printed; the data recorded up to the crash is kept "
             "in the run folder.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="RUN_DIR",
                        help="run folders, or log directories (every run in them is checked)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of findings instead of text (same order: each run's newest first)")
    parser.add_argument("-t", "--threshold", "--set", dest="thresholds", action="append", default=[],
                        metavar="NAME=VALUE",
                        help="change a threshold, e.g. dead_relu.max_dead_frac=0.3 (repeatable; see --rules)")
    parser.add_argument("--disable", action="append", default=[], metavar="RULE", help="skip a rule (repeatable)")
    parser.add_argument("--rules", action="store_true", help="list the rules and their thresholds, then exit")


def _usage_error(msg: str) -> int:
    from babysitter.commands import usage_error

    return usage_error(NAME, msg)


def _list_rules() -> int:
    from core.diagnose import RULES

    for rid, cls in RULES.items():
        print(f"{rid} ({cls.severity})")
        print(f"    {cls.summary}")
        for name, default, (lo, hi), unit in cls.Thresholds.describe():
            print(f"    {rid}.{name} = {default:g}   [{lo:g}, {hi:g}] {unit}")
        print(f"    fix: {cls.fix}")
    return 0


def run(args: argparse.Namespace) -> int:
    from core.diagnose import DiagnosisConfig, Diagnoser, parse_overrides
    from core.errors import ConfigError
    from core.reader import is_run_dir
    from core.schema import recorded_error

    from babysitter.commands import PathError, find_runs, open_catalog, open_logdir

    if args.rules:
        return _list_rules()
    if not args.paths:
        return _usage_error("give at least one RUN_DIR (a run folder or a log directory)")
    try:
        config = DiagnosisConfig(overrides=parse_overrides(args.thresholds), disable=args.disable)
    except ConfigError as err:
        return _usage_error(str(err))

    # (folder, name, status, unreadable lines, recorded error, last step, findings) per run. A log
    # directory diagnosed with the default thresholds reuses the summaries persisted for its
    # unchanged runs (core.index).
    results = []
    default = not args.thresholds and not args.disable
    for raw in args.paths:
        try:
            if default and Path(raw).is_dir() and not is_run_dir(Path(raw)):
                catalog = open_catalog(open_logdir(raw))
                for row in sorted(catalog.rows(), key=lambda r: r.name):
                    if row.record is None:  # could not be summarised at all: said, never skipped silently
                        print(f"babysitter check: {safe_text(Path(raw) / row.name, None)}: could not be read "
                              "(the log above says why); not checked", file=sys.stderr)
                        continue
                    summary = row.record.summary
                    results.append((Path(raw) / row.name, row.name, row.status, row.record.problems,
                                    recorded_error(summary.error), summary.steps, list(row.record.findings)))
                continue
            found = find_runs(raw)
        except PathError as err:
            return _usage_error(str(err))
        for rd, run_obj in found:
            dx = Diagnoser(config)
            dx.update(run_obj)
            results.append((rd, run_obj.name, run_obj.status(), run_obj.problem_count,
                            recorded_error(run_obj.meta.error), run_obj.last_step, dx.findings()))

    any_error = (any(f.severity == "error" for *_, fs in results for f in fs)
                 or any(error is not None for *_, error, _step, _fs in results))
    # Text and JSON list the same findings in the same order: runs as given, each run's newest first.
    results = [(*r, sorted(fs, key=lambda f: f.step, reverse=True)) for *r, fs in results]
    if args.json:
        import json

        out = []
        for rd, name, _, _, error, step, fs in results:
            if error is not None:
                out.append({"run": name, "path": str(rd), **_crash_entry(error, step)})
            out += [{"run": name, "path": str(rd), **f.to_json()} for f in fs]
        print(json.dumps(out, indent=2))
    else:
        for rd, _name, status, problems, error, step, fs in results:
            extra = f", {problems} unreadable line(s)" if problems else ""
            head = f"{safe_text(rd, None)} ({safe_text(status, 40)}{extra}): "
            if not fs:
                print(head + ("no findings before the crash" if error is not None else "no findings"))
            else:
                print(head + f"{len(fs)} finding(s)")
            if error is not None:
                print(f"  {'ERROR':7} {_stopped(step)} with: {safe_text(error, None)}")
            for f in fs:
                where = f" [{', '.join(safe_text(n, 200) for n in f.layers)}]" if f.layers else ""
                print(f"  {f.severity.upper():7} step {f.step:<7} {safe_text(f.rule, 200)}{where}")
                print(f"          {safe_text(f.message, None)}")
                print(f"          fix: {safe_text(f.fix, None)}")
    return 1 if any_error else 0


def _stopped(step: int | None) -> str:
    return "training stopped" if step is None else f"training stopped after step {step}"


def _crash_entry(error: str, step: int | None) -> dict:
    """The --json entry of a run that crashed with ``error``: the keys of a finding, plus ``error``."""
    return {"rule": CRASH_RULE, "severity": "error", "step": step if step is not None else 0, "layers": [],
            "message": f"{_stopped(step).capitalize()} with an error: {error}", "fix": CRASH_FIX,
            "value": None, "threshold": None, "error": error}
