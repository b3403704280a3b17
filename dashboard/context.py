"""What pages share: the log directory, the refresh lock, the findings cache and URL helpers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from core import LogDir, Run

from core.summary import SummaryCache

from .findings import FindingSource

__all__ = ["AppContext", "run_href"]


def run_href(run: str, page: str = "", **query: Any) -> str:
    """The URL of a page of run ``run`` (the name is URL-quoted, so any characters are safe)."""
    href = "/run/" + quote(run, safe="")
    if page:
        href += "/" + page
    q = {k: v for k, v in query.items() if v is not None}
    return href + ("?" + urlencode(q) if q else "")


@dataclass
class AppContext:
    """Shared state of one dashboard app.

    Attributes:
        logdir: the log directory being shown.
        max_points: most points per trace sent to the browser (longer series are decimated).
        stale_after: seconds without writes before a running run is shown as crashed.
        summaries: each run's diagnosis, findings and summary, shared by every page.
        findings: the findings of a run in the order the pages show them.
    """

    logdir: LogDir
    max_points: int = 2000
    stale_after: float = 60.0
    summaries: SummaryCache = field(default_factory=SummaryCache)
    findings: FindingSource = None  # type: ignore[assignment]  # built over ``summaries``
    _refresh_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.findings is None:
            self.findings = FindingSource(self.summaries)

    def refresh(self, wait: bool = False) -> None:
        """Read what the watcher marked dirty.

        Concurrent ticks skip instead of queueing (``wait=False``). A page render waits
        (``wait=True``): rendering while another thread is half-way through a refresh could show
        "run not found" for a run that refresh is discovering, with nothing left to redraw it.
        """
        if not self._refresh_lock.acquire(blocking=wait):
            return
        try:
            self.logdir.refresh()
        finally:
            self._refresh_lock.release()

    def run(self, name: str | None) -> Run | None:
        """The run called ``name`` inside the log directory, or None."""
        if not name:
            return None
        return self.logdir.get(name)
