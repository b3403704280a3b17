"""``LogDir``: the runs of a log directory, each read lazily and refreshed incrementally."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

from .errors import RunNotFoundError
from .reader import Run, is_run_dir

__all__ = ["LogDir"]


class LogDir:
    """The runs of a log directory, each read lazily and refreshed incrementally.

    Args:
        path: the log directory (it may not exist yet).
        max_hist_rows: passed to every ``Run``.

    Only direct sub-folders are runs; a run name is one folder name and never resolves
    outside ``path`` (symlinks pointing out are ignored).
    """

    def __init__(self, path: str | os.PathLike[str], *, max_hist_rows: int = 2048) -> None:
        self.path = Path(path)
        self.max_hist_rows = max_hist_rows
        self._runs: dict[str, Run] = {}
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._lock = threading.RLock()
        self.version = 0

    def _safe_child(self, name: str) -> Path | None:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
            return None
        child = self.path / name
        try:
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
        """Rescan (when marked or ``full``) and update dirty runs. Returns True when anything changed."""
        with self._lock:
            rescan = self._all_dirty or full
            dirty = set(self._runs) if full else set(self._dirty)
            self._all_dirty = False
            self._dirty.clear()
        changed = False
        if rescan:
            names = set(self._scan())
            with self._lock:
                for gone in set(self._runs) - names:
                    del self._runs[gone]
                    changed = True
                for new in names - set(self._runs):
                    try:
                        self._runs[new] = Run(self.path / new, max_hist_rows=self.max_hist_rows)
                        dirty.add(new)
                        changed = True
                    except RunNotFoundError:
                        pass
        for name in dirty:
            run = self._runs.get(name)
            if run is None:
                if self._safe_child(name) is not None and is_run_dir(self.path / name):
                    self.mark_dirty(None)
                continue
            if not run.path.is_dir():
                with self._lock:
                    self._runs.pop(name, None)
                changed = True
                continue
            before = run.version
            run.update()
            changed |= run.version != before
        if changed:
            with self._lock:
                self.version += 1
        return changed

    def _scan(self) -> Iterator[str]:
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            if self._safe_child(e.name) is None:
                continue
            if is_run_dir(Path(e.path)):
                yield e.name

    def _repr_html_(self) -> str:
        """Jupyter: one row per run (``core.notebook``)."""
        from .notebook import logdir_html

        return logdir_html(self)

    def names(self) -> list[str]:
        """Run names, sorted."""
        with self._lock:
            return sorted(self._runs)

    def runs(self) -> list[Run]:
        """The runs, sorted by name."""
        with self._lock:
            return [self._runs[n] for n in sorted(self._runs)]

    def get(self, name: str) -> Run | None:
        """The run called ``name``, or None (also for any name that would leave the log directory)."""
        if self._safe_child(name) is None:
            return None
        with self._lock:
            return self._runs.get(name)
