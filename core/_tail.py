"""Incremental reading of one append-only JSON Lines file.

The tail remembers its byte offset, the file's inode, the bytes of a last line that has
no newline yet, and the line number. ``read_new`` reads only what was appended since the
previous call, in bounded chunks, and parses only complete lines. A line that is not
valid strict JSON (RFC 8259: no NaN tokens, valid UTF-8) is skipped and reported with
its line number. A line longer than ``max_line`` bytes is skipped without being held in
memory. A file that shrank, was replaced (new inode) or was rewritten in place (its first
bytes, or the bytes just before the offset, differ from what was read: a file truncated and
written again, or a folder re-created with the same name where the inode was reused) is
reported as ``reset`` so the caller can start over.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from ._histparse import loads_lines
from ._sample import Sampled, Sampling, open_sampled, renumber, scan
from .schema import KINDS, STEP_LIMIT, Problem

CHUNK = 4 << 20
MAX_LINE = 16 << 20  # far above any real record (1000 layers x 64 bins is about 0.5 MB)
_MARK = 64  # bytes compared at the start of the file and before the offset to notice a rewrite


@dataclass(slots=True)
class TailResult:
    """What one ``read_new`` call found."""

    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    reset: bool = False
    bytes_read: int = 0
    sampled: bool = False  # this read opened the file sampled or searched more of what that skipped


def check_record(obj: Any) -> str | None:
    """Why ``obj`` is not a record of the format, or ``None`` when it is one."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    kind = obj.get("kind")
    if kind not in KINDS:
        return f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})"
    step = obj.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        return f"'step' must be an integer, got {step!r}"
    if not -STEP_LIMIT < step < STEP_LIMIT:
        return f"'step' {step} is out of range"
    return None


_BLANK = frozenset(b" \t\r\n\x0b\x0c")


class FileTail:
    """Reads the new complete lines of one file.

    Args:
        path: the file.
        rel: its name as shown in problem reports.
        max_line: longest line kept, in bytes; longer lines are skipped and reported.
    """

    def __init__(self, path: str | os.PathLike[str], rel: str, max_line: int = MAX_LINE) -> None:
        self.path = os.fspath(path)
        self.rel = rel
        self.max_line = max_line
        self.offset = 0
        self.ino: int | None = None
        self.lineno = 0
        self._partial = bytearray()
        self._skipping = False  # inside an over-long line, dropping bytes until its newline
        self._head = b""  # the file's first bytes as read
        self._before = b""  # the bytes just before ``offset`` as read
        self.sampled: Sampled | None = None  # what a sampled first read took (``core._sample``)

    def read_new(self, sink: Callable[[list[dict[str, Any]], list[Problem]], None] | None = None,
                 sample: Sampling | None = None) -> TailResult:
        """Parse what was appended since the last call. Never raises for file contents or a missing file.

        Args:
            sink: when given, ``sink(records, problems)`` receives the records and problems of
                each chunk read (at most ``CHUNK`` bytes) as soon as they are parsed, and the
                result's ``records`` and ``problems`` stay empty (a read error still lands in
                ``problems``): a first read of a large file never holds all its records as dicts.
            sample: when given, a first read of a file larger than ``sample.above`` bytes
                takes evenly spaced lines and the tail (``core._sample``), and each later call
                searches ``sample.scan_step`` more bytes of the part skipped for findings.
        """
        raw_sink = sink
        found: TailResult | None = None  # what the search found, when no sink takes it
        if sink is not None:
            def sink(records: list[dict[str, Any]], problems: list[Problem]) -> None:
                info = self.sampled
                if info is not None and not info.searched:  # line numbers count from ``head_end`` for now
                    problems = renumber(info, records, problems)
                raw_sink(records, problems)

        res = TailResult()
        try:
            # O_NOFOLLOW: never read through a symlink; O_NONBLOCK: a FIFO put in its place cannot hang the reader.
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            if self.ino is not None:
                res.reset = True
            return res
        except OSError as err:
            res.problems.append(Problem(self.rel, 0, f"cannot open: {err.strerror or err}"))
            return res
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                res.problems.append(Problem(self.rel, 0, "not a regular file; ignored"))
                return res
            if self.ino is None:
                self.ino = st.st_ino
                if sample is not None and not self.offset and st.st_size > sample.above:
                    self.sampled = open_sampled(self, fd, st.st_size, sample, res, sink, CHUNK)
                    res.sampled = True
            elif st.st_ino != self.ino or st.st_size < self.offset or not self._same_bytes(fd):
                res.reset = True
                return res
            elif sample is not None and self.sampled is not None and not self.sampled.searched:
                found = TailResult()
                scan(self, self.sampled, fd, sample.scan_step, found)  # exact line numbers: not renumbered
                res.sampled = True
                if raw_sink is not None:
                    if found.records or found.problems:
                        raw_sink(found.records, found.problems)
                    found = None
            while self.offset < st.st_size:
                chunk = os.pread(fd, min(CHUNK, st.st_size - self.offset), self.offset)
                if not chunk:
                    break
                self.offset += len(chunk)
                res.bytes_read += len(chunk)
                self._feed(chunk, res)
                if sink is not None and (res.records or res.problems):
                    sink(res.records, res.problems)
                    res.records, res.problems = [], []
            if self.offset and (len(self._head) < _MARK or res.bytes_read):
                self._head = os.pread(fd, min(_MARK, self.offset), 0)
                n = min(_MARK, self.offset)
                self._before = os.pread(fd, n, self.offset - n)
        except OSError as err:
            res.problems.append(Problem(self.rel, self.lineno + 1, f"read error: {err.strerror or err}"))
        finally:
            os.close(fd)
        if self.sampled is not None:
            self.sampled.lines_after = self.lineno - (self.sampled.lines_before if self.sampled.searched else 0)
        if sink is None and self.sampled is not None and not self.sampled.searched:
            res.problems = renumber(self.sampled, res.records, res.problems)
        if found is not None:
            res.records[:0], res.problems[:0] = found.records, found.problems
        return res

    def _same_bytes(self, fd: int) -> bool:
        # Two small reads per call: a file rewritten in place (same inode, not shorter) differs here.
        if not self.offset:
            return True
        return (os.pread(fd, len(self._head), 0) == self._head
                and os.pread(fd, len(self._before), self.offset - len(self._before)) == self._before)

    def _feed(self, chunk: bytes, res: TailResult) -> None:
        start = 0
        n = len(chunk)
        # The chunk's complete lines, in order: (line number, buffer, start, end), or (line number, problem).
        # They are parsed together (``_histparse.loads_lines``: the histograms of all of them in one go).
        lines: list[tuple[int, bytes | bytearray, int, int]] = []
        order: list[tuple[int, Problem | None]] = []
        while start < n:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if not self._skipping:
                    self._partial += chunk[start:]
                    if len(self._partial) > self.max_line:
                        self._partial = bytearray()
                        self._skipping = True
                break
            self.lineno += 1
            if self._skipping:
                self._skipping = False
                order.append((self.lineno, Problem(self.rel, self.lineno, f"line longer than {self.max_line} bytes; skipped")))
                start = nl + 1
                continue
            if self._partial:
                self._partial += chunk[start:nl]
                buf: bytes | bytearray = self._partial
                lo, hi = 0, len(buf)
                self._partial = bytearray()
            else:
                buf, lo, hi = chunk, start, nl  # parsed in place: no copy of each (often 50 KB) line
            start = nl + 1
            if hi - lo > self.max_line:
                order.append((self.lineno, Problem(self.rel, self.lineno, f"line longer than {self.max_line} bytes; skipped")))
                continue
            if lo == hi or (buf[lo] in _BLANK and not bytes(buf[lo:hi]).strip()):
                continue
            lines.append((self.lineno, buf, lo, hi))
            order.append((self.lineno, None))
        if not order:
            return
        parsed = iter(loads_lines([(buf, lo, hi) for _, buf, lo, hi in lines]))
        for lineno, problem in order:
            if problem is not None:
                res.problems.append(problem)
                continue
            obj = next(parsed)
            if isinstance(obj, orjson.JSONDecodeError):
                res.problems.append(Problem(self.rel, lineno, f"not valid JSON ({str(obj)[:120]}); skipped"))
                continue
            why = check_record(obj)
            if why is not None:
                res.problems.append(Problem(self.rel, lineno, why + "; skipped"))
                continue
            obj["_line"] = lineno
            res.records.append(obj)

    @property
    def pending_bytes(self) -> int:
        """Bytes of a last line that has no newline yet ("not yet written")."""
        return len(self._partial)
