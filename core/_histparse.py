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
when a few more vectorised passes over the same bytes prove them (blanks removed) to be
exactly what orjson writes for the array read from them (``int_rows``; no array is written
out again to compare). Anything else takes the plain path (orjson over the whole line), so
what a record means and how a bad one is reported (orjson's message included) never depend
on this module: floats, negative counts, empty or ragged rows, larger numbers, a ``"hist"``
that is not the top-level key (the sentinel must come back as the top-level ``hist``: not
for a nested key, nor for a duplicate one that orjson lets win), a line that already holds
the sentinel's digits, a line that is not valid JSON.
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
_OPEN, _CLOSE, _ZERO, _COLON, _COMMA, _NEWLINE = b"[]0:,\n"
_POW10 = 10 ** np.arange(19, dtype=np.int64)
_PAD = b"\n" * 16
_DIGIT_BLANK_DIGIT = re.compile(rb"[0-9][ \t\r\n]+[0-9]")  # "1 2" is no JSON, though "12" is
# The eight bytes from two before a bracket as a little-endian integer (bits 0-7: two before,
# 8-15: one before, 16-23: the bracket, 24-31: one after, 32-39: two after): masks and values
# for the places a canonical span puts one. A "digit" is a byte 0x30-0x3f there (one of those
# that is not a digit is neither digit nor comma itself, and fails its span where it stands).
_NEAR = 0xFFFFFF00  # one before to one after
_FROM_BEFORE2 = 0xF0FFFFFF  # two before to one after, a digit's high half
_TO_AFTER2 = 0xFFFFFFF000  # one before, a digit's high half, to two after
_SPAN_OPEN = 0x5B5B0A00  # "\n" "[" "[": the span's first byte
_SPAN_CLOSE = 0x0A5D5D00  # "]" "]" "\n": its last
_FIRST_ROW = 0x305B5B0A  # "\n" "[" "[" digit: the first row's "["
_ROW = 0x305B2C5D  # "]" "," "[" digit: any other row's
_ROW_END = 0x5B2C5D3000  # digit "]" "," "[": a row's end, more rows after
_LAST_ROW_END = 0x0A5D5D3000  # digit "]" "]" "\n": the last row's
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


def _in_span(begin: np.ndarray, at: np.ndarray) -> list[int]:
    """The indices of the spans the positions ``at`` (each inside a span) lie in."""
    return (np.searchsorted(begin, at, "right") - 1).tolist()


def _nonzero(mask: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(mask)`` for a bool ``mask`` of a length divisible by 8, mostly False: 8 bytes at a time."""
    words = mask.view(np.uint64)
    hit = np.flatnonzero(words != 0)
    at = np.flatnonzero(words.take(hit).view(np.bool_))
    return (hit.take(at >> 3) << 3) | (at & 7)


def _structure(joined: bytes, s: np.ndarray, d: np.ndarray, begin: np.ndarray, sizes: np.ndarray, numbers: int,
               scratch: np.ndarray) -> tuple[set[int], np.ndarray]:
    """The spans of the joined buffer that are not ``[[n,...],...,[n,...]]``, and where rows end.

    ``s`` is ``joined`` as bytes, ``d`` marks its digits, ``numbers`` is how many runs of digits it
    holds, ``scratch`` is memory for two bool arrays as long as ``s``. A span is kept when (1) its
    bytes are digits, ``,``, ``[`` and ``]``; (2) each bracket stands where the shape puts one: the
    span's first two bytes (a digit after), a row's ``[`` after ``],`` (a digit after), a row's
    ``]`` after a digit (then ``,[``, or ``]`` and the span's end), the span's last byte; (3) no
    ``,,``; (4) no ``0`` that begins a number is followed by a digit. Then after a number comes
    ``,`` or ``]`` (a ``[`` there breaks (2)), after ``,`` a number (``,,`` breaks (3); ``,]``, and
    ``,[`` not after ``]``, break (2)), after ``]`` comes ``,[`` then a number, or the span's end:
    the span is numbers in that shape, without leading zeros. Row and number lengths are the caller's.

    Returns:
        The indices of the failing spans, and the positions of the ``]`` that end a row, in order.
    """
    bad: set[int] = set()
    n = len(s)
    com, mask = scratch[:n], scratch[n:]
    np.equal(s, np.uint8(_COMMA), out=com)
    # (1) and (2) at the bytes that are neither digits nor commas: the brackets, the newlines
    # between the spans (all the bytes outside them but the padding, so any one more is in a
    # span) and any other byte, which is in a span and stands nowhere a bracket may.
    np.equal(d, com, out=mask)  # never both: equal where neither
    mask[:begin[0] - 1] = False
    mask[begin[-1] + sizes[-1] + 1:] = False
    rest = _nonzero(mask)
    # The eight bytes from two before each (an index, not take, which would copy the whole view first).
    around = np.ndarray((n - 7,), "<u8", joined, 0, (1,))[rest - 2]
    newline = (around & 0xFF0000) == 0x0A0000
    if np.count_nonzero(newline) != len(begin) + 1:
        at = rest[newline]
        p = np.searchsorted(begin, at, "right") - 1
        bad.update(p[(p >= 0) & (at < (begin + sizes).take(np.maximum(p, 0)))].tolist())
    near = around & _NEAR
    row_end = around & _TO_AFTER2
    first = around & _FROM_BEFORE2
    row_end = (row_end == _ROW_END) | (row_end == _LAST_ROW_END)
    placed = (first == _FIRST_ROW) | (first == _ROW) | (near == _SPAN_OPEN) | (near == _SPAN_CLOSE) | row_end
    placed |= newline
    if not placed.all():
        bad.update(_in_span(begin, rest[~placed]))
    # (3) With (1) and (2), the bytes between two numbers of a span are "],[" or commas, so a span
    # holds at least one comma fewer than numbers, and exactly that many without ",,".
    if bad or np.count_nonzero(com) != numbers - len(begin):
        pair = mask[:-1]
        np.bitwise_and(com[:-1], com[1:], out=pair)
        bad.update(_in_span(begin, np.flatnonzero(pair)))
    # (4) A "0" before a digit, after no digit.
    lead = mask[1:-1]
    np.equal(s[1:-1], np.uint8(_ZERO), out=lead)
    lead &= d[2:]
    np.greater(lead.view(np.uint8), d[:-2].view(np.uint8), out=lead)
    if lead.any():
        bad.update(_in_span(begin, np.flatnonzero(lead) + 1))
    return bad, rest[row_end]


def int_rows(spans: Sequence[tuple[Buffer, int, int]], compact: bool = False) -> list[np.ndarray | None]:
    """For each ``(buf, lo, hi)``, the ``int64`` array ``[row, column]`` the JSON text ``buf[lo:hi]`` spells, or None.

    None unless that text is in the canonical shape (the module docstring). Blanks are
    allowed only with ``compact`` (they are removed first, and a span with a blank between
    two digits is None); without it, a span holding one is None. ``loads_lines`` tries the
    spans that failed again with ``compact``.

    The numbers are read as if the text were canonical, with a few vectorised passes over the
    bytes of all the spans together, and a few more over the same bytes prove that it is: the
    span is ``[[n,...],...,[n,...]]`` without leading zeros (``_structure``), its rows are of one
    length, and every number has at most 19 digits and reads as non-negative (the reading is
    exact modulo 2**64, so that is a number below 2**63, read exactly). Such a text is what
    orjson writes for the array read, byte for byte, without writing it; any other span is
    None. The passes run over all the spans at once, and the positions that break the proof
    are mapped to their spans with ``np.searchsorted`` over the spans' starts.
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
    # One buffer: _PAD bytes, then the spans each followed by a newline, then 7 to 14 newlines more,
    # to a length divisible by 8 (for _nonzero). The padding keeps every position read below (up to
    # 19 bytes before a number's last digit, from 2 before to 5 after a bracket or the newline
    # before or after a span) inside the buffer.
    sizes = np.fromiter(map(len, parts), np.int64, len(parts))
    tail = 8 + (-(len(_PAD) + int(sizes.sum()) + len(parts)) % 8)
    joined = b"\n".join([_PAD, *parts, b"\n" * (tail - 1)])
    s = np.frombuffer(joined, np.uint8)
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
    bad: set[int] = set()
    wide = None
    for k in range(1, 5):
        if more is None or not more.any():
            break
        if k == 4:  # more: the numbers of 17 digits or more
            wide = more & d.take(ends - 17) & d.take(ends - 18) & d.take(ends - 19)  # 20 or more
        counts += quad.take(ends - 4 * k) * more * _POW10[4 * k]
        more &= run4.take(ends - 4 * k - 4)
    if wide is not None:
        # Of 19 digits, counts holds the number modulo 2**64 as an int64: negative when it is 2**63 or more.
        wide |= counts < 0
        if wide.any():
            bad.update(_in_span(begin, ends[wide]))
    # quad's memory, read and done with, for the proof's two bool arrays: fresh memory costs page faults.
    shape_bad, row_ends = _structure(joined, s, d, begin, sizes, len(ends), quad.view(np.bool_))
    bad |= shape_bad
    first = np.searchsorted(ends, begin)
    n_numbers = np.diff(first, append=len(ends))
    # Rows of one length w: the last number of each span's row r is its number (r + 1) * w, the one
    # that ends just before the row's "]". w: the numbers before the span's first "]".
    row0 = np.searchsorted(row_ends, begin)
    rows = np.diff(row0, append=len(row_ends))
    bins = np.zeros(len(parts), np.int64)
    has = rows > 0
    bins[has] = np.searchsorted(ends, row_ends.take(row0[has])) - first[has]
    span = np.repeat(np.arange(len(parts)), rows)
    last = np.arange(1, len(row_ends) + 1) - row0.take(span)
    last *= bins.take(span)
    last += first.take(span) - 1
    ragged = ends.take(np.clip(last, 0, len(ends) - 1)) != row_ends - 1
    if ragged.any():
        bad.update(span[ragged].tolist())
    for p, (f, c, w) in enumerate(zip(first.tolist(), n_numbers.tolist(), bins.tolist())):
        if w < 1 or c % w or p in bad:
            continue
        out[which[p]] = counts[f: f + c].reshape(c // w, w)
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
