"""core._histparse: histogram counts read from the raw bytes give exactly what orjson gives, and anything else takes orjson's path."""

from __future__ import annotations

import json
import re

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core._histparse import _SENTINEL, int_rows, loads_lines


def _one(line: bytes):
    return loads_lines([(line, 0, len(line))])[0]


def _same_as_orjson(line: bytes) -> None:
    _assert_as_orjson(_one(line), line)


def _assert_as_orjson(got, line: bytes) -> None:
    """``got`` (what ``loads_lines`` gave for ``line``) is what orjson gives, ``hist`` maybe as an int64 array."""
    try:
        want = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        assert isinstance(got, orjson.JSONDecodeError) and str(got) == str(err)
        return
    assert not isinstance(got, orjson.JSONDecodeError)
    assert list(got) == list(want)
    for k, v in want.items():
        if k == "hist" and isinstance(got[k], np.ndarray):
            assert got[k].dtype == np.int64 and got[k].tolist() == v
        else:
            assert got[k] == v and type(got[k]) is type(v)


def _rec(hist_text: str, **extra) -> bytes:
    return ('{"kind": "acts", "step": 3, "layers": ["a", "b"], "hist_lo": [0, 0], "hist_hi": [1, 1], '
            f'"hist": {hist_text}' + "".join(f', "{k}": {json.dumps(v)}' for k, v in extra.items()) + "}").encode()


@pytest.mark.parametrize("text", [
    "[[0,1,2],[3,4,5]]", "[[1, 2], [3, 4]]", "[ [ 1 ,2 ] , [3,\t4] ]", "[[0]]", "[[999999999999999999]]",
    "[[123456789012,5],[0,0]]", "[[7],[8],[9]]",
])
def test_canonical_counts_are_read_as_int64_arrays_equal_to_orjsons(text):
    line = _rec(text)
    got = _one(line)
    if "] ]" not in text:
        assert isinstance(got["hist"], np.ndarray)
    _same_as_orjson(line)


@pytest.mark.parametrize("text", [
    "[[1,2],[3]]", "[[]]", "[]", "[[1.5,2]]", "[[1e3,2]]", "[[-1,2]]", "[[01,2]]", "[[1,,2]]", "[[1,2],]",
    "[[1,2]3]", "[[1,2],[3,4]", "[[1234567890123456789]]", "[[99999999999999999999]]", "[[1,2]]5", "[[1,2]].5",
    "[[1,2] ]", "[[true]]", "[[1,2],[3,null]]", '[["1"]]', "[[1],[2]],[[3]]", "[[1]]]",
    "[[1 2]]", "[[1,2],[3 4]]", "[[9223372036854775808]]", "[[18446744073709551616]]", "[[1,2]],[[3,4]]",
    "[[1,\u0032]]", "[[1,2],[3,4]]x]]", "[[1,2]]]]", "[[[1,2]]]", "[[1],[2,3]]",
])
def test_anything_else_gives_exactly_what_orjson_gives(text):
    _same_as_orjson(_rec(text))


def test_a_nested_or_duplicate_hist_key_is_left_to_orjson():
    _same_as_orjson(b'{"kind": "acts", "step": 1, "x": {"hist": [[1, 2]]}, "hist": [[3, 4]]}')
    _same_as_orjson(b'{"kind": "acts", "step": 1, "hist": [[1, 2]], "hist": [[3, 4]]}')
    _same_as_orjson(b'{"kind": "acts", "step": 1, "x": {"hist": [[1, 2]]}}')
    _same_as_orjson(b'{"kind": "acts", "step": 1, "h\\u0069st": [[5]], "hist": [[1, 2]]}')
    _same_as_orjson(b'{"kind": "acts", "step": 1, "name": "\\"hist\\": [[1]]", "hist": [[2]]}')


def test_a_line_holding_the_sentinel_takes_the_plain_path():
    line = _rec("[[1,2],[3,4]]", x=_SENTINEL)
    got = _one(line)
    assert got["hist"] == [[1, 2], [3, 4]] and got["x"] == _SENTINEL
    _same_as_orjson(_rec(str(_SENTINEL)))


def test_invalid_json_elsewhere_is_reported_with_orjsons_message_for_the_line_as_written():
    for line in (_rec("[[1,2],[3,4]]")[:-1] + b",}", _rec("[[1,2],[3,4]]").replace(b'"a"', b"NaN"),
                 b'{"hist": [[1]], "x": Infinity}'):
        _same_as_orjson(line)
        assert isinstance(_one(line), orjson.JSONDecodeError)


def test_many_lines_at_once_give_each_its_own_result_in_order():
    rng = np.random.default_rng(0)
    lines, wants, negative = [], [], []
    for i in range(40):
        h = rng.integers(0, 10 ** rng.integers(1, 12), size=(3, 5))
        text = json.dumps(h.tolist()) if i % 3 else orjson.dumps(h.tolist()).decode()
        if i % 7 == 0:
            text = text.replace("[[", "[[-", 1)
        line = _rec(text)
        lines.append(line)
        wants.append(orjson.loads(line))
        negative.append("-" in text)
    buf = b"\n".join(lines)
    spans, at = [], 0
    for line in lines:
        spans.append((buf, at, at + len(line)))
        at += len(line) + 1
    for got, want, neg in zip(loads_lines(spans), wants, negative):
        assert np.asarray(got["hist"]).tolist() == want["hist"]
        assert isinstance(got["hist"], np.ndarray) == (not neg)


def test_counts_of_every_width_up_to_int64_are_read_exactly():
    rng = np.random.default_rng(1)
    lines = []
    for digits in range(1, 20):
        top = min(10 ** digits, 2 ** 63)
        h = rng.integers(10 ** (digits - 1) if digits > 1 else 0, top, size=(3, 7), dtype=np.int64)
        h[0, 0], h[2, 6] = top - 1, 0
        lines.append(_rec(orjson.dumps(h.tolist()).decode()))
    got = loads_lines([(line, 0, len(line)) for line in lines])
    for line, obj in zip(lines, got):
        assert isinstance(obj["hist"], np.ndarray) and obj["hist"].tolist() == orjson.loads(line)["hist"]


def test_int_rows_reads_spans_of_one_buffer_independently():
    buf = b"xx[[1,2],[3,4]]yy[[5]]zz[[1],[2,3]]"
    got = int_rows([(buf, 2, 15), (buf, 17, 22), (buf, 24, 35)])
    assert got[0].tolist() == [[1, 2], [3, 4]] and got[1].tolist() == [[5]] and got[2] is None


# -- the vectorised proof against the rule it replaced ---------------------------------------------

def _old_rule(span: bytes, compact: bool):
    """What ``int_rows`` gave before it proved spans canonical itself: orjson's own writing compared with the text.

    The text (blanks removed with ``compact``; None for a blank between digits) is taken iff it is a
    non-empty list of equal-length non-empty lists of integers in ``[0, 2**63)`` and orjson writes
    exactly it for them as an int64 array. Without ``compact`` a blank is never in orjson's writing.
    """
    if compact:
        if re.search(rb"[0-9][ \t\r\n]+[0-9]", span):
            return None
        span = span.translate(None, b" \t\r\n")
    try:
        v = orjson.loads(span)
    except orjson.JSONDecodeError:
        return None
    if not (type(v) is list and v and all(type(r) is list and r and len(r) == len(v[0]) for r in v)
            and all(type(x) is int and 0 <= x < 2 ** 63 for r in v for x in r)):
        return None
    arr = np.array(v, dtype=np.int64)
    return arr if orjson.dumps(arr, option=orjson.OPT_SERIALIZE_NUMPY) == span else None


_NUMBERS = st.one_of(st.integers(0, 9), st.integers(0, 999), st.integers(0, 10 ** 6),
                     st.integers(10 ** 17, 10 ** 18 + 10), st.integers(2 ** 63 - 50, 2 ** 63 + 50),
                     st.integers(10 ** 18, 10 ** 20))


@st.composite
def _near_canonical(draw) -> bytes:
    """JSON-ish text around a canonical counts array: the array, bent a few ways, or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=30).map(lambda b: bytes(b"0123456789,[] "[c % 14] for c in b)))
    rows, width = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    table = [[draw(_NUMBERS) for _ in range(width)] for _ in range(rows)]
    r = draw(st.integers(0, rows - 1))
    bend = draw(st.sampled_from(["none", "none", "ragged", "longer", "empty_row", "nest", "huge"]))
    if bend == "ragged":
        table[r] = table[r][:-1]
    elif bend == "longer":
        table[r].append(draw(_NUMBERS))
    elif bend == "empty_row":
        table.insert(r, [])
    elif bend == "nest":
        table = [table]
    elif bend == "huge":
        table[r][0] = draw(st.integers(10 ** 18, 10 ** 20))
    text = bytearray(json.dumps(table, separators=(",", ":")).encode())
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["zero", "blank", "delete", "byte", "brackets"]))
        if edit == "zero":
            text[at:at] = b"0"  # a leading zero where before a number, else another digit or junk
        elif edit == "blank":
            text[at:at] = draw(st.sampled_from([b" ", b"\t", b"\n", b", "]))
        elif edit == "delete":
            del text[at:at + 1]
        elif edit == "byte":
            text[at:at] = draw(st.sampled_from([b"0", b"7", b",", b"[", b"]", b"-", b".", b"e", b"[]", b"],["]))
        else:
            text[at:at] = draw(st.sampled_from([b"[[", b"]]", b"[[1]]", b"[1]"]))
    return bytes(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(_near_canonical(), min_size=1, max_size=6), st.booleans())
def test_int_rows_takes_exactly_the_spans_the_dumps_rule_took(texts, compact):
    buf, spans = b"", []
    for t in texts:  # several spans in one buffer, read together
        buf += b'x"'
        spans.append((len(buf), len(buf) + len(t)))
        buf += t
    got = int_rows([(buf, lo, hi) for lo, hi in spans], compact)
    for t, g in zip(texts, got):
        want = _old_rule(t, compact)
        assert (g is None) == (want is None), t
        if g is not None:
            assert g.dtype == np.int64 and g.shape == want.shape and (g == want).all(), t


@settings(max_examples=200, deadline=None)
@given(st.lists(_near_canonical(), min_size=1, max_size=5))
def test_whole_lines_give_what_orjson_gives(texts):
    lines = [_rec(t.decode("latin-1")) for t in texts]
    buf = b"\n".join(lines)
    at, spans = 0, []
    for line in lines:
        spans.append((buf, at, at + len(line)))
        at += len(line) + 1
    for line, got in zip(lines, loads_lines(spans)):
        _assert_as_orjson(got, line)


@pytest.mark.parametrize("text", [
    "[[01]]", "[[0,01]]", "[[10,0],[0,00]]", "[[1,2],[3,4,5,6]]", "[[1,2,3],[4]]", "[[1],[2],[3,4]]", "[[1,2],[]]",
    "[[1,2]],[[3,4]]", "[[1],[2]][[3]]", "[[1,,2]]", "[[,1]]", "[[1,]]", "[[1],,[2]]", "[[1],[2],]", "[[1]2]]",
    "[[1],2]]", "[[1]],[2]]", "[[[1]]]", "[[1]]]", "[[1]\n,[2]]", "[[1]]\n[[2]]", "[[1],[2]]\n",
    "[[-9223372036854775808]]",
    "[[9223372036854775807]]", "[[9223372036854775808]]", "[[12345678901234567890]]", "[[1234567890123456789,1]]",
    "[[1\x002]]", "[[1:2]]", "[[1;]]", "[[1],[2\\]]",
])
def test_int_rows_cases_at_the_edges_of_the_shape(text):
    span = text.encode()
    for compact in (False, True):
        got, want = int_rows([(span, 0, len(span))], compact)[0], _old_rule(span, compact)
        assert (got is None) == (want is None) and (got is None or got.tolist() == want.tolist())
