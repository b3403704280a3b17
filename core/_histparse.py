"""Parsing record lines whose ``hist`` field is read by numpy instead of orjson.

A layer record carries ``len(layers) x bins`` histogram counts (6,400 integers for 100
layers of 64 bins). orjson turns each into a Python int, ``numpy.asarray`` walks those
lists again, and freeing them walks them a third time: most of the time of such a line.
``loads_lines`` finds each line's top-level ``"hist": [[...], ...]`` span in the raw
bytes, reads the spans of all the lines it is given together, in a few vectorised passes
over ``numpy.frombuffer`` (so numpy's per-call cost is paid once per group of lines, not
once per line), and hands the rest of each line to orjson with a sentinel integer where
the span was. What it returns for a line is the dict orjson gives for the whole line, with
``hist`` as an ``int64`` array ``[name, bin]`` instead of lists.

The numpy path takes only the canonical shape: one array of equal-length, non-empty arrays
of non-negative integers that fit ``int64``, spelt as orjson writes them (no leading zeros),
blanks allowed between tokens but not between the closing brackets. A span is taken only
when orjson, writing the array read from it, gives back its very bytes (blanks removed).
Anything else takes the plain path (orjson over the whole line), so what a record means
and how a bad one is reported (orjson's message included) never depend on this module:
floats, negative counts, empty or ragged rows, larger numbers, a ``"hist"`` that is not the
top-level key (the sentinel must come back as the top-level ``hist``: not for a nested key,
nor for a duplicate one that orjson lets win), a line that already holds the sentinel's
digits, a line that is not valid JSON.
"""

from __future__ import annotations

import re
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
_OPEN, _CLOSE, _ZERO, _COLON = b"[]0:"
_POW10 = 10 ** np.arange(19, dtype=np.int64)
_PAD = b"\n" * 16
_DIGIT_BLANK_DIGIT = re.compile(rb"[0-9][ \t\r\n]+[0-9]")  # "1 2" is no JSON, though "12" is
# Spans converted together: enough to pay numpy's per-call cost once for several lines, few
# enough that the passes over them stay in the processor's cache.
_GROUP_BYTES = 1 << 19


def _hist_span(buf: Buffer, lo: int, hi: int) -> tuple[int, int] | None:
    """``(a, b)``: the bytes ``buf[a:b]`` from the ``[`` after the first ``"hist":`` to the line's last ``]]``.

    The counts are the last field writers put in a line, so the span ends near the end: found
    from there, the ``]]`` costs no scan of the counts. When something after the counts holds
    ``]]`` too, the span holds more than the counts, is not in the canonical shape and the
    line takes the plain path.
    """
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
    e = buf.rfind(b"]]", i, hi)
    return None if e < 0 else (i, e + 2)


def _has_blank(buf: Buffer, lo: int, hi: int) -> bool:
    return any(buf.find(c, lo, hi) >= 0 for c in _BLANK_BYTES)


def int_rows(spans: Sequence[tuple[Buffer, int, int]], compact: bool = False) -> list[np.ndarray | None]:
    """For each ``(buf, lo, hi)``, the ``int64`` array ``[row, column]`` the JSON text ``buf[lo:hi]`` spells, or None.

    None unless that text is in the canonical shape (the module docstring). Blanks are
    allowed only with ``compact`` (they are removed first, and a span with a blank between
    two digits is None); without it, a span holding one is None. ``loads_lines`` tries the
    spans that failed again with ``compact``.

    The numbers are read as if the text were canonical, with a few vectorised passes over the
    bytes of all the spans together, and the text is then checked against what orjson writes
    for the array read: equal bytes mean the text is the canonical spelling of exactly those
    numbers, whatever it held, so the reading itself needs no checks.
    """
    out: list[np.ndarray | None] = [None] * len(spans)
    parts: list[Buffer | memoryview] = []
    which: list[int] = []
    for j, (buf, lo, hi) in enumerate(spans):
        part: Buffer | memoryview = memoryview(buf)[lo:hi]
        if compact:
            if _DIGIT_BLANK_DIGIT.search(buf, lo, hi):
                continue
            part = bytes(part).translate(None, _BLANKS)
        if len(part) >= 5 and part[0] == part[1] == _OPEN and part[-1] == part[-2] == _CLOSE:
            parts.append(part)
            which.append(j)
    if not parts:
        return out
    # One buffer: _PAD bytes, then the spans each followed by a newline. The padding keeps every
    # position read below (up to 16 bytes before a number's last digit) inside the buffer.
    joined = b"\n".join([_PAD, *parts, b""])
    s = np.frombuffer(joined, np.uint8)
    sizes = np.fromiter(map(len, parts), np.int64, len(parts))
    begin = np.empty(len(parts), np.int64)
    begin[0] = len(_PAD) + 1
    np.cumsum(sizes[:-1] + 1, out=begin[1:])
    begin[1:] += begin[0]
    dv = s - np.uint8(_ZERO)
    d = dv < 10  # digits
    dv *= d
    run2 = d[1:] & d[:-1]  # run2[i]: bytes i and i + 1 are digits
    run4 = run2[2:] & run2[:-2]  # run4[i]: bytes i to i + 3 are digits
    # quad[i]: the value of the last four digits (at most) of the digits ending at byte i, a digit.
    pair = dv[1:] + dv[:-1] * np.uint8(10)  # pair[i]: bytes i and i + 1 as a number, for a digit at i + 1
    quad = np.zeros(len(s), np.uint16)
    quad[1:] = pair
    quad[0] = dv[0]
    quad[3:] += (pair[:-2] * run2[1:-1]).astype(np.uint16) * np.uint16(100)
    ends = np.flatnonzero(d[:-1] > d[1:])  # the last digit of each number
    counts = quad.take(ends).astype(np.int64)
    # Numbers of more than four digits: four more from quad four bytes back, while the digits go on.
    # Most histograms have none (no five digits in a row), and looking costs less than the gather.
    more = run4.take(ends - 4) if (run4[1:] & run4[:-1]).any() else None
    for k in range(1, 5):
        if more is None or not more.any():
            break
        counts += quad.take(ends - 4 * k) * more * _POW10[4 * k]
        more &= run4.take(ends - 4 * k - 4)
    first = np.searchsorted(ends, begin)
    n_numbers = np.diff(first, append=len(ends))
    # The numbers of a span's first row: those that end before its first "]".
    bins = np.searchsorted(ends, [joined.find(b"]", b) for b in begin.tolist()]) - first
    for p, (f, c, w) in enumerate(zip(first.tolist(), n_numbers.tolist(), bins.tolist())):
        if w < 1 or c % w:
            continue
        arr = counts[f: f + c].reshape(c // w, w)
        text = orjson.dumps(arr, option=orjson.OPT_SERIALIZE_NUMPY)
        if len(text) == len(parts[p]) and joined.startswith(text, int(begin[p])):
            out[which[p]] = arr
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
        # The span is cut out: only the bytes around it could hold the sentinel's digits.
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
