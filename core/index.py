"""The persisted summary index: each run's summary, kept between processes in SQLite.

A log directory of 10,000 runs costs a full read of every run once; after that a server
start or a ``babysitter compare`` reads only the runs whose files changed. The index is a
cache, never the source of truth: each record is stored with its run's ``folder_signature``
(name, inode, size and mtime of ``meta.json`` and every data file), and a record whose
signature differs from the folder's is not used. Records written by another version of
the reader or the rules (``CODE_KEY``) are dropped as a whole.

Where it lives: ``$BABYSITTER_CACHE`` when set (``off`` keeps it in memory only), else
``$XDG_CACHE_HOME/babysitter`` or ``~/.cache/babysitter``; one file per log directory,
named after a hash of its real path, so the run folders are never written to. SQLite
comes with Python (no new dependency), survives a killed process (WAL journal), and lets a
dashboard and a ``compare`` share one file; an index that cannot be opened, written or read
is replaced by an in-memory one with a warning, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import orjson

from .schema import Finding
from .summary import RunSummary

log = logging.getLogger(__name__)

__all__ = ["RunRecord", "SummaryIndex", "cache_dir", "code_key"]

_MEMORY = {"off", "none", "0", "memory"}
_code_key: str | None = None


def code_key() -> str:
    """A hash of the reader's and the rules' source: a record made by other code is not trusted."""
    global _code_key
    if _code_key is None:
        here = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for p in sorted([*here.glob("*.py"), *(here / "rules").glob("*.py")]):
            h.update(p.name.encode())
            try:
                h.update(p.read_bytes())
            except OSError:
                pass
        _code_key = h.hexdigest()[:16]
    return _code_key


def cache_dir() -> Path | None:
    """Where indexes are kept, or None for in-memory only (``BABYSITTER_CACHE=off``)."""
    raw = os.environ.get("BABYSITTER_CACHE")
    if raw is not None:
        return None if raw.strip().lower() in _MEMORY or not raw.strip() else Path(raw)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "babysitter"


@dataclass(frozen=True)
class RunRecord:
    """What the run list, the comparison and ``check`` need of one run, without reading it.

    Attributes:
        summary: the run's ``RunSummary``.
        findings: its findings (the engine's and those written by training).
        layers: number of layers with statistics.
        problems: unreadable lines or files.
        meta_status: ``meta.json``'s status (``running`` for a run that did not end itself).
        pid, host: the writing process, to tell a live run from a crashed one.
    """

    summary: RunSummary
    findings: tuple[Finding, ...]
    layers: int
    problems: int
    meta_status: str
    pid: int | None
    host: str | None

    @classmethod
    def of(cls, run: Any, summary: RunSummary, findings: Iterable[Finding]) -> "RunRecord":
        """The record of ``run`` (a read ``core.Run``) with its summary and findings."""
        return cls(summary=summary, findings=tuple(findings), layers=len(run.acts.names),
                   problems=run.problem_count, meta_status=run.meta.status, pid=run.meta.pid or None,
                   host=run.meta.host or None)

    def to_text(self) -> str:
        out = {"summary": self.summary.to_json(finite=False), "findings": [f.to_json() for f in self.findings],
               "layers": self.layers, "problems": self.problems, "meta_status": self.meta_status, "pid": self.pid,
               "host": self.host}
        return _dumps(out)

    @classmethod
    def from_text(cls, text: str) -> "RunRecord | None":
        """The record stored as ``text``; None for anything that is not one (a damaged index)."""
        try:
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError:  # NaN or Infinity, which only the standard parser reads
                obj = json.loads(text)
            summary = RunSummary.from_json(obj["summary"])
            findings = tuple(f for f in (Finding.from_json(x) for x in obj["findings"]) if f is not None)
            return cls(summary=summary, findings=findings, layers=int(obj["layers"]), problems=int(obj["problems"]),
                       meta_status=str(obj["meta_status"]),
                       pid=obj["pid"] if isinstance(obj["pid"], int) else None,
                       host=obj["host"] if isinstance(obj["host"], str) else None)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True, default=str, separators=(",", ":"))


class SummaryIndex:
    """The persisted records of one log directory (a SQLite file in ``cache_dir()``).

    Args:
        logdir: the log directory the records describe.
        directory: where the file goes; ``"default"`` for ``cache_dir()``, None for memory only.

    Thread-safe (one connection behind a lock). ``persistent`` is False when the records are
    kept in memory only (asked for, or the file could not be used: a warning says why).
    """

    def __init__(self, logdir: str | os.PathLike[str], directory: "str | os.PathLike[str] | None" = "default") -> None:
        self._lock = threading.Lock()
        self.writes = 0  # records written (tests: an unchanged run is not summarised again)
        self.path: Path | None = None
        folder = cache_dir() if directory == "default" else (Path(directory) if directory is not None else None)
        if folder is not None:
            real = os.path.realpath(os.fspath(logdir))
            self.path = folder / f"index-{hashlib.sha256(real.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}.sqlite"
        self._db = self._connect()

    @property
    def persistent(self) -> bool:
        return self.path is not None

    def _connect(self) -> sqlite3.Connection:
        if self.path is not None:
            for attempt in (0, 1):
                db = None
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
                    self._prepare(db)
                    return db
                except (sqlite3.DatabaseError, OSError) as err:
                    if attempt == 0 and isinstance(err, sqlite3.DatabaseError) and self.path.exists():
                        log.warning("summary index %s is damaged (%s); making a new one", self.path, err)
                        if db is not None:
                            db.close()
                        self._remove_files()
                        continue
                    log.warning("summary index %s cannot be used (%s); summaries are kept in memory only "
                                "and recomputed at the next start", self.path, err)
                    break
            self.path = None
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._prepare(db)
        return db

    def _remove_files(self) -> None:
        assert self.path is not None
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(str(self.path) + suffix)
            except OSError:
                pass

    @staticmethod
    def _prepare(db: sqlite3.Connection) -> None:
        db.execute("PRAGMA busy_timeout=10000")
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:  # a file system without shared memory: the default journal
            pass
        db.execute("CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS runs (name TEXT PRIMARY KEY, signature TEXT NOT NULL, "
                   "record TEXT NOT NULL)")
        row = db.execute("SELECT value FROM info WHERE key='code'").fetchone()
        if row is None or row[0] != code_key():
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM runs")
            db.execute("INSERT OR REPLACE INTO info VALUES ('code', ?)", (code_key(),))
            db.execute("COMMIT")

    def _run(self, fn):
        """``fn(db)`` under the lock; a failing file turns the index into a memory one (warned once)."""
        with self._lock:
            try:
                return fn(self._db)
            except sqlite3.Error as err:
                if self.path is None:
                    raise
                log.warning("summary index %s failed (%s); summaries are kept in memory only from now on",
                            self.path, err)
                try:
                    self._db.close()
                except sqlite3.Error:
                    pass
                self.path = None
                self._db = self._connect()
                return fn(self._db)

    def load(self) -> dict[str, tuple[str, str]]:
        """Every stored ``name -> (signature, record text)``."""
        return self._run(lambda db: {n: (s, r) for n, s, r in db.execute("SELECT name, signature, record FROM runs")})

    def put(self, items: Iterable[tuple[str, str, str]]) -> None:
        """Store ``(name, signature, record text)`` items (replacing earlier ones), in one transaction."""
        items = list(items)
        if not items:
            return

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?)", items)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        self._run(write)
        self.writes += len(items)

    def forget(self, names: Iterable[str]) -> None:
        """Drop the records of ``names`` (runs deleted from the log directory)."""
        names = [(n,) for n in names]
        if names:
            self._run(lambda db: db.executemany("DELETE FROM runs WHERE name=?", names))

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
