"""Append-only JSON Lines writer for one run folder and one rank.

Every record is serialised to one complete, newline-terminated line and handed to the
kernel with a single ``os.write`` on a file opened with ``O_APPEND``: a process killed at
any moment leaves either the whole line or (rarely, for lines larger than a page) a torn
last line without its newline, which readers treat as "not yet written". There is no
user-space buffer to lose.

An ``OSError`` (disk full, I/O error, read-only folder) never reaches the training loop:
the writer logs one warning, marks itself failed and drops everything after that.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import orjson

from core.schema import META_FILE, data_file

log = logging.getLogger(__name__)

# OPT_NON_STR_KEYS: hyperparameter dicts with int (or other) keys are written with text keys
# instead of failing, which would stop monitoring for a harmless reason.
_DUMP_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class MonitoringWarning(RuntimeWarning):
    """Warned once when monitoring stops because the run folder cannot be written."""


def _default(obj: Any) -> Any:
    # Hyperparameters may hold anything (a dtype, a Path, a torch scalar): store its text, never fail.
    item = getattr(obj, "item", None)
    if callable(item):
        try:
            return item()
        except Exception:
            pass
    return str(obj)


def dumps_line(record: dict[str, Any]) -> bytes:
    """One strict JSON line. orjson writes NaN and Inf as ``null`` (RFC 8259 has neither)."""
    return orjson.dumps(record, default=_default, option=_DUMP_OPTS) + b"\n"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temp file and ``os.replace``: readers see old or new, never half."""
    data = orjson.dumps(obj, default=_default, option=_DUMP_OPTS | orjson.OPT_INDENT_2) + b"\n"
    fd, tmp = tempfile.mkstemp(prefix=".meta-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class RunWriter:
    """Appends records to ``<run>/<stream>.r<rank>.jsonl`` files; writes ``meta.json`` atomically.

    Args:
        run_dir: the run folder (must exist).
        rank: data-parallel rank; each rank writes its own files.
    """

    def __init__(self, run_dir: Path, rank: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.failed = False
        self.lines_written = 0
        self._fds: dict[str, int] = {}

    def _fd(self, stream: str) -> int:
        fd = self._fds.get(stream)
        if fd is None:
            path = self.run_dir / data_file(stream, self.rank)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._fds[stream] = fd
        return fd

    def _fail(self, what: str, err: BaseException) -> None:
        if self.failed:
            return
        self.failed = True
        msg = (f"Babysitter stopped monitoring: could not {what} in {self.run_dir} ({err}). "
               "Training continues; records written before this point are intact. "
               "Free disk space or point the Monitor at a writable log directory.")
        log.warning(msg)
        warnings.warn(msg, MonitoringWarning, stacklevel=3)

    def append(self, stream: str, record: dict[str, Any]) -> bool:
        """Append one record to ``stream``. Returns False (and drops it) once the writer has failed."""
        if self.failed:
            return False
        try:
            data = dumps_line(record)
            fd = self._fd(stream)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except (OSError, TypeError, ValueError, orjson.JSONEncodeError) as err:
            self._fail(f"append to {stream}", err)
            return False
        self.lines_written += 1
        return True

    def write_meta(self, meta: dict[str, Any]) -> bool:
        """Atomically replace ``meta.json``. Returns False once the writer has failed."""
        if self.failed:
            return False
        try:
            write_json_atomic(self.run_dir / META_FILE, meta)
        except (OSError, TypeError, orjson.JSONEncodeError) as err:
            self._fail("write meta.json", err)
            return False
        return True

    def touch(self, name: str) -> None:
        """Update the mtime of ``name`` (the heartbeat), creating it if needed; errors are ignored."""
        if self.failed:
            return
        path = self.run_dir / name
        try:
            with open(path, "a"):
                pass
            os.utime(path)
        except OSError:
            pass

    def close(self) -> None:
        """Close every file. Safe to call twice."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
