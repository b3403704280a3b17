"""Append-only JSON Lines writer for one run folder and one rank.

Every record is serialised to one complete, newline-terminated line and handed to the
kernel with a single ``os.write`` on a file opened with ``O_APPEND``: a process killed at
any moment leaves either the whole line or (rarely, for lines larger than a page) a torn
last line without its newline, which readers treat as "not yet written". There is no
user-space buffer to lose.

An ``OSError`` (disk full, I/O error, read-only folder) never reaches the training loop:
the writer logs one warning, marks itself failed and drops everything after that. A value
JSON cannot hold (an integer past 64 bits, a tuple key, a lone surrogate, a cycle, an
object whose ``str`` raises) is stored as text with one warning naming it (``jsonable``);
it never stops monitoring.
"""

from __future__ import annotations

import logging
import os
import secrets
import warnings
from pathlib import Path
from typing import Any

import orjson

from core.schema import MAX_NESTING, META_FILE, data_file

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


_MAX_DEPTH = MAX_NESTING  # what a reader keeps (orjson itself refuses more than 255 levels)
_INT_RANGE = (-(2**63), 2**64)  # what orjson writes as a JSON integer
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError, orjson.JSONEncodeError)


def _text(s: str) -> str:
    # A lone surrogate ("\ud800") is no valid UTF-8: keep it visible as its escape.
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(obj: Any) -> str:
    try:
        return _text(str(obj))
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


def _at(where: str, part: str) -> str:
    # Where a value sits, for the warning: cut past 120 characters (a deep value has a long path).
    if where.endswith("…"):
        return where
    return where + part if len(where) + len(part) <= 120 else where + "…"


def jsonable(obj: Any, notes: list[str], where: str = "", depth: int = 0, _path: tuple[int, ...] = ()) -> Any:
    """A copy of ``obj`` that orjson can write: whatever it cannot is stored as text, and ``notes`` says where.

    Integers past 64 bits, keys that are not strings or numbers, lone surrogates, objects
    whose ``str`` raises, cycles and nesting over ``_MAX_DEPTH`` levels each become a string
    (``notes`` gets ``"<where>: <what was done>"``); everything else is kept as it is.
    """
    if obj is None or isinstance(obj, (bool, float)):
        return obj
    if isinstance(obj, int):
        if _INT_RANGE[0] <= obj < _INT_RANGE[1]:
            return obj
        notes.append(f"{where}: integer too large for JSON, stored as text")
        return _shown(obj)
    if isinstance(obj, str):
        t = _text(obj)
        if t is not obj:
            notes.append(f"{where}: text that is not valid Unicode, stored with escapes")
        return t
    if isinstance(obj, (dict, list, tuple)) or hasattr(obj, "tolist"):
        if id(obj) in _path:
            notes.append(f"{where}: refers to itself, stored as text")
            return "<cycle>"
        if depth >= _MAX_DEPTH:
            notes.append(f"{where}: nested more than {_MAX_DEPTH} levels, stored as text")
            return "<nested too deep>"
        path = _path + (id(obj),)
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                if isinstance(k, str):
                    key: Any = _text(k)
                    if key is not k:
                        notes.append(f"{_at(where, f'[{key!r}]')}: key that is not valid Unicode, stored with escapes")
                elif k is None or isinstance(k, (bool, float)) or (isinstance(k, int)
                                                                   and _INT_RANGE[0] <= k < _INT_RANGE[1]):
                    key = k  # written as text by OPT_NON_STR_KEYS
                else:
                    key = _shown(k)
                    notes.append(f"{_at(where, f'[{key!r}]')}: key of type {type(k).__name__} stored as text")
                out[key] = jsonable(v, notes, _at(where, f"[{_shown(k)[:40]!r}]"), depth + 1, path)
            return out
        try:
            items = obj.tolist() if not isinstance(obj, (list, tuple)) else obj
        except Exception:
            items = None
        if isinstance(items, (list, tuple)):
            return [jsonable(v, notes, _at(where, f"[{i}]"), depth + 1, path) for i, v in enumerate(items)]
        if items is not None:
            return jsonable(items, notes, where, depth + 1, path)
    try:
        v = _default(obj)
    except Exception:
        v = f"<unprintable {type(obj).__name__}>"
        notes.append(f"{where}: {type(obj).__name__} whose text cannot be made, stored as {v}")
        return v
    return jsonable(v, notes, where, depth + 1, _path) if not isinstance(v, str) else _text(v)


def _dumps(obj: Any, option: int, what: str, warned: set[str] | None = None) -> bytes:
    """orjson's bytes for ``obj``; on a value it cannot write, those of ``jsonable(obj)`` and one warning per value."""
    try:
        return orjson.dumps(obj, default=_default, option=option)
    except _ENCODE_ERRORS:
        pass
    notes: list[str] = []
    clean = jsonable(obj, notes, what)
    new = [n for n in notes if warned is None or n not in warned]
    if new:
        if warned is not None:
            warned.update(new)
        msg = ("Babysitter: some values could not be written as JSON and were stored as text (monitoring "
               "continues): " + "; ".join(new[:5]) + (f"; and {len(new) - 5} more" if len(new) > 5 else ""))
        log.warning(msg)
        warnings.warn(msg, MonitoringWarning, stacklevel=4)
    return orjson.dumps(clean, option=option)


def dumps_line(record: dict[str, Any], warned: set[str] | None = None) -> bytes:
    """One strict JSON line. orjson writes NaN and Inf as ``null`` (RFC 8259 has neither)."""
    return _dumps(record, _DUMP_OPTS, "record", warned) + b"\n"


def write_json_atomic(path: Path, obj: Any, warned: set[str] | None = None) -> None:
    """Write ``obj`` as JSON to ``path`` through a temp file and ``os.replace``: readers see old or new, never half.

    The temp file is created with mode 0644 like the data files, so the umask decides who
    can read it (``mkstemp`` would make it 0600 whatever the umask).
    """
    data = _dumps(obj, _DUMP_OPTS | orjson.OPT_INDENT_2, "meta", warned) + b"\n"
    tmp = path.parent / f".meta-{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
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
        self._warned: set[str] = set()  # values already reported as stored as text

    def _fd(self, stream: str) -> int:
        fd = self._fds.get(stream)
        if fd is None:
            path = self.run_dir / data_file(stream, self.rank)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._fds[stream] = fd
        return fd

    def fail(self, what: str, err: BaseException) -> None:
        """Stop writing after ``err`` (could not ``what``): one warning, then every write is dropped."""
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
            data = dumps_line(record, self._warned)
        except _ENCODE_ERRORS as err:  # not expected after jsonable; one record lost, monitoring goes on
            log.warning("Babysitter: a %s record could not be written as JSON (%s); skipped", stream, err)
            return False
        try:
            fd = self._fd(stream)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError as err:
            self.fail(f"append to {stream}", err)
            return False
        self.lines_written += 1
        return True

    def write_meta(self, meta: dict[str, Any]) -> bool:
        """Atomically replace ``meta.json``. Returns False once the writer has failed."""
        if self.failed:
            return False
        try:
            write_json_atomic(self.run_dir / META_FILE, meta, self._warned)
        except _ENCODE_ERRORS as err:  # not expected after jsonable: keep the previous meta.json
            log.warning("Babysitter: meta.json could not be written as JSON (%s); the previous one is kept", err)
            return False
        except OSError as err:
            self.fail("write meta.json", err)
            return False
        return True

    def touch(self, name: str) -> None:
        """Update the mtime of ``name`` (the heartbeat), creating it if needed; errors are ignored."""
        if self.failed:
            return
        path = self.run_dir / name
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))  # the data files' mode
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
