"""The one place where the dashboard gets a run's findings.

Findings come from two sources, merged: those the training process wrote itself
(``Run.findings``, e.g. ``nan_loss``) and those of the diagnosis engine run over the run's
data, incrementally. Both come from the app's one ``core.summary.SummaryCache``, which the
compare page shares, so each run is diagnosed once per process. This module only puts them
in the order the pages show (newest first), cached per run version so a page refresh
without new data costs a dictionary lookup.
"""

from __future__ import annotations

import threading
import weakref

from core import Finding, Run
from core.schema import SEVERITY_RANK, recorded_error, severity_counts
from core.summary import SummaryCache

__all__ = ["FindingSource", "merge_findings", "no_findings_text", "recorded_error", "severity_counts"]


def no_findings_text(status: str) -> str:
    """The sentence shown instead of findings: "so far" only while the run can still change, and
    never a clean bill of health for a crashed run (the checklist cannot see why it stopped)."""
    if status == "live":
        return "No findings so far: nothing on the checklist looks wrong."
    if status == "crashed":
        return "No findings in the data recorded before the crash."
    return f"No findings: nothing on the checklist looked wrong in this {status} run."


def merge_findings(*groups: list[Finding]) -> list[Finding]:
    """One list, newest first: a (rule, layers) pair is kept once, at its earliest step."""
    best: dict[tuple[str, tuple[str, ...]], Finding] = {}
    for group in groups:
        for f in group:
            key = (f.rule, tuple(f.layers))
            old = best.get(key)
            if old is None or f.step < old.step:
                best[key] = f
    return sorted(best.values(), key=lambda f: (-f.step, SEVERITY_RANK.get(f.severity, 3), f.rule))


class FindingSource:
    """Findings per run, newest first, computed once per run data version (``Run.data_version``).

    Args:
        cache: the app's summary cache (a new one when not given).
    """

    def __init__(self, cache: SummaryCache | None = None) -> None:
        self.cache = cache if cache is not None else SummaryCache()
        self._lock = threading.Lock()
        self._shown: "weakref.WeakKeyDictionary[Run, tuple[int, list[Finding]]]" = weakref.WeakKeyDictionary()

    def __call__(self, run: Run) -> list[Finding]:
        """The run's findings, newest first."""
        version = run.data_version
        with self._lock:
            hit = self._shown.get(run)
        if hit is not None and hit[0] == version:
            return hit[1]
        # The cache's engine includes the written findings (and drops those another finding
        # makes moot); when a rule fails, it logs the traceback and gives the written ones.
        found = merge_findings(self.cache.findings(run))
        with self._lock:
            self._shown[run] = (version, found)
        return found
