"""core.reader: Run and LogDir read run folders into columns, incrementally, never raising for file contents."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from core import LogDir, Run, RunNotFoundError, is_run_dir

META = {"format": "babysitter", "format_version": 1, "run": "r", "created": 1.0, "status": "running",
        "layers": [{"name": "fc2", "kind": "relu"}, {"name": "fc1", "kind": "tanh", "shape": [5]}],
        "num_classes": 10, "hparams": {"lr": 0.1}}


def _acts(step: int, names=("fc1", "fc2"), bins: int = 4, scale: float = 1.0) -> dict:
    k = len(names)
    return {"kind": "acts", "step": step, "time": 100.0 + step, "layers": list(names),
            "mean": [scale * (i + 1) for i in range(k)], "std": [scale * (i + 2) for i in range(k)],
            "min": [-1.0] * k, "max": [1.0] * k, "zero_frac": [0.0] * k, "dead_frac": [None] * k,
            "sat_frac": [0.5] * k, "nan": [0] * k, "inf": [0] * k,
            "hist_lo": [-1.0] * k, "hist_hi": [1.0] * k, "hist": [[step, 1, 2, 3][:bins]] * k}


def _scalars(step: int, **values) -> dict:
    return {"kind": "scalars", "step": step, "time": 100.0 + step, "values": values}


def test_reads_every_kind(write_run):
    path = write_run([_scalars(0, loss=2.3, lr=0.1), _scalars(1, loss=2.0)], meta=META)
    write_run([
        _acts(0),
        {"kind": "params", "step": 0, "params": ["W1"], "w_norm": [3.0], "w_std": [0.1], "upd_norm": [0.003],
         "upd_ratio": [0.001], "grad_norm": [0.3], "w_nan": [0], "w_inf": [0], "grad_nan": [0], "grad_inf": [0]},
        {"kind": "input", "step": 0, "mean": 0.5, "std": 2.0, "min": -1, "max": 4, "nan": 0, "inf": 0},
        {"kind": "finding", "step": 1, "rule": "dead_relu", "severity": "warning", "layers": ["fc2"],
         "message": "m", "fix": "f", "value": 0.4, "threshold": 0.2},
    ], file="layers.r0.jsonl")
    run = Run(path)
    assert run.update() == 6
    assert run.meta.num_classes == 10 and run.meta.hparams == {"lr": 0.1}
    loss = run.scalar("loss")
    assert loss.steps.tolist() == [0, 1] and loss.values.tolist() == [2.3, 2.0]
    assert loss.times.tolist() == [100.0, 101.0]
    assert run.scalar("lr").steps.tolist() == [0]
    assert len(run.scalar("missing")) == 0
    assert run.scalar_names() == ["loss", "lr"]
    df = run.scalars_frame()
    assert df.loc[0, "lr"] == 0.1 and math.isnan(df.loc[1, "lr"])
    assert run.acts.names == ["fc1", "fc2"]
    assert run.acts.field("std").tolist() == [[2.0, 3.0]]
    assert np.isnan(run.acts.field("dead_frac")).all()
    steps, lo, hi, counts = run.acts.histograms()
    assert steps.tolist() == [0] and counts.shape == (1, 2, 4) and counts[0, 1].tolist() == [0, 1, 2, 3]
    assert run.params.names == ["W1"] and run.params.field("upd_ratio")[0, 0] == 0.001
    inp = run.input_stats()
    assert inp["step"].tolist() == [0.0] and inp["mean"].tolist() == [0.5]
    assert [f.rule for f in run.findings] == ["dead_relu"] and run.findings[0].layers == ("fc2",)
    # Depth order comes from meta.json, not from the order in the lines.
    assert run.layer_order() == ["fc2", "fc1"]
    assert run.layer_kinds() == {"fc2": "relu", "fc1": "tanh"}
    assert run.all_problems() == []
    assert run.last_step == 1


def test_nonfinite_scalars_restored_from_tags(write_run):
    path = write_run([
        {"kind": "scalars", "step": 0, "values": {"loss": None, "a": None, "b": None, "c": None},
         "nonfinite": {"loss": "nan", "a": "inf", "b": "-inf"}},
    ])
    run = Run(path)
    run.update()
    assert math.isnan(run.scalar("loss").values[0])
    assert run.scalar("a").values.tolist() == [math.inf]
    assert run.scalar("b").values.tolist() == [-math.inf]
    assert len(run.scalar("c")) == 0  # null without a tag: not recorded


def test_incremental_update_returns_only_new_records(write_run):
    path = write_run([_scalars(0, loss=1.0)], meta=META)
    run = Run(path)
    assert run.update() == 1
    v = run.version
    assert run.update() == 0 and run.version == v
    line = json.dumps(_scalars(1, loss=0.5)).encode() + b"\n"
    write_run([line[:7]])
    assert run.update() == 0
    write_run([line[7:], _scalars(2, loss=0.25)])
    assert run.update() == 2 and run.version > v
    assert run.scalar("loss").steps.tolist() == [0, 1, 2]
    assert run.scalar("loss").values.tolist() == [1.0, 0.5, 0.25]


def test_corrupt_and_torn_lines_reported_not_fatal(write_run):
    path = write_run([
        _scalars(0, loss=1.0),
        b'{"kind": "scalars", "step": 1, "values": {"loss": NaN}}\n',
        b"garbage\n",
        _scalars(3, loss=0.5),
        {"kind": "acts", "step": 3, "layers": ["a", "b"], "std": [1.0]},  # wrong column length
        {"kind": "scalars", "step": 5, "values": {"loss": "high"}},
        b'{"kind": "scalars", "step": 6, "val',  # torn last line
    ], meta=META)
    run = Run(path)
    run.update()
    assert run.scalar("loss").steps.tolist() == [0, 3]
    where = [(p.file, p.line) for p in run.all_problems()]
    assert where == [("scalars.r0.jsonl", 2), ("scalars.r0.jsonl", 3), ("scalars.r0.jsonl", 5),
                     ("scalars.r0.jsonl", 6)]
    assert "values for 2 names" in run.all_problems()[2].message
    assert run.problem_count == 4
    assert len(run.acts) == 0  # nothing half-added from the bad record


def test_truncated_file_is_read_again_without_duplicates(write_run):
    path = write_run([_scalars(i, loss=float(i)) for i in range(5)], meta=META)
    run = Run(path)
    run.update()
    (path / "scalars.r0.jsonl").write_text(json.dumps(_scalars(7, loss=7.0)) + "\n")
    v = run.version
    assert run.update() == 1
    assert run.version > v
    assert run.scalar("loss").steps.tolist() == [7]


def test_replaced_file_is_read_again(write_run, tmp_path):
    path = write_run([_scalars(i, loss=1.0) for i in range(3)])
    run = Run(path)
    run.update()
    tmp = tmp_path / "x"
    tmp.write_text("".join(json.dumps(_scalars(i, loss=2.0)) + "\n" for i in range(4)))
    os.replace(tmp, path / "scalars.r0.jsonl")
    run.update()
    assert run.scalar("loss").values.tolist() == [2.0] * 4


def test_future_format_version_reads_known_fields(write_run):
    meta = dict(META, format_version=99, new_field={"x": 1})
    path = write_run([_scalars(0, loss=1.0, future_metric=3.0),
                      {"kind": "scalars", "step": 1, "values": {"loss": 0.5}, "extra_key": [1, 2]}], meta=meta)
    run = Run(path)
    assert run.update() == 2
    assert run.scalar("loss").values.tolist() == [1.0, 0.5]
    assert run.meta.extra == {"new_field": {"x": 1}}
    (prob,) = run.all_problems()
    assert prob.file == "meta.json" and "newer" in prob.message


def test_missing_and_broken_meta(write_run):
    path = write_run([_scalars(0, loss=1.0)])
    run = Run(path)
    run.update()
    assert run.meta.run == "r" and len(run.scalar("loss")) == 1
    assert [p.file for p in run.all_problems()] == ["meta.json"]
    (path / "meta.json").write_text("{not json")
    run.update()
    assert "unreadable" in run.all_problems()[0].message
    (path / "meta.json").write_text(json.dumps(META))
    run.update()
    assert run.all_problems() == [] and run.meta.num_classes == 10


def test_meta_fields_of_wrong_type_fall_back(write_run):
    meta = {"run": "r", "status": "exploded", "num_classes": -3, "layers": [{"kind": "relu"}, "x", {"name": "a"}],
            "hparams": [1], "every": "ten", "format_version": "one"}
    run = Run(write_run([], meta=meta))
    run.update()
    m = run.meta
    assert m.status == "running" and m.num_classes is None and m.hparams == {} and m.every is None
    assert [(li.name, li.kind) for li in m.layers] == [("a", "other")]
    assert m.format_version == 1


def test_ranks(write_run):
    path = write_run([_scalars(0, loss=1.0)], meta=META)
    write_run([_scalars(0, loss=2.0)], file="scalars.r1.jsonl")
    write_run([_acts(0)], file="layers.r0.jsonl")
    write_run([_acts(0, scale=10.0)], file="layers.r1.jsonl")
    run = Run(path)
    run.update()
    assert run.ranks() == [0, 1]
    assert run.scalar("loss", rank=1).values.tolist() == [2.0]
    assert run.scalar("loss").values.tolist() == [1.0]
    assert run.acts.field("mean").tolist() == [[1.0, 2.0]]  # rank 0's statistics only


def test_histogram_rows_thinned_but_scalar_stats_kept(write_run):
    path = write_run([_acts(s) for s in range(40)], file="layers.r0.jsonl")
    run = Run(path, max_hist_rows=8)
    run.update()
    assert len(run.acts) == 40
    steps, lo, hi, counts = run.acts.histograms()
    assert len(steps) <= 8
    assert steps[0] == 0 and np.all(np.diff(steps) > 0)
    assert counts[:, 0, 0].tolist() == steps.tolist()  # each kept row is the right step's histogram


def test_row_at_and_unsorted_steps(write_run):
    path = write_run([_acts(s) for s in (0, 10, 20)], file="layers.r0.jsonl")
    run = Run(path)
    run.update()
    assert run.acts.row_at(15) == 1 and run.acts.row_at(20) == 2 and run.acts.row_at(-1) is None
    write_run([_scalars(5, loss=1.0), _scalars(2, loss=2.0)])
    run.update()
    assert run.scalar("loss").steps.tolist() == [2, 5]


def test_new_layer_appears_later(write_run):
    path = write_run([_acts(0, names=("a",)), _acts(1, names=("a", "b"))], file="layers.r0.jsonl")
    run = Run(path)
    run.update()
    std = run.acts.field("std")
    assert run.acts.names == ["a", "b"] and std[0, 0] == 2.0 and np.isnan(std[0, 1]) and std[1, 1] == 3.0


def test_status(write_run):
    path = write_run([_scalars(0, loss=1.0)], meta=META)
    run = Run(path)
    run.update()
    now = time.time()
    assert run.status(now) == "live"
    assert run.status(now + 3600) == "crashed"  # no heartbeat or write for an hour
    (path / "heartbeat").touch()
    os.utime(path / "heartbeat", (now + 3590, now + 3590))
    assert run.status(now + 3600) == "live"
    for final in ("finished", "crashed"):
        (path / "meta.json").write_text(json.dumps(dict(META, status=final)))
        run.update()
        assert run.status(now + 1e6) == final


def test_status_dead_process_on_this_host(write_run):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    meta = dict(META, pid=proc.pid, host=socket.gethostname())
    run = Run(write_run([], meta=meta))
    run.update()
    assert run.status() == "crashed"
    (run.path / "meta.json").write_text(json.dumps(dict(meta, pid=os.getpid())))
    run.update()
    assert run.status() == "live"


def test_not_a_folder(tmp_path):
    with pytest.raises(RunNotFoundError, match="not a run folder"):
        Run(tmp_path / "nope")
    assert not is_run_dir(tmp_path / "nope")


def test_logdir(write_run, tmp_path):
    write_run([_scalars(0, loss=1.0)], meta=META, name="a")
    write_run([_scalars(0, loss=1.0)], name="b")
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "meta.json").write_text("{}")
    ld = LogDir(tmp_path)
    assert ld.refresh()
    assert ld.names() == ["a", "b"]
    assert ld.get("a").scalar("loss").values.tolist() == [1.0]
    for bad in ("../a", "a/..", "", "..", "/etc"):
        assert ld.get(bad) is None
    v = ld.version
    assert not ld.refresh() and ld.version == v
    write_run([_scalars(1, loss=0.5)], name="a")
    ld.mark_dirty("a")
    assert ld.refresh()
    assert ld.get("a").scalar("loss").steps.tolist() == [0, 1]
    write_run([_scalars(0, loss=1.0)], name="c")
    ld.mark_dirty(None)
    ld.refresh()
    assert ld.names() == ["a", "b", "c"]


def test_logdir_ignores_symlinks_out(tmp_path, write_run):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "meta.json").write_text(json.dumps(META))
    logdir = tmp_path / "logs"
    logdir.mkdir()
    os.symlink(outside, logdir / "escape")
    ld = LogDir(logdir)
    ld.refresh()
    assert ld.names() == [] and ld.get("escape") is None


def test_logdir_missing_folder(tmp_path):
    ld = LogDir(tmp_path / "later")
    assert not ld.refresh() and ld.runs() == []


def test_bad_scalars_record_is_skipped_whole(write_run):
    """Regression: the values before a non-number used to be added although the record was reported as skipped."""
    path = write_run([{"kind": "scalars", "step": 0, "values": {"loss": 1.0, "lr": "fast", "acc": 0.5}},
                      _scalars(1, loss=0.5)])
    run = Run(path)
    run.update()
    assert run.scalar("loss").steps.tolist() == [1] and len(run.scalar("acc")) == 0
    assert [(p.line, "'lr' must be a number or null" in p.message) for p in run.problems] == [(1, True)]


def _mixed_lines(rng: np.random.Generator, steps: range) -> list[bytes]:
    """Layer, parameter, input, scalar and finding records as a training run writes them (orjson, compact),
    with changing layer sets, nulls, and records a reader must refuse, in one file."""
    import orjson

    out = []
    for s in steps:
        names = ["a", "b", "c"] if s < 10 else ["a", "b", "c", "d"] if s < 16 else ["c", "a", "b", "d"] if s < 22 else ["b"]
        k = len(names)
        rec = {"kind": "acts", "step": s, "time": 100.0 + s, "layers": names,
               **{f: rng.random(k).round(4).tolist() for f in ("mean", "std", "min", "max", "zero_frac")},
               "dead_frac": [None] * k, "nan": [0] * k, "inf": [0] * k,
               "hist_lo": (-rng.random(k)).tolist(), "hist_hi": rng.random(k).tolist(),
               "hist": rng.integers(0, 10 ** int(rng.integers(1, 9)), size=(k, 4)).tolist()}
        if s % 3 == 0:
            rec["unit_std"] = [None if i == 1 else 0.5 for i in range(k)]
        bad = {5: ("mean", [1.0]), 7: ("std", ["x"] * k), 12: ("min", [[1.0]] * k), 17: ("hist", [[1, 2]] * k),
               3: ("hist_lo", None), 23: ("layers", ["b", "b"])}.get(s)
        if bad is not None:
            rec[bad[0]] = bad[1]
        if s == 26:
            del rec["time"]
        out.append(orjson.dumps(rec))
        params = ["W1", "W2"] if s < 13 else ["W2", "W3"]
        prec = {"kind": "params", "step": s, "time": 100.0 + s, "params": params,
                **{f: rng.random(2).tolist() for f in ("w_norm", "w_std", "upd_norm", "upd_ratio", "grad_norm")},
                "w_nan": [0, 0], "w_inf": [0, 0]}
        if s == 8:
            prec["grad_norm"] = {"W1": 1.0}
        out.append(orjson.dumps(prec))
        out.append(orjson.dumps({"kind": "input", "step": s, "mean": 0.1 * s, "std": 1.0, "min": -1, "max": 1,
                                 "nan": 0, "inf": 0}))
        if s == 9:
            out += [b"{not json", b"", b'{"kind": "acts", "step": 9, "layers": ["a"], "mean": [1], "hist": [[1, 2, 3, 4]], '
                    b'"hist_lo": [0], "hist_hi": [1]}']  # blanks in the counts: the plain path
        if s % 4 == 1:
            out.append(orjson.dumps({"kind": "scalars", "step": s, "time": 100.0 + s, "values": {"loss": 1.0 / (s + 1)}}))
        if s == 20:
            out.append(orjson.dumps({"kind": "finding", "step": s, "rule": "r", "severity": "info"}))
    return [line + b"\n" for line in out]


def _reader_state(run: Run) -> dict:
    def table(t):
        steps, lo, hi, counts = t.histograms()
        return {"names": list(t.names), "steps": t.step_array().tolist(), "times": t.times[: t.n].tolist(),
                **{f: t.field(f).tolist() for f in t.fields}, "hist_rows": list(t.hist_rows),
                "hist": [steps.tolist(), lo.tolist(), hi.tolist(), counts.tolist()]}

    return json.loads(json.dumps({"acts": table(run.acts), "params": table(run.params),
            "input": {k: v.tolist() for k, v in run.input_stats().items()},
            "loss": run.scalar("loss").values.tolist(), "findings": [f.rule for f in run.findings],
            "problems": [str(p) for p in run.all_problems()], "problem_count": run.problem_count,
            "records": (run.records_read, run.records_by_rank), "steps": run.last_step,
            "time": (run.first_time, run.last_time)}).replace("NaN", '"nan"'))  # NaN equal to NaN


def test_layer_records_added_in_runs_equal_adding_them_one_by_one(write_run, monkeypatch):
    """Table.add_many is only a faster way: the same columns, histograms, thinning and problems as add."""
    import core._tail
    from core._columns import Table

    rng = np.random.default_rng(3)
    lines = _mixed_lines(rng, range(30))
    other_rank = _mixed_lines(np.random.default_rng(4), range(6))
    taken = []
    real = Table.add_many

    def spy(self, *args):
        ok = real(self, *args)
        taken.append((len(args[-1]), ok))
        return ok

    states = []
    for batched in (False, True):
        monkeypatch.setattr(Table, "add_many", spy if batched else lambda self, *args: False)
        # Small chunks: runs of records end at chunk boundaries and lines are split across them.
        monkeypatch.setattr(core._tail, "CHUNK", 3000)
        path = write_run(lines[:40], name=f"r{batched}", file="layers.r0.jsonl")
        write_run(other_rank, name=f"r{batched}", file="layers.r1.jsonl")
        run = Run(path, max_hist_rows=4)
        first = run.update()
        write_run(lines[40:], name=f"r{batched}", file="layers.r0.jsonl")
        states.append((first, run.update(), _reader_state(run)))
    assert states[0] == states[1]
    assert any(ok and n > 1 for n, ok in taken) and any(not ok for n, ok in taken)
    state = states[1][2]
    assert state["acts"]["names"] == ["a", "b", "c", "d"] and len(state["acts"]["hist_rows"]) <= 5
    problems = state["problems"]
    assert "layers.r0.jsonl:17: bad acts record (field 'mean' has 1 values for 3 names); skipped" in problems
    assert "layers.r0.jsonl:80: bad acts record (names repeat); skipped" in problems
    assert sum("layers.r1.jsonl" in p for p in problems) == 2 and len(problems) == 11
    assert 9 in state["acts"]["steps"] and state["acts"]["steps"].count(9) == 2  # the plain-path line too


def test_histogram_counts_past_int32_are_kept_exactly(write_run):
    """Counts are stored narrow while they fit; a larger one widens the store without changing any kept row."""
    big = 2 ** 31 + 5
    recs = [_acts(s) for s in range(6)]
    recs[1]["hist"] = [[7, 1, 2, 2 ** 31 - 1], [0, 7, 0, 1]]  # still fits
    recs[2]["hist"] = [[big, 1, 2, 3], [0, 7, 2 ** 40, 1]]
    recs[4]["hist"] = [[-(2 ** 31) - 1, 0, 0, 0], [1, 1, 1, 1]]  # read by orjson's path (negative): kept as read
    path = write_run(recs, file="layers.r0.jsonl")
    run = Run(path, max_hist_rows=4)
    assert run.update() == 6
    steps, _, _, counts = run.acts.histograms()
    want = {s: r["hist"] for s, r in zip(range(6), recs)}
    assert [counts[i].tolist() for i in range(len(steps))] == [want[int(s)] for s in steps]
    assert steps.tolist() == [0, 2, 4]
    small = Run(write_run([_acts(s) for s in range(6)], name="small", file="layers.r0.jsonl"), max_hist_rows=4)
    small.update()
    assert small.memory_bytes() < run.memory_bytes()  # the narrow store takes less
