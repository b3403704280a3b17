"""Parsing record lines whose ``hist`` field is read by numpy instead of orjson.

A layer record carries ``len(layers) x bins`` histogram counts (6,400 integers for 100
layers of 64 bins). orjson turns each into a Python int, ``numpy.asarray`` walks those
lists again, and freeing them walks them a third time: most of the time of such a line.
``loads_lines`` finds each line's top-level ``"hist": [[...], ...]`` span in the raw
bytes, checks and converts the spans of all the lines it is given together, in a few
vectorised passes over ``numpy.frombuffer`` (so numpy's per-call cost is paid once per
chunk, not once per line), and hands the rest of each line to orjson with a sentinel
integer where the span was. What it returns for a line is the dict orjson gives for the
whole line, with ``hist`` as an ``int64`` array ``[name, bin]`` instead of lists.

The numpy path takes only the canonical shape: one array of equal-length, non-empty arrays
of non-negative integers of at most 18 digits without leading zeros, blanks allowed between
tokens but not between the closing brackets. Anything else takes the plain path (orjson over
the whole line), so what a record means and how a bad one is reported (orjson's message
included) never depend on this module: floats, negative counts, empty or ragged rows, longer
numbers, a ``"hist"`` that is not the top-level key (the sentinel must come back as the
top-level ``hist``: not for a nested key, nor for a duplicate one that orjson lets win), a
line that already holds the sentinel's digits, a line that is not valid JSON.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np
import orjson

__all__ = ["loads_lines", "int_rows"]

Buffer = Union[bytes, bytearray]

_KEY = b'"hist"'
# An integer has one JSON spelling, so a line whose top-level ``hist`` is this number after the
# swap got it from the swap, unless the line held these digits already (then: the plain path).
_SENTINEL = 7357111222333444919
_SENTINEL_BYTES = str(_SENTINEL).encode()
_BLANKS = b" \t\r\n"
_BLANK_BYTES = tuple(bytes([c]) for c in _BLANKS)
_COMMA, _OPEN, _CLOSE, _ZERO, _COLON = b",[]0:"
_POW10 = 10 ** np.arange(19, dtype=np.int64)
# Spans converted together: enough to pay numpy's per-call cost once for several lines, few
# enough that the passes over them stay in the processor's cache.
_GROUP_BYTES = 1 << 17
_MAX_DIGITS = 18  # 18 digits always fit int64; longer numbers take the plain path (and its errors)


def _hist_span(buf: Buffer, lo: int, hi: int) -> tuple[int, int] | None:
    """``(a, b)``: the bytes ``buf[a:b]`` from the ``[`` after the first ``"hist":`` to the first ``]]``."""
    k = buf.find(_KEY, lo, hi)
    if k < 0:
        return None
    i = k + len(_KEY)
    while i < hi and buf[i] in _BLANKS:
        i += 1
    if i >= hi or buf[i] != _COLON:
        return None
    i += 1
    while i < hi and buf[i] in _BLANKS:
        i += 1
    if i >= hi or buf[i] != _OPEN:
        return None
    e = buf.find(b"]]", i, hi)
    return None if e < 0 else (i, e + 2)


def _has_blank(buf: Buffer, lo: int, hi: int) -> bool:
    return any(buf.find(c, lo, hi) >= 0 for c in _BLANK_BYTES)


def int_rows(spans: Sequence[tuple[Buffer, int, int]], compact: bool = False) -> list[np.ndarray | None]:
    """For each ``(buf, lo, hi)``, the ``int64`` array ``[row, column]`` the JSON text ``buf[lo:hi]`` spells, or None.

    None unless that text is in the canonical shape (the module docstring). Blanks are
    allowed only with ``compact`` (they are removed first); without it, a span holding one
    is None. ``loads_lines`` tries the spans that failed again with ``compact``.
    """
    out: list[np.ndarray | None] = [None] * len(spans)
    parts, which = [], []
    for j, (buf, lo, hi) in enumerate(spans):
        part = buf[lo:hi]
        if compact:
            part = bytes(part).translate(None, _BLANKS)
        if len(part) >= 5 and part[0] == part[1] == _OPEN and part[-1] == part[-2] == _CLOSE:
            parts.append(part)
            which.append(j)
    if not parts:
        return out
    sizes = np.fromiter(map(len, parts), np.int64, len(parts))
    begin = np.zeros(len(parts), np.int64)
    np.cumsum(sizes[:-1], out=begin[1:])
    s = np.frombuffer(b"".join(parts), np.uint8)
    d = (s - np.uint8(_ZERO)) < 10
    # Every span opens and closes with brackets, so digit runs start and end in turn where the
    # digit mask changes: even changes start a number, odd ones end it.
    change = np.flatnonzero(d[1:] != d[:-1])
    starts, ends = change[0::2] + 1, change[1::2]
    span = np.searchsorted(begin, starts, side="right") - 1  # the span of each number
    count = np.bincount(span, minlength=len(parts))
    first = np.zeros(len(parts), np.int64)  # index of each span's first number
    np.cumsum(count[:-1], out=first[1:])
    bad = count == 0
    lens = ends - starts + 1
    lead_zero = (s[starts] == _ZERO) & (lens > 1)
    bad[span[(lens > _MAX_DIGITS) | lead_zero]] = True
    has = ~bad
    bad[has] |= (starts[first[has]] != begin[has] + 2) | (ends[first[has] + count[has] - 1] != begin[has] + sizes[has] - 3)
    # Between two numbers of a span lies exactly "," (within a row) or "],[" (between rows);
    # with "[[" before a span's first number and "]]" after its last, every byte is accounted for.
    same = span[1:] == span[:-1]
    gap = starts[1:] - ends[:-1]
    after = ends[:-1] + 1
    comma = gap == 2
    brk = same & (gap == 4)
    sep_ok = np.where(comma, s[after] == _COMMA, True)
    sep_ok &= np.where(brk, (s[after] == _CLOSE) & (s[np.minimum(after + 1, len(s) - 1)] == _COMMA)
                       & (s[np.minimum(after + 2, len(s) - 1)] == _OPEN), True)
    bad[span[:-1][same & ~((comma | brk) & sep_ok)]] = True
    # Rows of equal length: every break falls on a multiple of the span's row length.
    at = np.flatnonzero(brk)
    rows = 1 + np.bincount(span[at], minlength=len(parts))
    bins = np.where(rows > 0, count // rows, 0)
    bad |= bins * rows != count
    local = at + 1 - first[span[at]]
    bad[span[at][local % np.maximum(bins[span[at]], 1) != 0]] = True
    # Each number's value from its digits, right to left: one pass per digit position; past a
    # number's first digit the index stops at the byte before it (a separator, worth 0).
    width = int(min(lens.max(), _MAX_DIGITS)) if len(lens) else 1
    digit = (s - np.uint8(_ZERO)) * d
    wide = np.int64 if width > 9 else np.int32
    counts = digit[ends].astype(wide)
    stop = starts - 1
    for k in range(1, width):
        counts += digit[np.maximum(ends - k, stop)] * wide(_POW10[k])
    counts = counts.astype(np.int64, copy=False)
    for p in np.flatnonzero(~bad).tolist():
        f, n = int(first[p]), int(count[p])
        out[which[p]] = counts[f: f + n].reshape(int(rows[p]), int(bins[p]))
    return out


def loads_lines(lines: Sequence[tuple[Buffer, int, int]]) -> list[Any]:
    """``orjson.loads(buf[lo:hi])`` for each ``(buf, lo, hi)``, a canonical top-level ``hist`` read as an int64 array.

    Returns:
        For each line, what orjson returns for it, or the ``orjson.JSONDecodeError`` it
        raises (the same message as for the line as written).
    """
    spans = [_hist_span(buf, lo, hi) for buf, lo, hi in lines]
    todo = [j for j, sp in enumerate(spans) if sp is not None]
    parsed: dict[int, np.ndarray | None] = {}
    group: list[int] = []
    size = 0
    for j in todo + [-1]:
        if j < 0 or (group and size + spans[j][1] - spans[j][0] > _GROUP_BYTES):
            got = int_rows([(lines[g][0], *spans[g]) for g in group])
            # Blanks between tokens (``json.dumps`` writes ", "): the failed spans again, without them.
            again = [g for g, c in zip(group, got) if c is None and _has_blank(lines[g][0], *spans[g])]
            parsed.update(zip(group, got))
            if again:
                parsed.update(zip(again, int_rows([(lines[g][0], *spans[g]) for g in again], compact=True)))
            group, size = [], 0
        if j >= 0:
            group.append(j)
            size += spans[j][1] - spans[j][0]
    out: list[Any] = []
    for j, (buf, lo, hi) in enumerate(lines):
        counts = parsed.get(j)
        obj: Any = None
        a, b = spans[j] or (hi, hi)
        # The span holds no 19-digit number: only the bytes around it can hold the sentinel.
        if counts is not None and buf.find(_SENTINEL_BYTES, lo, a) < 0 and buf.find(_SENTINEL_BYTES, b, hi) < 0:
            try:
                obj = orjson.loads(b"".join((buf[lo:a], _SENTINEL_BYTES, buf[b:hi])))
            except orjson.JSONDecodeError:
                obj = None  # the line is bad elsewhere: the plain parse below reports it as written
            else:
                if type(obj) is dict and type(obj.get("hist")) is int and obj["hist"] == _SENTINEL:
                    obj["hist"] = counts
                else:
                    obj = None
        if obj is None:
            try:
                obj = orjson.loads(memoryview(buf)[lo:hi])
            except orjson.JSONDecodeError as err:
                obj = err
        out.append(obj)
    return out
