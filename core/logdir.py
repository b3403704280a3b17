"""``LogDir``: the runs of a log directory, listed cheaply and each read only when asked for.

Listing a folder costs one ``stat`` per file (``folder_signature``): a log directory of
10,000 runs is listed in well under a second, and no data file is read until a run is
asked for (``get``, or ``runs`` for all of them). An opened run is then refreshed
incrementally (only new bytes) whenever the watcher marks it dirty.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple

from .errors import RunNotFoundError
from ._sample import Sampling
from .reader import Run
from .schema import DATA_SUFFIX, HEARTBEAT_FILE, META_FILE

__all__ = ["LogDir", "Listing", "folder_signature", "is_hidden", "signature_listing"]


class Listing(NamedTuple):
    """What ``stat`` says of a run folder, without reading it.

    Attributes:
        signature: ``name, inode, size, mtime_ns`` of ``meta.json`` and every data file; two
            equal signatures mean the run's files were not changed, shrunk, replaced or removed
            (the heartbeat is left out: it says the process lives, not what it wrote).
        activity: newest mtime of those files and the heartbeat (seconds since the epoch).
    """

    signature: str
    activity: float

    def largest_file(self) -> int:
        """Bytes of the largest of the files in ``signature``."""
        return max((int(part.split("\0")[2]) for part in self.signature.split("\n") if part.count("\0") == 3),
                   default=0)


def folder_signature(path: str | os.PathLike[str]) -> Listing | None:
    """The ``Listing`` of the run folder ``path``; None when it is gone or unreadable."""
    parts = []
    newest = 0.0
    try:
        entries = list(os.scandir(path))
    except OSError:
        return None
    for e in entries:
        name = e.name
        if name != META_FILE and name != HEARTBEAT_FILE and not name.endswith(DATA_SUFFIX):
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        newest = max(newest, st.st_mtime)
        if name != HEARTBEAT_FILE:
            parts.append(f"{name}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}")
    parts.sort()
    return Listing("\n".join(parts), newest)


def signature_listing(signature: str) -> Listing:
    """The ``Listing`` a stored ``signature`` implies (activity: its newest file time; the heartbeat is not in it)."""
    newest = 0
    for part in signature.split("\n"):
        fields = part.split("\0")
        if len(fields) == 4 and fields[3].isdigit():
            newest = max(newest, int(fields[3]))
    return Listing(signature, newest / 1e9)


def is_hidden(name: str) -> bool:
    """True for a folder a log directory never lists as a run (``.git``, ``.ipynb_checkpoints``, ...)."""
    return name.startswith(".")


def _plain_name(name: str) -> bool:
    """True for a name that is one folder name (no separator, no NUL, not ``.`` or ``..``)."""
    return (isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name and "\x00" not in name
            and name not in (".", ".."))


class LogDir:
    """The runs of a log directory: listed cheaply, each read when first asked for.

    Args:
        path: the log directory (it may not exist yet).
        max_hist_rows: passed to every ``Run``.
        sample: passed to every ``Run``: large data files are opened sampled (``core._sample``),
            and an opened run goes on searching what that skipped on every ``refresh``.

    Only direct sub-folders are runs; a run name is one folder name and never resolves
    outside ``path`` (symlinks pointing out are ignored). ``version`` changes whenever the
    list of runs, the files of a run, or what an opened run read changes.

    ``seed`` lists the runs a previous start saw (their stored signatures) before the folder
    itself is listed, so a restart over many runs can answer at once; ``verified`` is False
    until ``refresh(full=True)`` has compared every run with its files.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_hist_rows: int = 2048,
                 sample: Sampling | None = None) -> None:
        self.path = Path(path)
        self.max_hist_rows = max_hist_rows
        self.sample = sample
        self._listing: dict[str, Listing] = {}
        self._runs: dict[str, Run] = {}
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._lock = threading.RLock()
        self._open_lock = threading.Lock()
        self._listed = False  # the folder itself has been listed at least once
        self.verified = True  # False from ``seed`` until a full refresh has looked at every run
        self.version = 0

    def seed(self, signatures: Mapping[str, str]) -> int:
        """List ``name -> stored signature`` as the runs, before the folder is first listed.

        What a previous start saw, for a server to answer at once; ``refresh(full=True)``
        (the watcher's start) then compares every run with its files and corrects the list.
        Until then ``verified`` is False, and ``get`` looks for a run not in the seed on disk.
        Returns how many runs were seeded (none once the folder has been listed).
        """
        with self._lock:
            if self._listed or self._listing:
                return 0
            for name, sig in signatures.items():
                if sig and _plain_name(name) and not is_hidden(name):  # what ``_scan`` would list
                    self._listing[name] = signature_listing(sig)
            if not self._listing:
                return 0
            self._all_dirty = False
            self.verified = False
            self.version += 1
            return len(self._listing)

    def _safe_child(self, name: str) -> Path | None:
        if not _plain_name(name):
            return None
        child = self.path / name
        try:
            if not stat.S_ISLNK(os.lstat(child).st_mode):
                return child  # a direct entry that is not a link: inside by construction
        except FileNotFoundError:
            return child
        except OSError:
            return None
        try:  # a symlink: only one that stays inside the log directory
            root = self.path.resolve()
            real = child.resolve()
        except (OSError, RuntimeError):
            return None
        if real.parent != root:
            return None
        return child

    def mark_dirty(self, name: str | None = None) -> None:
        """Note that run ``name`` (or, with None, the folder list) changed. Cheap; safe from any thread."""
        with self._lock:
            if name is None:
                self._all_dirty = True
            else:
                self._dirty.add(name)

    def refresh(self, full: bool = False) -> bool:
        """Re-list (when marked or ``full``) and bring the marked runs up to date.

        Runs not opened yet are only ``stat``-ed; opened ones read their new bytes. Returns True
        when anything changed.
        """
        with self._lock:
            rescan = self._all_dirty or full
            dirty = set(self._listing) if full else set(self._dirty)
            dirty |= {n for n, r in self._runs.items() if r.searching}
            self._all_dirty = False
            self._dirty.clear()
        changed = False
        if rescan:
            names = set(self._scan())
            self._listed = True
            with self._lock:
                for gone in set(self._listing) - names:
                    del self._listing[gone]
                    self._runs.pop(gone, None)
                    changed = True
            dirty |= names - set(self._listing)  # new folders (plain folders are looked at again each rescan)
        for name in dirty:
            changed |= self._relist(name)
        if full and not self.verified:
            self.verified = True
            changed = True  # pages that said "checking" redraw
        if changed:
            with self._lock:
                self.version += 1
        return changed

    def _relist(self, name: str) -> bool:
        """Stat run ``name`` again (and read an opened one's new bytes). True when it changed."""
        child = self._safe_child(name)
        found = folder_signature(child) if child is not None else None
        if found is not None and not found.signature:  # no meta.json and no data file: not a run
            found = None
        with self._lock:
            before = self._listing.get(name)
            run = self._runs.get(name)
            if found is None:
                gone = self._listing.pop(name, None) is not None
                self._runs.pop(name, None)
                return gone
            self._listing[name] = found
        changed = before is None or before.signature != found.signature
        if run is not None:
            v = run.data_version  # a search step that found nothing changes no summary
            run.update()
            changed |= run.data_version != v
        return changed

    def _scan(self) -> Iterator[str]:
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return
        for e in entries:
            if is_hidden(e.name):
                continue
            try:
                if not e.is_dir():  # follows a link; where it leads is judged by _safe_child
                    continue
            except OSError:
                continue
            if self._safe_child(e.name) is None:
                continue
            yield e.name  # a folder; whether it is a run is told by its files (_relist)

    def _repr_html_(self) -> str:
        """Jupyter: one row per run (``core.notebook``)."""
        from .notebook import logdir_html

        return logdir_html(self)

    def names(self) -> list[str]:
        """Run names, sorted (no run is read)."""
        with self._lock:
            return sorted(self._listing)

    def listing(self, name: str | None = None) -> "dict[str, Listing] | Listing | None":
        """Every run's ``Listing`` (a copy), or the one of run ``name`` (None when not listed)."""
        with self._lock:
            return dict(self._listing) if name is None else self._listing.get(name)

    def is_open(self, name: str) -> bool:
        """True when run ``name`` has been read into this process."""
        with self._lock:
            return name in self._runs

    def open_names(self) -> list[str]:
        """The runs read into this process so far."""
        with self._lock:
            return list(self._runs)

    def runs(self) -> list[Run]:
        """Every run, read (opening those not read yet), sorted by name."""
        out = []
        for name in self.names():
            run = self.get(name)
            if run is not None:
                out.append(run)
        return out

    def get(self, name: str) -> Run | None:
        """The run called ``name``, read so far, or None (also for any name that would leave the log directory).

        A listed run not read yet is read now (in full, once; later calls are free).
        """
        if self._safe_child(name) is None:
            return None
        with self._lock:
            run = self._runs.get(name)
            if run is not None:
                return run
            look = name not in self._listing and not self.verified
        if look and self._relist(name):  # written since the seeded start, not listed yet
            with self._lock:
                self.version += 1
        with self._lock:
            if name not in self._listing:
                return None
        with self._open_lock:  # two viewers of one new run read it once
            with self._lock:
                run = self._runs.get(name)
                if run is not None:
                    return run
                if name not in self._listing:
                    return None
            try:
                run = Run(self.path / name, max_hist_rows=self.max_hist_rows, sample=self.sample)
            except RunNotFoundError:
                return None
            run.update()
            with self._lock:
                if name not in self._listing:
                    return None
                self._runs[name] = run
            return run
