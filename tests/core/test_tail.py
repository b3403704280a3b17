"""core._tail.FileTail: incremental reads of one growing JSON Lines file."""

from __future__ import annotations

import json
import os

import pytest

import core._tail as tail_mod
from core._tail import FileTail, check_record


def _line(step: int, **extra) -> bytes:
    return json.dumps({"kind": "scalars", "step": step, "values": {"loss": 1.0 / (step + 1)}, **extra}).encode() + b"\n"


def _append(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_half_line_then_rest_neither_lost_nor_duplicated(tmp_path):
    p = tmp_path / "scalars.r0.jsonl"
    t = FileTail(p, p.name)
    first, second = _line(0), _line(1)
    _append(p, first + second[:10])
    res = t.read_new()
    assert [r["step"] for r in res.records] == [0]
    assert t.pending_bytes == 10 and not res.problems
    assert t.read_new().records == []  # nothing new: nothing returned
    _append(p, second[10:])
    res = t.read_new()
    assert [r["step"] for r in res.records] == [1]
    assert res.records[0]["values"] == {"loss": 0.5}
    assert not res.problems and t.pending_bytes == 0
    assert t.read_new().records == []


def test_byte_by_byte_appends(tmp_path):
    p = tmp_path / "a.jsonl"
    data = b"".join(_line(i) for i in range(5))
    t = FileTail(p, p.name)
    got = []
    for i in range(len(data)):
        _append(p, data[i:i + 1])
        res = t.read_new()
        assert not res.problems
        got += [r["step"] for r in res.records]
    assert got == [0, 1, 2, 3, 4]


def test_incremental_reads_return_exactly_the_new_records(tmp_path):
    p = tmp_path / "a.jsonl"
    t = FileTail(p, p.name)
    seen = []
    for batch in range(5):
        _append(p, b"".join(_line(batch * 10 + i) for i in range(batch + 1)))
        res = t.read_new()
        seen.append([r["step"] for r in res.records])
    assert seen == [[0], [10, 11], [20, 21, 22], [30, 31, 32, 33], [40, 41, 42, 43, 44]]
    assert t.read_new().bytes_read == 0


def test_small_chunks_give_the_same_records(tmp_path, monkeypatch):
    p = tmp_path / "a.jsonl"
    _append(p, b"".join(_line(i, note="x" * (i % 13)) for i in range(200)))
    whole = FileTail(p, p.name).read_new().records
    monkeypatch.setattr(tail_mod, "CHUNK", 7)
    chunked = FileTail(p, p.name).read_new()
    assert chunked.records == whole and len(whole) == 200 and not chunked.problems


def test_line_numbers_attached(tmp_path):
    p = tmp_path / "a.jsonl"
    _append(p, _line(0) + b"\n" + _line(1))
    recs = FileTail(p, p.name).read_new().records
    assert [(r["step"], r["_line"]) for r in recs] == [(0, 1), (1, 3)]


@pytest.mark.parametrize("bad, why", [
    (b'{"kind": "scalars", "step": 1, "values": {"loss": NaN}}', "not valid JSON"),
    (b'{"kind": "scalars", "step": 1, "values": {"loss": Infinity}}', "not valid JSON"),
    (b'{"kind": "scalars", "step": 1, "values": {', "not valid JSON"),
    (b'\xff\xfe{"kind": "scalars", "step": 1}', "not valid JSON"),
    (b'[1, 2, 3]', "expected a JSON object"),
    (b'{"kind": "weird", "step": 1}', "unknown kind"),
    (b'{"step": 1}', "unknown kind"),
    (b'{"kind": "scalars"}', "'step' must be an integer"),
    (b'{"kind": "scalars", "step": 1.5}', "'step' must be an integer"),
    (b'{"kind": "scalars", "step": "3"}', "'step' must be an integer"),
    (b'{"kind": "scalars", "step": true}', "'step' must be an integer"),
    (b'{"kind": "scalars", "step": 9223372036854775807}', "out of range"),
])
def test_corrupt_line_reported_with_line_number_not_fatal(tmp_path, bad, why):
    p = tmp_path / "scalars.r0.jsonl"
    _append(p, _line(0) + _line(1) + bad + b"\n" + _line(3))
    res = FileTail(p, p.name).read_new()
    assert [r["step"] for r in res.records] == [0, 1, 3]
    assert len(res.problems) == 1
    prob = res.problems[0]
    assert (prob.file, prob.line) == ("scalars.r0.jsonl", 3)
    assert why in prob.message and "skipped" in prob.message
    assert str(prob).startswith("scalars.r0.jsonl:3: ")


def test_torn_last_line_is_not_a_problem(tmp_path):
    p = tmp_path / "a.jsonl"
    _append(p, _line(0) + b'{"kind": "scal')
    t = FileTail(p, p.name)
    res = t.read_new()
    assert len(res.records) == 1 and res.problems == [] and t.pending_bytes > 0


def test_over_long_lines_skipped_without_being_held(tmp_path):
    p = tmp_path / "a.jsonl"
    t = FileTail(p, p.name, max_line=100)
    long = json.dumps({"kind": "scalars", "step": 1, "pad": "y" * 500}).encode()
    _append(p, _line(0) + long[:300])
    res = t.read_new()
    assert [r["step"] for r in res.records] == [0]
    assert t.pending_bytes == 0  # dropped at once, not buffered
    _append(p, long[300:] + b"\n" + _line(2))
    res = t.read_new()
    assert [r["step"] for r in res.records] == [2]
    assert [(q.line, "longer than 100 bytes" in q.message) for q in res.problems] == [(2, True)]
    # A long line that arrives whole in one read is skipped the same way.
    _append(p, long + b"\n" + _line(4))
    res = t.read_new()
    assert [r["step"] for r in res.records] == [4]
    assert [q.line for q in res.problems] == [4]


def test_truncated_file_resets(tmp_path):
    p = tmp_path / "a.jsonl"
    _append(p, _line(0) + _line(1))
    t = FileTail(p, p.name)
    assert len(t.read_new().records) == 2
    with open(p, "wb") as f:
        f.write(_line(5))
    assert t.read_new().reset


def test_replaced_file_resets(tmp_path):
    p = tmp_path / "a.jsonl"
    _append(p, _line(0))
    t = FileTail(p, p.name)
    t.read_new()
    q = tmp_path / "new.tmp"
    _append(q, _line(0) + _line(1) + _line(2))
    os.replace(q, p)
    assert t.read_new().reset


def test_deleted_file_resets_and_missing_file_is_quiet(tmp_path):
    p = tmp_path / "a.jsonl"
    t = FileTail(p, p.name)
    res = t.read_new()
    assert not res.reset and not res.records and not res.problems
    _append(p, _line(0))
    t.read_new()
    p.unlink()
    assert t.read_new().reset


def test_unreadable_path_is_a_problem_not_an_exception(tmp_path):
    d = tmp_path / "a.jsonl"
    d.mkdir()  # a folder where a file was expected: reading it fails with EISDIR
    res = FileTail(d, d.name).read_new()
    assert res.records == [] and len(res.problems) == 1


def test_check_record_accepts_every_kind():
    for kind in ("scalars", "acts", "params", "input", "finding"):
        assert check_record({"kind": kind, "step": 0}) is None
    assert check_record({"kind": "scalars", "step": -3}) is None
