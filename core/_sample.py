"""Opening a data file far larger than what the reader keeps: evenly spaced lines, the tail, every finding.

A data file of a long run can hold a gigabyte (200 layers x 10,000 logged steps of 64-bin
histograms) while the reader keeps at most ``max_hist_rows`` histogram rows of it. Parsing
all of it before the first view takes minutes, so ``FileTail.read_new`` opens a file larger
than ``Sampling.above`` bytes *sampled* (``open_sampled``):

* the last bytes of the file (``tail``) are read in full, as any file is;
* before them, groups of consecutive lines are read at evenly spaced byte offsets (at each
  offset the reader skips to the first line of the next step and reads the lines of that
  step: a logged step's ``input``, ``acts`` and ``params`` lines, or one ``scalars`` line
  and the findings of its step; step and kind are read from the bytes), at most
  ``rows`` groups and about ``budget`` bytes in all, in file order, so the tables keep
  evenly spaced logged steps and the scalar series evenly spaced points;
* after that, lines appended to the file are read as always (only the new bytes).

What was skipped is then searched, ``scan_step`` bytes per later ``update()`` (``scan``),
for the lines that must never be left out: ``finding`` records and ``scalars`` records
with a ``nonfinite`` tag (a NaN or Inf loss); only those are parsed (the search matches the
bytes ``"finding"`` and ``"nonfinite"``: a writer that spells them with ``\\u`` escapes is
not found). The same pass counts the lines, so line numbers are exact again once it is done;
until then a problem in a sampled or later line names its byte offset instead.

Non-finite counts inside ``acts``/``params`` records (``nan``, ``w_nan``...) of the lines
skipped are not searched: a NaN activation shows at the sampled steps and at the tail.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .schema import KIND_FINDING, KIND_SCALARS, Problem

if TYPE_CHECKING:
    from ._tail import FileTail, TailResult

__all__ = ["Sampling", "Sampled", "SAMPLE_ABOVE"]

SAMPLE_ABOVE = 64 << 20  # the dashboard opens data files larger than this sampled
_PROBE = 1 << 20  # bytes read at the end of the file to learn its line size and kinds
_GROUP_MAX = 8  # most lines of one group
_MARKERS = (b'"finding"', b'"nonfinite"')
_KIND = re.compile(rb'"kind"\s*:\s*"([a-z_]{1,16})"')
_STEP = re.compile(rb'"step"\s*:\s*(-?[0-9]{1,19})\b')
_SCAN_KINDS = (KIND_FINDING, KIND_SCALARS)
_UNSET = object()


@dataclass(frozen=True)
class Sampling:
    """How a large data file is opened.

    Attributes:
        above: a file of more bytes than this is opened sampled on its first read.
        budget: bytes parsed on the first read, about (tail and groups together); None: half of
            ``above`` (a 1.3 GB file of 200 layers opens in about a second, with 258 logged steps).
        rows: most groups of lines read before the tail.
        scan_step: bytes of the skipped part searched for findings per later read.
    """

    above: int = SAMPLE_ABOVE
    budget: int | None = None
    rows: int = 2048
    scan_step: int = 32 << 20

    @property
    def bytes(self) -> int:
        return self.budget if self.budget is not None else self.above // 2


@dataclass
class Sampled:
    """What a sampled open of one file read, and how far the search of the rest has come.

    Attributes:
        file: the file's name in the run folder.
        size: its bytes at the open.
        head_end: bytes ``[0, head_end)`` were sampled; from ``head_end`` on every line is read.
        groups: groups of lines read before ``head_end``.
        lines: lines read before ``head_end`` (in the groups).
        kinds: record kinds of one group.
        est_lines: lines before ``head_end``, estimated from the line size (exact once ``scanned``).
        scanned: bytes of ``[0, head_end)`` searched for findings and non-finite scalars so far.
        found: lines the search read (findings and non-finite scalars outside the groups).
        lines_before: newlines in ``[0, scanned)``.
        lines_after: lines read from ``head_end`` on.
    """

    file: str
    size: int
    head_end: int
    groups: int = 0
    lines: int = 0
    kinds: tuple[str, ...] = ()
    est_lines: int = 0
    scanned: int = 0
    found: int = 0
    lines_before: int = 0
    lines_after: int = 0
    taken: set[int] = field(default_factory=set, repr=False)  # starts of the lines read in groups

    def steps(self) -> tuple[int, int]:
        """``(shown, in the file)``: groups of lines (steps) read, and about how many the file holds."""
        per = max(1, len(self.kinds))
        after = round(self.lines_after / per)
        return self.groups + after, round(self.est_lines / per) + after

    @property
    def searched(self) -> bool:
        """True once every line before ``head_end`` was searched (every finding is read)."""
        return self.scanned >= self.head_end


def _kind_of(line: bytes) -> str | None:
    m = _KIND.search(line, 0, 256)
    return m.group(1).decode() if m else None


def _sniff(line: bytes) -> tuple[str, int | None]:
    """The kind and step a line says it has, read from its bytes (no parse; ``"?"``/None when not found)."""
    m = _STEP.search(line)
    return _kind_of(line) or "?", (int(m.group(1)) if m else None)


def _line_at(fd: int, pos: int, end: int, hint: int, max_line: int) -> tuple[int, bytes | None]:
    """The line starting at ``pos`` (before ``end``): ``(next start, bytes without the newline)``.

    ``bytes`` is None for a line longer than ``max_line`` (skipped) or one that runs past ``end``.
    """
    size = max(512, hint * 2)
    while True:
        n = min(size, end - pos)
        buf = os.pread(fd, n, pos)
        nl = buf.find(b"\n")
        if nl >= 0:
            return pos + nl + 1, (buf[:nl] if nl <= max_line else None)
        if pos + len(buf) >= end or len(buf) < n:
            return end, None
        if size > max_line:
            # An over-long line: find its end without holding it.
            p = pos + len(buf)
            while p < end:
                chunk = os.pread(fd, min(1 << 20, end - p), p)
                if not chunk:
                    return end, None
                k = chunk.find(b"\n")
                if k >= 0:
                    return p + k + 1, None
                p += len(chunk)
            return end, None
        size *= 2


def _next_start(fd: int, pos: int, end: int, hint: int = 1 << 16) -> int:
    """The first line start at or after ``pos`` (``end`` when none before it); ``hint``: the usual line size."""
    if pos == 0:
        return 0
    p = pos - 1  # a line starts at ``pos`` when the byte before it is a newline
    size = min(1 << 20, max(512, 2 * hint))
    while p < end:
        chunk = os.pread(fd, min(size, end - p), p)
        if not chunk:
            return end
        k = chunk.find(b"\n")
        if k >= 0:
            return p + k + 1
        p += len(chunk)
    return end


def _step_start(fd: int, pos: int, end: int, hint: int, max_line: int) -> int:
    """The start of the first line at or after ``pos`` whose step differs from the line before it.

    Only complete lines are passed: a last line without its newline is never skipped.
    """
    p = _next_start(fd, pos, end, hint)
    if p == 0:
        return 0
    lead: Any = _UNSET
    while p < end:
        nxt, line = _line_at(fd, p, end, hint, max_line)
        if nxt >= end and (line is None or os.pread(fd, 1, nxt - 1) != b"\n"):
            return p  # no newline before the end: the line is not complete
        step = _sniff(line)[1] if line is not None else None
        if lead is not _UNSET and (step is None or step != lead):
            return p
        lead = step
        p = nxt
    return p


def open_sampled(tail: "FileTail", fd: int, size: int, plan: Sampling, res: "TailResult",
                 sink: Callable[[list[dict[str, Any]], list[Problem]], None] | None, chunk_bytes: int) -> Sampled:
    """Read the evenly spaced groups of ``[0, head_end)`` of a new tail; leaves ``tail.offset`` at ``head_end``.

    Records and problems go to ``sink`` (or ``res``) as ``FileTail._feed`` makes them, in file
    order, about ``chunk_bytes`` of lines at a time; problems name byte offsets (line numbers
    before ``head_end`` are not known yet).
    """
    # The end of the file tells the line size and the kinds of one group.
    p0 = max(0, size - _PROBE)
    probe = os.pread(fd, size - p0, p0)
    first = 0 if p0 == 0 else probe.find(b"\n") + 1
    last = probe.rfind(b"\n")
    region = probe[first:last] if 0 <= first <= last else b""
    lines = [ln for ln in region.split(b"\n") if ln.strip()] if region else []
    avg = max(1, len(region) // len(lines)) if lines else max(1, len(probe))
    kinds = tuple(dict.fromkeys(k for k in map(_kind_of, lines) if k and k != KIND_FINDING)) or ("?",)
    group = avg * len(kinds)
    budget = plan.bytes
    tail_bytes = min(budget // 8, plan.rows * group)
    head_end = _step_start(fd, max(0, size - tail_bytes), size, avg, tail.max_line)
    k = max(1, min(plan.rows, (budget - tail_bytes) // max(1, group)))
    info = Sampled(tail.rel, size, head_end, kinds=kinds, est_lines=head_end // avg)
    # The groups' lines are parsed and handed on together, as a file read in full is: the
    # histograms of many lines in one go, and records listing the same layers into their table
    # at once (one group at a time, the first read of this run took a fifth longer).
    batch: list[bytes] = []
    batch_starts: list[int] = []
    batched = 0

    def flush() -> None:
        nonlocal batched
        if batch:
            _feed_lines(tail, batch, batch_starts, res)
            batch.clear()
            batch_starts.clear()
            batched = 0
        if sink is not None and (res.records or res.problems):
            sink(res.records, res.problems)
            res.records, res.problems = [], []

    pos = 0
    for i in range(k):
        at = max(pos, head_end * i // k)
        if at >= head_end:
            break
        start = _next_start(fd, at, head_end, avg)
        # A group is the lines of one step: past the step the offset fell into, up to the next step.
        lead: Any = _UNSET if start else None
        step_of: Any = _UNSET
        seen: set[str] = set()
        chunk: list[bytes] = []
        starts: list[int] = []
        p = start
        while p < head_end and len(chunk) < _GROUP_MAX:
            nxt, line = _line_at(fd, p, head_end, avg, tail.max_line)
            if line is None:
                if nxt - p > tail.max_line:
                    flush()  # the problems in file order
                    res.problems.append(Problem(tail.rel, 0, f"the line at byte {p}: longer than {tail.max_line} "
                                                "bytes; skipped"))
                p = nxt
                continue
            kind, step = _sniff(line)
            if lead is not None:
                if lead is _UNSET or (step is not None and step == lead):
                    lead = step if lead is _UNSET else lead
                    p = nxt
                    continue
                lead = None
            if chunk and (step != step_of or (kind in seen and kind != KIND_FINDING)):
                break
            step_of = step
            seen.add(kind)
            chunk.append(line)
            starts.append(p)
            p = nxt
        pos = p
        if chunk:
            info.groups += 1
            info.lines += len(chunk)
            info.taken.update(starts)
            batch.extend(chunk)
            batch_starts.extend(starts)
            batched += sum(map(len, chunk))
            if batched >= chunk_bytes:
                flush()
    flush()
    tail.offset = head_end
    tail.lineno = 0  # lines after head_end, counted from there until the search has counted those before
    return info


def _feed_apart(tail: "FileTail", data: bytes, lineno: int, res: "TailResult") -> None:
    """``tail._feed`` of complete lines from elsewhere in the file, numbered from ``lineno + 1``.

    The live tail's own state stays as it was: its line count, and the partial last line a
    writer is part-way through (which the lines fed here must not be glued to).
    """
    saved = tail.lineno, tail._partial, tail._skipping
    tail.lineno, tail._partial, tail._skipping = lineno, bytearray(), False
    try:
        tail._feed(data, res)
    finally:
        tail.lineno, tail._partial, tail._skipping = saved


def _feed_lines(tail: "FileTail", lines: list[bytes], starts: list[int], res: "TailResult") -> None:
    """Parse ``lines`` through ``tail._feed`` and name each problem by the byte offset of its line."""
    n_rec, n_prob = len(res.records), len(res.problems)
    _feed_apart(tail, b"\n".join(lines) + b"\n", 0, res)
    for rec in res.records[n_rec:]:
        rec["_line"] = 0
    res.problems[n_prob:] = [Problem(p.file, 0, f"the line at byte {starts[p.line - 1]}: {p.message}")
                             if 0 < p.line <= len(starts) else p for p in res.problems[n_prob:]]


def renumber(info: Sampled, res_records: list[dict[str, Any]], problems: list[Problem]) -> list[Problem]:
    """Records and problems of lines after ``head_end`` while the lines before it are not counted yet.

    Their line numbers count from ``head_end``: a problem says so, a record's ``_line`` becomes 0.
    """
    for rec in res_records:
        rec["_line"] = 0
    return [Problem(p.file, 0, f"line {p.line} after byte {info.head_end}: {p.message}") if p.line else p
            for p in problems]


def scan(tail: "FileTail", info: Sampled, fd: int, step: int, res: "TailResult") -> None:
    """Search the next ``step`` bytes of ``[0, head_end)`` for findings and non-finite scalars.

    The lines found (not already read in a group) are parsed through ``tail._feed``; only
    ``finding`` and ``scalars`` records are kept. Lines are counted on the way; once the whole
    part is searched, ``tail.lineno`` becomes the true line number.
    """
    end = min(info.head_end, info.scanned + step)
    pos = info.scanned
    size = min(4 << 20, max(4096, step))
    while pos < end:
        data = os.pread(fd, min(size, info.head_end - pos), pos)
        if not data:
            break
        if pos + len(data) < info.head_end:
            cut = data.rfind(b"\n") + 1
            if cut == 0 and size <= 2 * tail.max_line:  # a line longer than the piece: a larger piece
                size *= 2
                continue
            data = data[:cut] if cut else data
        hits: set[int] = set()
        for marker in _MARKERS:
            i = data.find(marker)
            while i >= 0:
                s = data.rfind(b"\n", 0, i) + 1
                if pos + s not in info.taken:
                    hits.add(s)
                e = data.find(b"\n", i)
                i = data.find(marker, e if e >= 0 else len(data))
        lineno, counted = info.lines_before + 1, 0  # the line number at ``counted``, counted on from hit to hit
        for s in sorted(hits):
            e = data.find(b"\n", s)
            e = len(data) if e < 0 else e
            lineno += data.count(b"\n", counted, s)
            counted = s
            if e - s > tail.max_line:
                continue
            n_rec = len(res.records)
            _feed_apart(tail, data[s:e] + b"\n", lineno - 1, res)
            kept = [r for r in res.records[n_rec:] if r.get("kind") in _SCAN_KINDS]
            res.records[n_rec:] = kept
            info.found += len(kept)
        info.lines_before += data.count(b"\n")
        pos += len(data)
        info.scanned = pos
    if info.searched:
        info.est_lines = info.lines_before
        tail.lineno += info.lines_before
