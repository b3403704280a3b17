"""``Catalog``: every run of a log directory as a row, summarised once and remembered.

The run list and the comparison start from what costs no read (folder names and file
``stat``s, ``core.logdir``); each run's summary comes from, in order:

1. its ``SummaryCache`` entry when the run is read into this process (a run someone looks
   at, or one that is being written: followed incrementally, new bytes only);
2. the persisted index (``core.index``) when the folder's signature is the one stored;
3. else it is *pending*: summarised in the background, most recently active first, in one
   worker process (so the server's own threads keep answering), and stored. The worker runs
   at the lowest priority (``WORKER_NICE``): reading a huge run to its end takes a core for
   tens of seconds, and on a busy machine a page being opened (or the training) needs it more.

A small log directory (``SYNC_LIMIT`` pending runs or fewer) is summarised on the spot, so
every row is complete at once; a large one shows its pending rows as such meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterable

from .index import RunRecord, SummaryIndex
from .logdir import LogDir, folder_signature
from ._sample import Sampling
from .reader import STALE_AFTER, Run, activity_status
from .summary import RunSummary, SummaryCache, pruned_or, run_findings, summarize

log = logging.getLogger(__name__)

__all__ = ["Catalog", "Row", "summarise_folders", "SYNC_LIMIT", "WORKER_NICE"]

SYNC_LIMIT = 64  # at most this many pending runs are summarised on the spot
WORKER_NICE = 19  # added to the background worker's niceness: it gets a core only when nothing else wants it
BATCH = 64  # runs per background batch
LIVE_OPEN = 64  # most recently written runs followed in-process instead of re-read from scratch


class Row:
    """One run as the run list shows it; its record and status are looked up when first read
    (a page of 50 rows of 10,000 decodes 50 stored records, not 10,000).

    Attributes:
        name: the run folder's name.
        status: ``live``, ``finished``, ``stopped``, ``crashed``, ``pruned``, or ``pending``
            (not summarised yet).
        activity: newest file time (seconds since the epoch).
        record: the summary and findings, None while pending.
    """

    __slots__ = ("name", "activity", "_catalog", "_listing", "_now", "_record", "_status")
    _UNSET: Any = object()

    def __init__(self, catalog: "Catalog", name: str, listing: Any, now: float) -> None:
        self.name = name
        self.activity = listing.activity
        self._catalog, self._listing, self._now = catalog, listing, now
        self._record = self._status = Row._UNSET

    @property
    def record(self) -> RunRecord | None:
        if self._record is Row._UNSET:
            self._record = self._catalog.record(self.name, self._listing)
        return self._record

    @property
    def status(self) -> str:
        if self._status is Row._UNSET:
            self._status = self._catalog._status(self.record, self.activity, self._now)
        return self._status

    def __repr__(self) -> str:
        return f"Row({self.name!r}, activity={self.activity})"


def _summarise(path: str, sample: Sampling | None = None) -> tuple[str, str, str] | None:
    """``(name, signature, record text)`` of one run folder; the signature is taken before the read.

    With ``sample``, a large file is opened sampled and then searched to its end, so the
    summary has every finding.
    """
    found = folder_signature(path)
    if found is None:
        return None
    run = Run(path, sample=sample)
    run.update()
    while run.searching:
        run.update()
    findings = run_findings(run)
    rec = RunRecord.of(run, summarize(run, findings=findings), findings)
    return run.name, found.signature, rec.to_text()


def summarise_folders(paths: Iterable[str], sample: Sampling | None = None) -> list[tuple[str, str, str | None]]:
    """``(name, signature, record text or None when it failed)`` of each run folder (the worker's job)."""
    out: list[tuple[str, str, str | None]] = []
    for p in paths:
        try:
            got = _summarise(p, sample)
        except Exception:  # one unreadable run must not stop the others; it is logged by the caller
            log.exception("summarising %s failed", p)
            out.append((os.path.basename(p), "", None))
            continue
        if got is not None:
            out.append(got)
    return out


class Catalog:
    """The rows of a log directory, filled from the index, the open runs and a background worker.

    Args:
        logdir: the ``LogDir`` (listed by ``refresh``).
        summaries: the ``SummaryCache`` of the runs read into this process (shared with the pages).
        index: a ``SummaryIndex``, ``"default"`` for the one in ``cache_dir()``, None for memory only.
        stale_after: seconds without writes before a running run counts as crashed.
    """

    def __init__(self, logdir: LogDir, summaries: SummaryCache | None = None, *,
                 index: "SummaryIndex | str | None" = "default", stale_after: float = STALE_AFTER) -> None:
        self.logdir = logdir
        self.summaries = summaries if summaries is not None else SummaryCache()
        if isinstance(index, SummaryIndex):
            self.index = index
        else:
            self.index = SummaryIndex(logdir.path, "default" if index == "default" else None)
        self.stale_after = stale_after
        self._lock = threading.RLock()
        # name -> (signature, record, or its stored text until first asked for: a restart over
        # 10,000 runs decodes the records it shows, not all of them)
        self._stored: dict[str, tuple[str, RunRecord | str]] = dict(self.index.load())
        self._open: dict[str, tuple[int, RunRecord]] = {}  # name -> (Run.data_version, record)
        self._failed: dict[str, str] = {}  # name -> signature that failed to summarise
        self.read = 0  # runs read and summarised by this catalog (tests: unchanged runs are not read)
        self.version = 0
        self._seen_logdir = -1
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._filling = threading.Lock()  # a page's ``fill_small`` and the background loop: one reads a run, once

    # -- listing ---------------------------------------------------------------------------

    def seed_listing(self) -> int:
        """List the runs the index holds before the folder is listed (``LogDir.seed``): a
        restart answers from the stored summaries at once while the watcher's first full
        refresh compares every run with its files. Returns how many runs were seeded."""
        with self._lock:
            signatures = {n: sig for n, (sig, _) in self._stored.items()}
        return self.logdir.seed(signatures)

    def refresh(self, full: bool = False) -> bool:
        """Re-list the log directory (``LogDir.refresh``); True when anything changed."""
        changed = self.logdir.refresh(full)
        self._sync()
        return changed

    def _sync(self) -> None:
        v = self.logdir.version
        if v == self._seen_logdir:
            return
        self._seen_logdir = v
        listed = self.logdir.listing()
        with self._lock:
            gone = [n for n in self._stored if n not in listed]
            for n in gone:
                del self._stored[n]
            for n in [n for n in self._open if n not in listed]:
                del self._open[n]
            self.version += 1
        self.index.forget(gone)
        self.summaries.forget_except(set(listed))
        self._wake.set()

    # -- records ---------------------------------------------------------------------------

    def record(self, name: str, listing: Any = None) -> RunRecord | None:
        """The record of run ``name`` as its files are now, or None while pending."""
        listing = listing if listing is not None else self.logdir.listing(name)
        if listing is None:
            return None
        run = self.logdir.get(name) if self.logdir.is_open(name) else None
        if run is not None:
            with self._lock:
                got = self._open.get(name)
            if got is not None and got[0] == run.data_version:
                return got[1]
            searching = run.searching  # opened sampled, what it skipped not searched to the end yet
            if searching:
                with self._lock:
                    whole = self._stored.get(name)
                if whole is not None and whole[0] == listing.signature:
                    rec = self._stored_record(name, whole)
                    if rec is not None:
                        return rec  # the summary of all of these files, from the index or a summariser
            findings = self.summaries.findings(run)
            rec = RunRecord.of(run, self.summaries.get(run), findings)
            with self._lock:
                self._open[name] = (run.data_version, rec)
                if not searching:  # a summary without some findings is never stored as the files' own
                    self._stored[name] = (listing.signature, rec)
                self.version += 1
            if not searching:
                self.index.put([(name, listing.signature, rec.to_text())])
            return rec
        with self._lock:
            got = self._stored.get(name)
        if got is not None and got[0] == listing.signature:
            return self._stored_record(name, got)
        return None

    def _stored_record(self, name: str, got: tuple[str, RunRecord | str]) -> RunRecord | None:
        """The stored record ``got`` of ``name``, decoded on first use; a damaged one is dropped
        (the run is pending again, and summarised again)."""
        sig, rec = got
        if not isinstance(rec, str):
            return rec
        decoded = RunRecord.from_text(rec)
        with self._lock:
            if self._stored.get(name) is got:
                if decoded is None:
                    del self._stored[name]
                    self.version += 1
                else:
                    self._stored[name] = (sig, decoded)
        if decoded is None:
            log.warning("the stored summary of run %s is damaged; summarising it again", name)
            self.index.forget([name])
            self._wake.set()
        return decoded

    def _status(self, rec: RunRecord | None, activity: float, now: float) -> str:
        if rec is None:
            return "pending"
        status = activity_status(rec.meta_status, rec.pid, rec.host, activity, now=now, stale_after=self.stale_after)
        return pruned_or(status, rec.summary.study.state if rec.summary.study else None)

    def rows(self, now: float | None = None) -> list[Row]:
        """Every run, most recently active first."""
        now = time.time() if now is None else now
        out = [Row(self, name, lst, now) for name, lst in self.logdir.listing().items()]
        out.sort(key=lambda r: (-r.activity, r.name))
        return out

    def row(self, name: str, now: float | None = None) -> Row | None:
        lst = self.logdir.listing(name)
        if lst is None:
            return None
        return Row(self, name, lst, time.time() if now is None else now)

    def liveness(self, now: float | None = None) -> tuple[bool, float | None]:
        """(any run live, newest file time): what the live indicator shows, from the listing alone
        except for the summarised runs written within ``stale_after``."""
        now = time.time() if now is None else now
        listed = self.logdir.listing()
        newest = max((lst.activity for lst in listed.values()), default=0.0) or None
        live = False
        for name, lst in listed.items():
            if now - lst.activity <= self.stale_after:
                rec = self.record(name, lst)  # a run not summarised yet is not called live (it may have ended)
                if rec is not None and self._status(rec, lst.activity, now) == "live":
                    live = True
                    break
        return live, newest

    def summaries_now(self, now: float | None = None) -> list[RunSummary]:
        """The summaries of every summarised run (status as of ``now``), sorted by run name."""
        out = []
        for r in sorted(self.rows(now), key=lambda r: r.name):
            if r.record is not None:
                s = r.record.summary
                out.append(s if s.status == r.status else _with_status(s, r.status))
        return out

    def pending(self) -> list[str]:
        """Runs with no usable record, most recently active first (nothing is read)."""
        listed = self.logdir.listing()
        with self._lock:
            out = [(lst.activity, n) for n, lst in listed.items()
                   if not self.logdir.is_open(n) and self._failed.get(n) != lst.signature
                   and (self._stored.get(n) or ("",))[0] != lst.signature]
        out.sort(reverse=True)
        return [n for _, n in out]

    def pending_count(self) -> int:
        return len(self.pending())

    # -- filling ---------------------------------------------------------------------------

    def _store(self, results: Iterable[tuple[str, str, str | None]]) -> int:
        keep = []
        listed = self.logdir.listing()
        with self._lock:
            for name, sig, text in results:
                self.read += 1
                rec = RunRecord.from_text(text) if text is not None else None
                if rec is None:
                    cur = listed.get(name)
                    if cur is not None:
                        self._failed[name] = cur.signature  # tried again once its files change
                    continue
                self._stored[name] = (sig, rec)
                keep.append((name, sig, text))
            if keep:
                self.version += 1
        self.index.put(keep)
        return len(keep)

    def fill(self, names: Iterable[str] | None = None, *, parallel: bool = False) -> int:
        """Summarise those of ``names`` (default: every pending run) still pending now; returns how many were stored.

        With ``parallel``, more than ``SYNC_LIMIT`` runs are read by one worker process per core
        (a command-line caller, which waits for them anyway); else in this thread.
        """
        names = self.pending() if names is None else list(names)
        paths = self._paths(names)
        workers = min(os.cpu_count() or 1, 8)
        if not parallel or len(paths) <= SYNC_LIMIT or workers < 2:
            with self._filling:
                still = set(self.pending())  # not summarised by the other filler meanwhile
                return self._store(summarise_folders(self._paths(n for n in names if n in still), self.logdir.sample))
        chunks = [paths[i:i + BATCH] for i in range(0, len(paths), BATCH)]
        stored = 0
        try:
            with _pool(workers) as pool:
                for got in pool.map(summarise_folders, chunks, [self.logdir.sample] * len(chunks)):
                    stored += self._store(got)
        except (OSError, RuntimeError) as err:  # no worker processes here (a sandbox): this process reads the rest
            log.warning("no summary worker processes (%s); summarising in this process", err)
            stored += self._store(summarise_folders(self._paths(self.pending()), self.logdir.sample))
        return stored

    def _paths(self, names: Iterable[str]) -> list[str]:
        return [str(self.logdir.path / n) for n in names if self.logdir.listing(n) is not None]

    def _sampled(self, name: str) -> bool:
        """True when run ``name`` has a data file the log directory opens sampled (summarised apart, in the worker)."""
        lst = self.logdir.listing(name)
        return self.logdir.sample is not None and lst is not None and lst.largest_file() > self.logdir.sample.above

    def fill_small(self) -> None:
        """Summarise the pending runs on the spot when there are few (``SYNC_LIMIT``); huge ones are left to ``start``."""
        pending = self.pending()
        if pending and len(pending) <= SYNC_LIMIT:
            small = [n for n in pending if not self._sampled(n)]
            if small:
                self.fill(small)

    def start(self) -> None:
        """Summarise pending runs in the background until ``stop``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="babysitter-summaries", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        self.stop()
        self.index.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self._fill_some()
            except Exception:  # the list keeps working with what it has; the next round tries again
                log.exception("summarising runs in the background failed")
                worked = False
            if not worked:
                self._wake.wait(1.0)
                self._wake.clear()

    def _fill_some(self) -> bool:
        pending = self.pending()
        if not pending:
            return False
        now = time.time()
        listed = self.logdir.listing()
        recent = [n for n in pending[:LIVE_OPEN] if n in listed and now - listed[n].activity <= self.stale_after]
        if len(self.logdir.open_names()) >= LIVE_OPEN:
            recent = []
        if recent[:1]:
            # Being written: followed in this process from now on (new bytes only), not re-read per change.
            name = recent[0]
            with self._filling:
                if name in self.pending() and self.logdir.get(name) is not None:
                    self.record(name)
                    self.read += 1
            return True
        batch = pending[:BATCH]
        huge = [n for n in batch if self._sampled(n)]
        if len(pending) <= SYNC_LIMIT and len(huge) < len(batch):
            self.fill([n for n in batch if n not in huge])
            return True
        if huge:  # the others first, then one huge run at a time: reading it to its end takes seconds
            batch = [n for n in batch if n not in huge] or huge[:1]
        paths = [str(self.logdir.path / n) for n in batch]
        pool = self._worker()
        if pool is None:
            self._store(summarise_folders(paths, self.logdir.sample))
            return True
        try:
            self._store(pool.submit(summarise_folders, paths, self.logdir.sample).result())
        except Exception as err:  # a worker that died (killed, out of memory): in this process from now on
            log.warning("the summary worker failed (%s); summarising in the server process", err)
            self._pool = False  # type: ignore[assignment]
            self._store(summarise_folders(paths, self.logdir.sample))
        return True

    def _worker(self) -> ProcessPoolExecutor | None:
        if self._pool is False:
            return None
        if self._pool is None:
            try:
                self._pool = _pool(1, nice=WORKER_NICE)
            except (OSError, ValueError, ImportError) as err:
                log.warning("no summary worker process (%s); summarising in the server process", err)
                self._pool = False  # type: ignore[assignment]
                return None
        return self._pool


def _pool(workers: int, nice: int = 0) -> ProcessPoolExecutor:
    """Worker processes started fresh ("spawn"): a forked server's threads and locks are not copied.

    ``nice`` is added to each worker's niceness before it reads anything (``_lower_priority``).
    """
    import multiprocessing

    extra: dict[str, Any] = {"initializer": _lower_priority, "initargs": (nice,)} if nice else {}
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), **extra)


def _lower_priority(nice: int) -> None:
    """Add ``nice`` to this process's niceness; where the system has none (Windows) or refuses, it stays."""
    try:
        os.nice(nice)
    except (AttributeError, OSError):
        pass


def _with_status(s: RunSummary, status: str) -> RunSummary:
    import dataclasses

    return dataclasses.replace(s, status=status)
