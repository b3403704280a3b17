"""Watches a log directory with ``watchdog`` and marks changed runs dirty in a ``core.LogDir``.

The handler runs on watchdog's single dispatch thread, so it only records *what*
changed (``LogDir.mark_dirty``) and never reads or parses a file; the dashboard reads
the dirty runs, incrementally, when it refreshes. Events are never counted as lines:
a run marked dirty is read from its saved byte offsets to the end of each file.

Runs are sub-folders, so the directory is watched recursively. An event inside
``<logdir>/<run>/`` marks that run; a folder created, deleted or moved directly in the
log directory marks the run list. Files that existed before the observer started
produce no event, so ``Watcher.start`` marks everything dirty once after starting.
``start(background=True)`` does both in a thread (watching 10,000 run folders and listing
them takes seconds): a server that seeded its list from the summary index answers meanwhile.

The inotify observer is the default on Linux. ``poll=True`` uses watchdog's polling
observer (stat snapshots every ``poll_interval`` seconds) for file systems where inotify
sees nothing (NFS, SMB, some bind mounts); when inotify cannot start (too many watches
or instances: ENOSPC/EMFILE) the watcher falls back to polling and logs why.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from core import LogDir
from core.logdir import is_hidden

log = logging.getLogger(__name__)

__all__ = ["Watcher", "RunEventHandler"]

_IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})


class RunEventHandler(FileSystemEventHandler):
    """Turns file-system events under a log directory into ``LogDir.mark_dirty`` calls."""

    def __init__(self, logdir: LogDir) -> None:
        super().__init__()
        self.logdir = logdir
        self.root = os.path.abspath(os.fspath(logdir.path))

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.event_type in _IGNORED_EVENTS:
            return
        self._mark(event.src_path, event.is_directory, event.event_type)
        dest = getattr(event, "dest_path", "")
        if dest:
            self._mark(dest, event.is_directory, event.event_type)

    def _mark(self, path: Any, is_dir: bool, kind: str) -> None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        rel = os.path.relpath(os.path.abspath(path), self.root)
        if rel == "." or rel.startswith(".."):
            if rel == "." and kind in ("deleted", "moved"):
                self.logdir.mark_dirty(None)
            return
        parts = Path(rel).parts
        if is_hidden(parts[0]):
            return
        if len(parts) == 1:
            # A run folder (or a stray file) appeared, vanished or was renamed.
            self.logdir.mark_dirty(None)
            if is_dir and kind in ("modified",):
                self.logdir.mark_dirty(parts[0])
            return
        self.logdir.mark_dirty(parts[0])
        if kind in ("created", "deleted", "moved") and len(parts) == 2:
            # A new data file can make a plain folder a run; a deleted one can end it.
            self.logdir.mark_dirty(None)


class Watcher:
    """Runs a watchdog observer over ``logdir`` until stopped.

    Args:
        logdir: the log directory to mark; its folder is created when missing.
        poll: use the polling observer instead of inotify.
        poll_interval: seconds between polls (polling observer only).

    Use as a context manager, or call ``start()`` and, in a ``finally`` block, ``stop()``.
    """

    def __init__(self, logdir: LogDir, *, poll: bool = False, poll_interval: float = 1.0) -> None:
        self.logdir = logdir
        self.poll = poll
        self.poll_interval = poll_interval
        self.observer: Any = None
        self.mode: str | None = None
        self._starting: threading.Thread | None = None
        self._stopped = False  # stop() was called: a background start still going stops what it starts
        self.stop_wait = 30.0  # seconds stop() waits for a background start (a watch on 10,000 folders)

    def _start_observer(self, polling: bool) -> None:
        obs = PollingObserver(timeout=self.poll_interval) if polling else Observer()
        obs.schedule(RunEventHandler(self.logdir), os.fspath(self.logdir.path), recursive=True)
        obs.start()
        self.observer = obs
        self.mode = "polling" if polling else "inotify"
        if self._stopped:  # stop() gave up waiting for this start: nobody else would stop it
            self._stop_observer()

    def start(self, *, background: bool = False) -> "Watcher":
        """Start watching, then mark everything dirty once (existing files send no event).

        With ``background``, in a thread: ``start`` returns at once and ``logdir.verified``
        turns True when the first full refresh is done.
        """
        self._stopped = False
        if not background:
            self._start()
            return self
        self._starting = threading.Thread(target=self._start_logged, name="babysitter-watch-start", daemon=True)
        self._starting.start()
        return self

    def _start_logged(self) -> None:
        try:
            self._start()
        except Exception:  # say that new writes will not show, and list what is there now
            log.exception("watching %s failed: the dashboard will not show new writes", self.logdir.path)
            self.logdir.refresh(full=True)

    def _start(self) -> None:
        Path(self.logdir.path).mkdir(parents=True, exist_ok=True)
        try:
            self._start_observer(self.poll)
        except OSError as err:
            if self.poll:
                raise
            log.warning("file events are not available (%s); polling %s every %.1f s instead",
                        err.strerror or err, self.logdir.path, self.poll_interval)
            self._stop_observer()
            self._start_observer(True)
        self.logdir.mark_dirty(None)
        self.logdir.refresh(full=True)
        log.debug("watching %s (%s)", self.logdir.path, self.mode)

    def _stop_observer(self) -> None:
        obs, self.observer = self.observer, None
        if obs is None:
            return
        try:
            obs.stop()
            if obs.is_alive():
                obs.join(timeout=5)
        except RuntimeError:  # never started
            pass

    def stop(self) -> None:
        """Stop the observer and wait for its thread. Safe to call twice."""
        self._stopped = True
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.join(timeout=self.stop_wait)
        self._stop_observer()

    def __enter__(self) -> "Watcher":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
