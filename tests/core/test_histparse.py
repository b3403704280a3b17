"""core._histparse: histogram counts read from the raw bytes give exactly what orjson gives, and anything else takes orjson's path."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from core._histparse import _SENTINEL, int_rows, loads_lines


def _one(line: bytes):
    return loads_lines([(line, 0, len(line))])[0]


def _same_as_orjson(line: bytes) -> None:
    got = _one(line)
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
