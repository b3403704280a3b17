"""The one place where the dashboard gets a run's findings.

Findings come from two sources, merged: those the training process wrote itself
(``Run.findings``, e.g. ``nan_loss``) and those of the diagnosis engine in
``core.diagnose`` run over the run's data, incrementally: one ``Diagnoser`` per run,
fed only the records added since the previous call. Results are cached per run
version, so a page refresh without new data costs a dictionary lookup.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref

from core import Finding, Run
# The module, not ``core.diagnose``: the package re-exports the function of that name over it.
from core.diagnose import Diagnoser

log = logging.getLogger(__name__)

__all__ = ["FindingSource", "merge_findings", "severity_counts"]

_SEV_ORDER = {"error": 0, "warning": 1, "info": 2}


def merge_findings(*groups: list[Finding]) -> list[Finding]:
    """One list, newest first: a (rule, layers) pair is kept once, at its earliest step."""
    best: dict[tuple[str, tuple[str, ...]], Finding] = {}
    for group in groups:
        for f in group:
            key = (f.rule, tuple(f.layers))
            old = best.get(key)
            if old is None or f.step < old.step:
                best[key] = f
    return sorted(best.values(), key=lambda f: (-f.step, _SEV_ORDER.get(f.severity, 3), f.rule))


def severity_counts(findings: list[Finding]) -> dict[str, int]:
    """``{"error": n, "warning": n, "info": n}``."""
    out = {"error": 0, "warning": 0, "info": 0}
    for f in findings:
        out[f.severity] = out.get(f.severity, 0) + 1
    return out


class FindingSource:
    """Findings per run, computed once per run version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: "weakref.WeakKeyDictionary[Run, tuple[int, list[Finding]]]" = weakref.WeakKeyDictionary()
        self._engines: "weakref.WeakKeyDictionary[Run, Diagnoser]" = weakref.WeakKeyDictionary()

    def __call__(self, run: Run) -> list[Finding]:
        """The run's findings, newest first."""
        with self._lock:
            hit = self._cache.get(run)
            version = run.version
            if hit is not None and hit[0] == version:
                return hit[1]
            # The engine includes the written findings (and drops those another finding makes moot);
            # when it fails, the written findings are still shown.
            engine = self._engine_findings(run)
            found = merge_findings(list(run.findings) if engine is None else engine)
            self._cache[run] = (version, found)
            return found

    def _engine_findings(self, run: Run) -> list[Finding] | None:
        try:
            d = self._engines.get(run)
            if d is None:
                d = self._engines[run] = Diagnoser()
            # Hold the run's lock so a refresh on another thread cannot append mid-read.
            with getattr(run, "_lock", contextlib.nullcontext()):
                d.update(run)  # only the records added since the previous call
                return list(d.findings())
        except Exception:  # a broken rule must not take the page down; the traceback goes to the log
            log.exception("diagnosis failed for run %s", run.name)
            self._engines.pop(run, None)  # start over on the next version
            return None
