"""Bad input never raises out of the reader or takes the dashboard down (property-based).

Hypothesis builds run folders from a mix of valid records and damaged lines: truncated
lines, invalid UTF-8, wrong types, missing fields, huge numbers (``1e400``, ``10**30``),
``NaN``/``Infinity`` tokens, binary junk, blank lines, a torn last line, and a
``meta.json`` that is missing, corrupt, of the wrong shape or from a future format
version. Properties:

* ``Run.update()`` and ``LogDir.refresh()`` never raise, nor do the accessors pages use;
* every damaged line is reported with its file and line number, no valid line is;
* reading the bytes in random pieces gives the same result as reading them at once;
* a torn last line is pending, not a problem;
* the dashboard answers every callback of every page for such runs without an error.

A separate test streams a 100 MB line and checks that memory stays bounded.
"""

from __future__ import annotations

import json
import math
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core import LogDir, Run
from core.schema import ACT_FIELDS, PARAM_FIELDS

from ._dashclient import PageDriver, flask_transport

COUNT = {"reader": 0, "dashboard": 0, "lines": 0}
ROOT = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
                phases=[Phase.explicit, Phase.generate])

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
nums = st.one_of(finite, st.none(), st.integers(-10**6, 10**6))


@st.composite
def valid_record(draw, step: int) -> dict:
    kind = draw(st.sampled_from(["scalars", "scalars", "acts", "params", "input", "finding"]))
    t = draw(st.floats(0, 2e9))
    if kind == "scalars":
        vals = draw(st.dictionaries(st.sampled_from(["loss", "lr", "x", "val_acc"]), st.one_of(finite, st.none()),
                                    min_size=1))
        rec = {"kind": kind, "step": step, "time": t, "values": vals}
        nulls = [k for k, v in vals.items() if v is None]
        if nulls and draw(st.booleans()):
            rec["nonfinite"] = {k: draw(st.sampled_from(["nan", "inf", "-inf"])) for k in nulls}
        return rec
    if kind in ("acts", "params"):
        layer_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
        k = len(layer_names)
        fields = ACT_FIELDS if kind == "acts" else PARAM_FIELDS
        rec = {"kind": kind, "step": step, "time": t, "layers" if kind == "acts" else "params": layer_names}
        for f in draw(st.lists(st.sampled_from(fields), unique=True)):
            rec[f] = draw(st.lists(nums, min_size=k, max_size=k))
        if kind == "acts" and draw(st.booleans()):
            rec["hist_lo"] = draw(st.lists(finite, min_size=k, max_size=k))
            rec["hist_hi"] = draw(st.lists(finite, min_size=k, max_size=k))
            rec["hist"] = [draw(st.lists(st.integers(0, 10**6), min_size=8, max_size=8)) for _ in range(k)]
        return rec
    if kind == "input":
        return {"kind": kind, "step": step, "time": t, **{f: draw(nums) for f in ("mean", "std", "min", "max")}}
    return {"kind": "finding", "step": step, "rule": draw(names), "severity": draw(st.sampled_from(["error", "warning"])),
            "layers": draw(st.lists(names, max_size=2)), "message": draw(names), "fix": draw(names)}


def _dump(rec: dict) -> bytes:
    return json.dumps(rec, ensure_ascii=False).encode("utf-8")


@st.composite
def line(draw, step: int) -> tuple[str, bytes]:
    """``(label, bytes without newline)``: label ``good`` (must read), ``bad`` (must be reported), ``blank``."""
    rec = draw(valid_record(step))
    what = draw(st.sampled_from(["good"] * 6 + ["truncated", "utf8", "type", "missing", "huge", "nan", "junk",
                                                 "blank", "array", "bigint"]))
    raw = _dump(rec)
    if what == "good":
        return "good", raw
    if what == "truncated":
        return "bad", raw[: draw(st.integers(1, len(raw) - 1))]
    if what == "utf8":
        i = raw.index(b'"kind"') + 1
        return "bad", raw[:i] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])) + raw[i:]
    if what == "type":
        bad = dict(rec)
        field = draw(st.sampled_from(["step", "kind", "body"]))
        if field == "step":
            bad["step"] = draw(st.sampled_from(["1", 1.5, True, None, [1], 2**63, -(2**63)]))
        elif field == "kind":
            bad["kind"] = draw(st.sampled_from([1, None, "Scalars", "", ["acts"]]))
        elif rec["kind"] == "scalars":
            bad["values"] = draw(st.sampled_from([[1, 2], "loss", 3, {"loss": "high"}, {"loss": [1]}, {"loss": True}]))
        elif rec["kind"] in ("acts", "params"):
            key = "layers" if rec["kind"] == "acts" else "params"
            bad[key] = draw(st.sampled_from(["fc1", 5, [1, 2], [None]]))
        elif rec["kind"] == "finding":
            bad["severity"] = draw(st.sampled_from(["fatal", 3, None]))
        else:
            bad["mean"] = draw(st.sampled_from(["x", [1], {"a": 1}]))
        return "bad", _dump(bad)
    if what == "missing":
        bad = dict(rec)
        del bad[draw(st.sampled_from(["kind", "step"]))]
        return "bad", _dump(bad)
    if what == "huge":
        return "bad", raw.replace(b'"step": ', b'"step": 1e400, "x": ', 1)
    if what == "bigint":
        return "bad", raw.replace(b'"step": ', b'"step": 1' + b"0" * 30 + b', "x": ', 1)
    if what == "nan":
        tok = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"nan"]))
        return "bad", b'{"kind": "scalars", "step": %d, "values": {"loss": %s}}' % (step, tok)
    if what == "array":
        return "bad", draw(st.sampled_from([b"[1, 2]", b"3", b'"scalars"', b"null", b"{}"]))
    if what == "junk":
        junk = draw(st.binary(min_size=1, max_size=64)).replace(b"\n", b"")
        if not junk.strip():
            return "blank", junk
        return "bad", junk
    return "blank", draw(st.sampled_from([b"", b" ", b"\t", b"  \r"]))


@st.composite
def run_folder(draw) -> dict:
    files = {}
    for fname in draw(st.lists(st.sampled_from(["scalars.r0.jsonl", "layers.r0.jsonl", "scalars.r1.jsonl", "x.jsonl"]),
                               min_size=1, max_size=3, unique=True)):
        n = draw(st.integers(0, 25))
        files[fname] = [draw(line(i)) for i in range(n)]
    torn = draw(st.booleans())
    meta = draw(st.sampled_from(["ok", "ok", "missing", "corrupt", "array", "future", "types", "empty", "binary"]))
    splits = draw(st.lists(st.floats(0, 1), max_size=4))
    return {"files": files, "torn": torn, "meta": meta, "splits": splits}


META = {
    "ok": json.dumps({"format": "babysitter", "format_version": 1, "run": "r", "status": "running",
                      "hparams": {"lr": 0.1, "<b>x</b>": "<img src=x onerror=alert(1)>"},
                      "layers": [{"name": "fc0", "kind": "relu"}], "num_classes": 10}).encode(),
    "corrupt": b'{"format": "babysitter", "format_version": 1, "run": "r", "hparams": {"lr": ',
    "array": b"[1, 2, 3]",
    "future": json.dumps({"format": "babysitter", "format_version": 99, "run": "r", "new_field": {"a": 1}}).encode(),
    "types": json.dumps({"format_version": "1", "run": 5, "status": 7, "hparams": [1], "layers": "fc1",
                         "num_classes": -3, "every": "x", "pid": "1", "created": "yesterday"}).encode(),
    "empty": b"",
    "binary": b"\x00\xff\xfe{\x80",
}


def _write(path: Path, spec: dict) -> dict[str, bytes]:
    path.mkdir(parents=True)
    if spec["meta"] != "missing":
        (path / "meta.json").write_bytes(META[spec["meta"]])
    contents = {}
    for fname, lines in spec["files"].items():
        data = b"".join(raw + b"\n" for _, raw in lines)
        contents[fname] = data
    if spec["torn"]:
        first = next(iter(contents))
        contents[first] += b'{"kind": "scalars", "step": 99, "val'
    return contents


def _exercise(run: Run) -> None:
    """Every accessor the pages use must work on whatever was read."""
    for rank in run.ranks() or [0]:
        for name in run.scalar_names(rank):
            run.scalar(name, rank)
        run.scalars_frame(rank)
    run.layer_order(), run.layer_kinds(), run.input_stats(), run.all_problems(), run.status(), run.pending()
    run.acts.histograms(), run.acts.row_at(3), run.params.row_at(3), run.memory_bytes()
    for f in ACT_FIELDS:
        run.acts.field(f)


def _summary(run: Run) -> tuple:
    # Rows of several files of one rank interleave in the order read: compare them as sets.
    scal = {(r, n): sorted(zip(run.scalar(n, r).steps.tolist(), map(repr, run.scalar(n, r).values.tolist())))
            for r in run.ranks() for n in run.scalar_names(r)}
    return (run.records_read, sorted((p.file, p.line) for p in run.all_problems()), scal,
            sorted(run.acts.step_array().tolist()), sorted(run.acts.names), len(run.findings), run.meta.to_json())


@FUZZ
@given(spec=run_folder())
def test_fuzzed_run_folders_never_raise_and_report_every_bad_line(tmp_path_factory, spec):
    COUNT["reader"] += 1
    base = tmp_path_factory.mktemp("fz")
    path = base / "r"
    contents = _write(path, spec)
    # One-shot read.
    for fname, data in contents.items():
        (path / fname).write_bytes(data)
    whole = Run(path)
    whole.update()
    _exercise(whole)
    # The same bytes appended in random pieces, reading after each.
    shutil.rmtree(path)
    _write(path, spec)
    pieces = Run(path)
    cuts = {fname: sorted({int(f * len(d)) for f in spec["splits"]} | {len(d)}) for fname, d in contents.items()}
    done = {fname: 0 for fname in contents}
    for round_ in range(max(len(c) for c in cuts.values())):
        for fname, data in contents.items():
            if round_ < len(cuts[fname]):
                end = cuts[fname][round_]
                with open(path / fname, "ab") as f:
                    f.write(data[done[fname]:end])
                done[fname] = end
        pieces.update()
    assert _summary(pieces) == _summary(whole)

    reported = {(p.file, p.line) for p in whole.all_problems()}
    for fname, lines in spec["files"].items():
        COUNT["lines"] += len(lines)
        for i, (label, raw) in enumerate(lines, start=1):
            if label == "bad":
                assert (fname, i) in reported, f"{fname}:{i} {raw!r} was not reported"
            elif label in ("good", "blank"):
                assert (fname, i) not in reported, f"{fname}:{i} {raw!r} was reported: {whole.all_problems()}"
    files = set(spec["files"]) | {"meta.json"}
    assert all(p.file in files for p in whole.all_problems())
    n_lines = {f: len(v) for f, v in spec["files"].items()}
    assert all(p.line == 0 or 1 <= p.line <= n_lines.get(p.file, 0) for p in whole.all_problems())
    if spec["torn"]:
        assert list(whole.pending()) == [next(iter(contents))]
    meta_problem = [p for p in whole.all_problems() if p.file == "meta.json"]
    assert bool(meta_problem) == (spec["meta"] != "ok")
    # The whole log directory refreshes too.
    logdir = LogDir(base)
    logdir.refresh()
    assert logdir.names() == ["r"]
    shutil.rmtree(base)


@pytest.fixture(scope="module")
def dash_app(tmp_path_factory):
    from dashboard.app import create_app

    base = tmp_path_factory.mktemp("fuzzdash")
    logdir = LogDir(base)
    app = create_app(logdir)
    return base, logdir, PageDriver(*flask_transport(app))


@settings(FUZZ, max_examples=25)
@given(spec=run_folder())
def test_dashboard_pages_survive_fuzzed_runs(dash_app, spec):
    COUNT["dashboard"] += 1
    base, logdir, driver = dash_app
    for old in base.iterdir():
        shutil.rmtree(old)
    name = f"r{COUNT['dashboard']} <script>alert(1)</script>"
    path = base / name
    contents = _write(path, spec)
    for fname, data in contents.items():
        (path / fname).write_bytes(data)
    logdir.mark_dirty(None)
    from dashboard.context import run_href

    for href in ("/", run_href(name), run_href(name, "layers"), run_href(name, "updates"), "/compare"):
        before = len(driver.errors)
        driver.visit(href)
        assert driver.errors[before:] == [], driver.errors[before:]


def test_a_100mb_line_is_skipped_with_bounded_memory(tmp_path):
    """The reader streams 4 MB chunks and drops an over-long line instead of holding it."""
    path = tmp_path / "r"
    path.mkdir()
    size = 100 << 20
    with open(path / "scalars.r0.jsonl", "wb") as f:
        f.write(b'{"kind": "scalars", "step": 0, "values": {"loss": 1.0}}\n')
        f.write(b'{"kind": "scalars", "step": 1, "values": {"x": "')
        block = b"a" * (1 << 20)
        for _ in range(size >> 20):
            f.write(block)
        f.write(b'"}}\n{"kind": "scalars", "step": 2, "values": {"loss": 0.5}}\n')
    run = Run(path)
    tracemalloc.start()
    try:
        run.update()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, f"reading a 100 MB line peaked at {peak / 2**20:.0f} MB"
    assert run.scalar("loss").steps.tolist() == [0, 2]
    probs = run.all_problems()
    assert [(p.file, p.line) for p in probs if p.file != "meta.json"] == [("scalars.r0.jsonl", 2)]
    assert "longer than" in probs[-1].message
    COUNT["peak_mb_100mb_line"] = round(peak / 2**20, 1)


def teardown_module(module) -> None:
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps(COUNT, indent=2) + "\n")
    print("fuzz:", COUNT)
