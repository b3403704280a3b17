"""core._sample: a data file far larger than what the reader keeps opens sampled, then every finding is read."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import time
import tracemalloc

import numpy as np
import pytest

from core import LogDir, Run, Sampling
from dashboard.pages._common import sampled_note

STEPS = 3000  # scalar steps; layer statistics every EVERY steps
EVERY = 5
FINDING_STEPS = (7, 1111, 2222, 2998)
NAN_STEPS = (5, 1500, 1501, 2999)
SAMPLE = Sampling(above=60_000, rows=40)


def _line(rec: dict) -> bytes:
    return json.dumps(rec, separators=(",", ":")).encode() + b"\n"


def _scalar(step: int) -> dict:
    if step in NAN_STEPS:
        return {"kind": "scalars", "step": step, "time": 1.0 + step, "values": {"loss": None, "lr": 0.1},
                "nonfinite": {"loss": "nan"}}
    return {"kind": "scalars", "step": step, "time": 1.0 + step, "values": {"loss": 1.0 / (1 + step), "lr": 0.1}}


def _layers(step: int, k: int = 4) -> list[dict]:
    names = [f"l{i}" for i in range(k)]
    return [
        {"kind": "input", "step": step, "mean": 0.0, "std": 1.0, "min": -1.0, "max": 1.0, "nan": 0, "inf": 0},
        {"kind": "acts", "step": step, "layers": names, "mean": [0.1 * i for i in range(k)], "std": [1.0] * k,
         "min": [-1.0] * k, "max": [1.0] * k, "zero_frac": [0.0] * k, "dead_frac": [0.0] * k,
         "sat_frac": [None] * k, "nan": [0] * k, "inf": [0] * k, "hist_lo": [-1.0] * k, "hist_hi": [1.0] * k,
         "hist": [[step % 7, 1, 2, 3]] * k},
        {"kind": "params", "step": step, "params": ["W"], "w_norm": [1.0], "w_std": [0.1], "upd_norm": [0.001],
         "upd_ratio": [0.001], "grad_norm": [0.1], "w_nan": [0], "w_inf": [0], "grad_nan": [0], "grad_inf": [0]},
    ]


def _finding(step: int) -> dict:
    return {"kind": "finding", "step": step, "rule": f"rule_{step}", "severity": "warning", "layers": [],
            "message": f"held at step {step}", "fix": "none"}


def _write(folder, steps: int = STEPS, corrupt_at: int | None = None) -> None:
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"format": "babysitter", "format_version": 1, "status": "finished",
                                                  "created": 1.0, "every": EVERY}))
    with open(folder / "scalars.r0.jsonl", "wb") as f:
        for s in range(steps):
            f.write(_line(_scalar(s)))
            if s in FINDING_STEPS:
                f.write(_line(_finding(s)))
            if s == corrupt_at:
                f.write(b'{"kind":"finding","step":' + str(s).encode() + b',"rule":\n')
    with open(folder / "layers.r0.jsonl", "wb") as f:
        for s in range(0, steps, EVERY):
            for rec in _layers(s):
                f.write(_line(rec))


def _lines_of(path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


@pytest.fixture
def big(tmp_path):
    _write(tmp_path / "big")
    return tmp_path / "big"


def test_a_large_file_opens_with_evenly_spaced_rows_and_its_last_rows(big):
    run = Run(big, sample=SAMPLE)
    run.update()
    taken = {s.file: s for s in run.sampled()}
    assert set(taken) == {"scalars.r0.jsonl", "layers.r0.jsonl"}
    lay = taken["layers.r0.jsonl"]
    assert lay.kinds == ("input", "acts", "params") and 0 < lay.groups <= SAMPLE.rows
    steps = run.acts.step_array()
    logged = STEPS // EVERY
    assert len(steps) < logged / 2  # far from every logged step
    assert np.all(np.diff(steps) > 0) and steps[0] == 0
    # The rows before the tail are evenly spaced; the tail is every logged step to the last.
    head = steps[: lay.groups]
    gaps = np.diff(head)
    assert gaps.max() <= 2 * np.median(gaps) and gaps.min() >= np.median(gaps) / 2
    tail = steps[lay.groups:]
    assert len(tail) > 1 and tail[-1] == (STEPS - 1) // EVERY * EVERY and np.all(np.diff(tail) == EVERY)
    # Each sampled row has all of its step: input, acts and params lines of one group.
    assert list(run.params.step_array()) == list(steps) and list(run.input_stats()["step"]) == list(steps)
    hsteps, _, _, counts = run.acts.histograms()
    assert list(hsteps) == list(steps) and all(int(c[0, 0]) == s % 7 for s, c in zip(hsteps, counts))
    loss = run.scalar("loss")
    assert len(loss) < STEPS / 4 and loss.steps[-1] == STEPS - 1 and np.all(np.diff(loss.steps) > 0)
    assert run.problems == []


def test_every_finding_and_nan_loss_is_read_once_the_search_ends(big):
    run = Run(big, sample=SAMPLE)
    run.update()
    assert run.searching
    note = sampled_note(run)
    assert "shown sampled" in note and "Searching the rest for findings" in note
    rounds = 0
    while run.searching:
        run.update()
        rounds += 1
        assert rounds < 100
    assert sorted(f.step for f in run.findings) == list(FINDING_STEPS)
    loss = run.scalar("loss")
    assert sorted(loss.steps[np.isnan(loss.values)].tolist()) == list(NAN_STEPS)
    assert len(set(loss.steps.tolist())) == len(loss)  # no line read twice
    assert np.all(np.diff(loss.steps) > 0)  # the series comes back sorted
    assert "Every finding and NaN/Inf loss in these files was read" in sampled_note(run)
    assert run.problems == []


def test_a_small_search_step_takes_several_updates_and_each_changes_the_version(big):
    run = Run(big, sample=Sampling(above=60_000, rows=40, scan_step=20_000))
    run.update()
    versions = [run.version]
    while run.searching:
        run.update()
        versions.append(run.version)
    assert len(versions) > 3 and len(set(versions)) == len(versions)
    assert sorted(f.step for f in run.findings) == list(FINDING_STEPS)


def test_the_data_version_moves_only_when_the_search_finds_something_or_ends(big):
    # What the pages draw is keyed by it: a search step that found nothing redraws nothing.
    run = Run(big, sample=Sampling(above=60_000, rows=40, scan_step=20_000))
    run.update()
    steps = []
    while run.searching:
        before = (run.version, run.data_version, run.records_read, run.problem_count, True)
        run.update()
        steps.append((before, (run.version, run.data_version, run.records_read, run.problem_count, run.searching)))
    assert all(v1 != v0 for (v0, *_), (v1, *_) in steps)
    found = [(d0 != d1) == ((r0, p0, s0) != (r1, p1, s1)) for (_, d0, r0, p0, s0), (_, d1, r1, p1, s1) in steps]
    assert all(found)
    assert any(d0 == d1 for (_, d0, *_), (_, d1, *_) in steps)  # steps that found nothing
    assert any(d0 != d1 for (_, d0, *_), (_, d1, *_) in steps)  # the findings and NaN losses
    assert run.data_version <= run.version
    with open(big / "scalars.r0.jsonl", "ab") as f:
        f.write(_line(_scalar(STEPS)))
    run.update()
    assert run.data_version == run.version  # new lines are new data


def test_a_search_step_that_finds_nothing_diagnoses_nothing_and_changes_no_listing(big):
    # The run list, the comparison and the run page's findings are keyed by Run.data_version:
    # a search step that found nothing (most of them) diagnoses no run and redraws no list.
    from core.summary import SummaryCache

    ld = LogDir(big.parent, sample=Sampling(above=60_000, rows=40, scan_step=20_000))
    ld.refresh()
    run = ld.get("big")
    cache = SummaryCache()
    cache.get(run)
    quiet = moved = 0
    while run.searching:
        before = (run.data_version, ld.version, cache.computed)
        ld.refresh()
        cache.get(run)
        if run.data_version == before[0]:
            quiet += 1
            assert (ld.version, cache.computed) == before[1:]
        else:
            moved += 1
            assert ld.version != before[1] and cache.computed == before[2] + 1
    assert quiet and moved
    assert sorted(f.step for f in cache.findings(run) if f.rule.startswith("rule_")) == list(FINDING_STEPS)


def test_a_file_below_the_threshold_is_read_in_full(big):
    run = Run(big, sample=Sampling(above=10 << 20))
    run.update()
    assert run.sampled() == [] and not run.searching and sampled_note(run) == ""
    assert len(run.acts) == STEPS // EVERY and len(run.scalar("loss")) == STEPS


def test_lines_appended_after_a_sampled_open_are_read(big):
    run = Run(big, sample=SAMPLE)
    run.update()
    with open(big / "scalars.r0.jsonl", "ab") as f:
        f.write(_line(_scalar(STEPS)) + _line(_finding(STEPS)))
    with open(big / "layers.r0.jsonl", "ab") as f:
        for rec in _layers(STEPS):
            f.write(_line(rec))
    assert run.update() >= 5
    assert run.acts.step_array()[-1] == STEPS and run.scalar("loss").steps[-1] == STEPS
    assert STEPS in [f.step for f in run.findings]


def test_a_bad_line_names_its_byte_offset_until_the_lines_are_counted_then_its_line(big):
    run = Run(big, sample=Sampling(above=60_000, rows=40, scan_step=4096))
    run.update()
    path = big / "scalars.r0.jsonl"
    with open(path, "ab") as f:
        f.write(b"{not json\n")
    run.update()
    head_end = next(s.head_end for s in run.sampled() if s.file == path.name)
    (p,) = [p for p in run.problems if "not valid JSON" in p.message]
    assert p.line == 0 and f"after byte {head_end}" in p.message
    while run.searching:
        run.update()
    with open(path, "ab") as f:
        f.write(b"[1]\n")
    run.update()
    (q,) = [p for p in run.problems if "expected a JSON object" in p.message]
    assert q.line == len(_lines_of(path)) - 1  # the last line (the file ends with a newline)


def test_bad_lines_in_the_sampled_groups_name_their_own_byte_offsets(tmp_path):
    # The groups' lines are parsed together: each problem still names the start of its own line.
    folder = tmp_path / "bad"
    _write(folder)
    path = folder / "scalars.r0.jsonl"
    lines = [ln if i % 3 else ln[:-1] for i, ln in enumerate(path.read_bytes().split(b"\n")[:-1])]
    path.write_bytes(b"".join(ln + b"\n" for ln in lines))  # every third line without its last brace
    run = Run(folder, sample=SAMPLE)
    run.update()
    data = path.read_bytes()
    offsets = [int(re.search(r"the line at byte (\d+):", p.message).group(1)) for p in run.problems
               if "not valid JSON" in p.message and "the line at byte" in p.message]
    assert len(offsets) > 5
    for at in offsets:
        assert at == 0 or data[at - 1:at] == b"\n"
        line = data[at:data.index(b"\n", at)]
        assert not line.endswith(b"}}") and line in lines  # a line cut short, exactly the one named


def test_a_corrupt_finding_in_the_skipped_part_is_reported_with_its_line(tmp_path):
    _write(tmp_path / "r", corrupt_at=1700)
    run = Run(tmp_path / "r", sample=SAMPLE)
    run.update()
    while run.searching:
        run.update()
    lines = _lines_of(tmp_path / "r" / "scalars.r0.jsonl")
    want = next(i for i, ln in enumerate(lines, 1) if ln.endswith(b'"rule":'))
    bad = [p for p in run.problems if p.file == "scalars.r0.jsonl"]
    assert len(bad) == 1 and bad[0].line == want and "not valid JSON" in bad[0].message
    assert sorted(f.step for f in run.findings) == list(FINDING_STEPS)


def test_the_search_leaves_a_line_the_writer_has_not_finished_alone(tmp_path):
    """A finding found in the skipped part while the file ends part-way through a line: both read whole."""
    from core._tail import FileTail

    path = tmp_path / "scalars.r0.jsonl"
    with open(path, "wb") as f:
        for step in range(STEPS):
            f.write(_line({"kind": "scalars", "step": step, "time": 1.0, "values": {"loss": 1.0}}))
            if step == 100:
                f.write(_line({"kind": "finding", "step": step, "rule": "x", "severity": "warning", "message": "m"}))
        f.write(b'{"kind":"scalars","step":%d,"ti' % STEPS)  # the writer is part-way through this line
    tail = FileTail(path, path.name)
    tail.read_new(None, Sampling(above=60_000, rows=40, scan_step=10 << 20))
    found = tail.read_new(None, Sampling(above=60_000, rows=40, scan_step=10 << 20))
    assert [r["step"] for r in found.records if r["kind"] == "finding"] == [100] and not found.problems
    with open(path, "ab") as f:
        f.write(b'me":1.0,"values":{"loss":2.0}}\n')
    last = tail.read_new(None, Sampling(above=60_000, rows=40, scan_step=10 << 20))
    assert [(r["step"], r["values"]) for r in last.records] == [(STEPS, {"loss": 2.0})] and not last.problems


def test_what_a_sampled_open_holds_does_not_grow_with_the_file(tmp_path):
    held = []
    for n, steps in enumerate((STEPS, 4 * STEPS)):
        _write(tmp_path / f"r{n}", steps=steps)
        tracemalloc.start()
        run = Run(tmp_path / f"r{n}", sample=SAMPLE)
        run.update()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        held.append((run.records_read, len(run.acts), peak))
    (rec0, rows0, peak0), (rec1, rows1, peak1) = held
    assert rows1 <= rows0 * 1.5 and rec1 <= rec0 * 1.5 and peak1 <= peak0 * 2


def test_the_dashboard_logdir_searches_an_opened_run_on_each_refresh(big):
    ld = LogDir(big.parent, sample=SAMPLE)
    ld.refresh()
    run = ld.get("big")
    assert run is not None and run.searching
    for _ in range(50):
        if not run.searching:
            break
        ld.refresh()
    assert not run.searching and sorted(f.step for f in run.findings) == list(FINDING_STEPS)


def test_the_summary_of_a_run_still_searching_is_not_stored_as_that_of_its_files(big, tmp_path):
    from core.catalog import Catalog
    from core.index import SummaryIndex

    ld = LogDir(big.parent, sample=Sampling(above=60_000, rows=40, scan_step=4096))
    ld.refresh()
    cat = Catalog(ld, index=SummaryIndex(big.parent, tmp_path / "cache"))
    assert ld.get("big").searching
    partial = cat.record("big")
    assert partial is not None and "big" not in SummaryIndex(big.parent, tmp_path / "cache").load()
    while ld.get("big").searching:  # each refresh (the pages' ticks) searches on
        ld.refresh()
    whole = cat.record("big")
    assert sorted(f.step for f in whole.findings if f.rule.startswith("rule_")) == list(FINDING_STEPS)
    assert "big" in SummaryIndex(big.parent, tmp_path / "cache").load()


def test_a_huge_run_is_left_to_the_background_worker_not_summarised_on_the_spot(big, tmp_path):
    from core.catalog import Catalog

    ld = LogDir(big.parent, sample=SAMPLE)
    ld.refresh()
    assert ld.listing("big").largest_file() == max(p.stat().st_size for p in big.iterdir())
    cat = Catalog(ld, index=None)
    cat.fill_small()  # what a visit of the run list does
    assert cat.pending() == ["big"] and not ld.is_open("big")
    assert cat.fill(["big"]) == 1  # a summariser reads the files to their end, findings included
    rec = cat.record("big")
    assert sorted(f.step for f in rec.findings if f.rule.startswith("rule_")) == list(FINDING_STEPS)
    small = Catalog(LogDir(big.parent), index=None)  # without sampling nothing is huge
    small.logdir.refresh()
    small.fill_small()
    assert small.pending() == []


def test_the_background_summaries_take_the_small_runs_before_a_huge_one(tmp_path):
    """Reading a huge run to its end takes seconds: the small runs listed beside it do not wait for it."""
    from core.catalog import BATCH, SYNC_LIMIT, Catalog

    root = tmp_path / "runs"
    root.mkdir()
    _write(root / "huge")
    for i in range(SYNC_LIMIT + 6):
        _write(root / f"small{i:03d}", steps=5)
    old = time.time() - 3600  # written an hour ago: none is live, the huge one the most recent
    for run in root.iterdir():
        for f in run.iterdir():
            os.utime(f, (old + (60 if run.name == "huge" else 0), old + (60 if run.name == "huge" else 0)))
    ld = LogDir(root, sample=SAMPLE)
    ld.refresh()
    cat = Catalog(ld, index=None)
    cat._pool = False  # summarised in this process: what is read, not where
    assert cat.pending()[0] == "huge"
    cat._fill_some()
    left = cat.pending()
    assert "huge" in left and len(left) == 1 + SYNC_LIMIT + 6 - (BATCH - 1)  # the batch's small runs, not the huge


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no process priorities on this system")
def test_the_background_worker_reads_a_huge_run_at_the_lowest_priority(big, tmp_path):
    # Reading a huge run to its end takes a core for seconds: a page being opened gets it first.
    from core.catalog import WORKER_NICE, Catalog

    before = {p.pid for p in multiprocessing.active_children()}
    for f in big.iterdir():  # written an hour ago: not a live run, which the server itself follows
        os.utime(f, (time.time() - 3600, time.time() - 3600))
    ld = LogDir(big.parent, sample=SAMPLE)
    ld.refresh()
    cat = Catalog(ld, index=None)
    cat.start()
    try:
        deadline = time.monotonic() + 120
        while cat.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cat.pending() == [] and not ld.is_open("big")  # summarised by the worker, not in this process
        rec = cat.record("big")
        assert sorted(f.step for f in rec.findings if f.rule.startswith("rule_")) == list(FINDING_STEPS)
        workers = [p for p in multiprocessing.active_children() if p.pid not in before]
        assert workers
        want = min(19, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICE)
        assert [os.getpriority(os.PRIO_PROCESS, p.pid) for p in workers] == [want] * len(workers)
    finally:
        cat.stop()


def test_a_run_page_redraws_only_when_the_search_finds_something_and_says_how_far_it_got(big):
    from dashboard.app import create_app
    from tests.reliability._dashclient import PageDriver, flask_transport

    ld = LogDir(big.parent, sample=Sampling(above=60_000, rows=40, scan_step=20_000))
    drv = PageDriver(*flask_transport(create_app(ld, index=None, summarise=False)))
    comps = drv.visit("/run/big")
    note = next(d for d in drv.deps if [x["id"] for x in d["inputs"]] == ["app-search"])
    keys, notes, findings = [], [], []
    read_all = "Every finding and NaN/Inf loss in these files was read"
    while not notes or read_all not in notes[-1] and len(notes) < 200:
        key, read = comps["app-version"]["data"]["key"], comps["app-search"].get("data")
        drv.tick(comps)
        if comps["app-version"]["data"]["key"] != key:
            drv.page_callbacks(comps)  # what a browser does when the version store changed
        elif comps["app-search"].get("data") != read:
            drv._call(note, comps, "app-search.data")  # only the sentence about the search
        keys.append(comps["app-version"]["data"]["key"])
        notes.append(comps["run-sampled"]["children"])
        findings.append(json.dumps(comps["overview-findings"]["children"]))
    assert drv.errors == []
    assert read_all in notes[-1]
    searching = [dict(re.findall(r"(\w+\.r0\.jsonl) (\d+)%", n.split("Searching")[-1])) for n in notes]
    done = [sum(int(s.get(f, 100)) for f in ("layers.r0.jsonl", "scalars.r0.jsonl")) for s in searching]
    assert done == sorted(done) and len(set(done)) > 3  # the note moved on with the search
    assert len(set(map(tuple, keys))) < len(set(notes))  # fewer redraws than steps of the search
    assert all(f"rule_{s}" in findings[-1] for s in FINDING_STEPS)  # yet every finding is shown
