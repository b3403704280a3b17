"""What pages share: the log directory, the refresh lock, the findings and figure caches, URL helpers."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlencode

from core import LogDir, Run

from core.catalog import Catalog
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


class Drawn:
    """What page callbacks drew, per (callback, run, run data version, arguments).

    Every open page redraws when its run gains a step: twenty viewers of one live run ask for
    the same figures within the same second. The first request draws them; the others wait
    for it and get the same result. A new version is a new key, so nothing stale is served;
    the oldest entries are dropped past ``size``.
    """

    def __init__(self, size: int = 64) -> None:
        self._lock = threading.Lock()
        self._items: "OrderedDict[tuple, list[Any]]" = OrderedDict()
        self._size = size

    def get(self, key: tuple, draw: Callable[[], Any]) -> Any:
        """``draw()``'s result for ``key``, drawn once however many threads ask at the same time."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                entry = self._items[key] = [threading.Lock(), False, None]  # lock, done, value
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
            else:
                self._items.move_to_end(key)
        with entry[0]:
            if not entry[1]:
                entry[2] = draw()  # raises through; the next caller draws again
                entry[1] = True
            return entry[2]


@dataclass
class AppContext:
    """Shared state of one dashboard app.

    Attributes:
        logdir: the log directory being shown.
        max_points: most points per trace sent to the browser (longer series are decimated).
        stale_after: seconds without writes before a running run is shown as crashed.
        summaries: each run's diagnosis, findings and summary, shared by every page.
        findings: the findings of a run in the order the pages show them.
        index: the persisted summary index (``core.index``): ``"default"``, a ``SummaryIndex``, or None.
        catalog: every run as a row (``core.catalog``), over ``summaries`` and ``index``.
        page_state: what a page keeps between its callbacks (the compare page's snapshot).
        generation: moved on by a page's background work when it is done (part of the run
            list's and the comparison's version, so the next tick redraws them).
    """

    logdir: LogDir
    max_points: int = 2000
    stale_after: float = 60.0
    summaries: SummaryCache = field(default_factory=SummaryCache)
    findings: FindingSource = None  # type: ignore[assignment]  # built over ``summaries``
    drawn: Drawn = field(default_factory=Drawn)
    index: Any = "default"
    page_state: dict[str, Any] = field(default_factory=dict)  # what a page keeps between callbacks
    generation: int = 0
    catalog: Catalog = None  # type: ignore[assignment]  # built over ``logdir``, ``summaries`` and ``index``
    _refresh_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.findings is None:
            self.findings = FindingSource(self.summaries)
        if self.catalog is None:
            self.catalog = Catalog(self.logdir, self.summaries, index=self.index, stale_after=self.stale_after)

    def refresh(self, wait: bool = False) -> None:
        """Read what the watcher marked dirty.

        Concurrent ticks skip instead of queueing (``wait=False``). A page render waits
        (``wait=True``): rendering while another thread is half-way through a refresh could show
        "run not found" for a run that refresh is discovering, with nothing left to redraw it.
        """
        if not self._refresh_lock.acquire(blocking=wait):
            return
        try:
            self.catalog.refresh()
        finally:
            self._refresh_lock.release()

    def draw(self, what: str, run: Run, args: tuple, draw: Callable[[], Any]) -> Any:
        """``draw()`` for callback ``what`` of ``run`` at its current data and ``args``, shared between viewers.

        Keyed by ``Run.data_version``: a step of a sampled run's search that found nothing
        changes nothing drawn.
        """
        return self.drawn.get((what, id(run), run.data_version, repr(args)), draw)

    def run(self, name: str | None) -> Run | None:
        """The run called ``name`` inside the log directory, or None."""
        if not name:
            return None
        return self.logdir.get(name)
