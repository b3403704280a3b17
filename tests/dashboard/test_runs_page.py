"""The run list and the comparison over many runs: pages of ``PAGE_SIZE``, a name filter, pending rows, a
large comparison remade in the background (no browser)."""

from __future__ import annotations

import json
import os
import time

from core.catalog import SYNC_LIMIT
from core.logdir import LogDir
from dashboard.context import AppContext
from dashboard.pages import runs as runs_page
from tests.dashboard._components import texts


def make_runs(root, n, t0=None):
    t0 = time.time() - 3600 if t0 is None else t0
    for i in range(n):
        run = root / f"run{i:03d}"
        run.mkdir(parents=True)
        (run / "meta.json").write_text(json.dumps({"run": run.name, "status": "finished"}))
        (run / "scalars.r0.jsonl").write_text(
            json.dumps({"kind": "scalars", "step": 0, "time": t0, "values": {"loss": 2.3}}) + "\n"
            + json.dumps({"kind": "scalars", "step": i, "time": t0 + 1, "values": {"loss": 1.0}}) + "\n")
        os.utime(run / "scalars.r0.jsonl", (t0 + i, t0 + i))  # run099 written last


def context(root):
    ctx = AppContext(LogDir(root), index=None)
    ctx.refresh()
    return ctx


def test_runs_are_paged_newest_first_and_filtered_by_name(tmp_path):
    make_runs(tmp_path, SYNC_LIMIT - 4)
    ctx = context(tmp_path)
    table, pager, page, first, last, style, _ = runs_page._view(ctx, None, 0)
    names = [t for t in texts(table) if t.startswith("run0")]
    assert names[:3] == ["run059", "run058", "run057"] and len(names) == runs_page.PAGE_SIZE
    assert pager == f"runs 1–50 of {SYNC_LIMIT - 4}" and first and not last and style == {}
    table, pager, page, first, last, *_ = runs_page._view(ctx, None, 1)
    assert [t for t in texts(table) if t.startswith("run0")][-1] == "run000" and page == 1 and last
    table, pager, page, *_ = runs_page._view(ctx, None, 99)  # past the end: the last page
    assert page == 1
    table, pager, *_ = runs_page._view(ctx, "N01", 0)
    assert [t for t in texts(table) if t.startswith("run0")] == [f"run{i:03d}" for i in range(19, 9, -1)]
    assert pager.startswith("runs 1–10 of 10 matching")
    table, pager, *_ = runs_page._view(ctx, "nothing like it", 0)
    assert "No run name contains that text." in texts(table)
    *_, style, _ = runs_page._view(ctx, "run000", 0)
    assert style == {"display": "none"}  # one page: no page buttons


def test_a_large_directory_lists_at_once_and_fills_in(tmp_path):
    make_runs(tmp_path, SYNC_LIMIT + 16)
    ctx = context(tmp_path)
    ctx.catalog.fill_small()  # too many to read on the spot
    table, pager, *_ = runs_page._view(ctx, None, 0)
    assert "summarising…" in texts(table)
    assert f"summarising {SYNC_LIMIT + 16} of {SYNC_LIMIT + 16} in the background" in pager
    ctx.catalog.fill()
    table, pager, *_ = runs_page._view(ctx, None, 0)
    assert "summarising…" not in texts(table) and "background" not in pager
    assert "finished" in texts(table)


def test_hostile_run_names_are_text(tmp_path):
    make_runs(tmp_path, 1)
    evil = '<img src=x onerror=alert(1)>{"a"}'
    os.rename(tmp_path / "run000", tmp_path / evil)
    ctx = context(tmp_path)
    layout = runs_page.layout(ctx)
    assert evil in texts(layout)


def test_a_list_seeded_from_the_index_says_it_is_being_checked(tmp_path):
    from core.index import SummaryIndex

    make_runs(tmp_path / "logs", 3)
    root = tmp_path / "logs"
    first = AppContext(LogDir(root), index=SummaryIndex(root, tmp_path / "cache"))
    first.refresh()
    first.catalog.fill()
    first.catalog.close()
    ctx = AppContext(LogDir(root), index=SummaryIndex(root, tmp_path / "cache"))
    assert ctx.catalog.seed_listing() == 3
    _, text, *_ = runs_page._view(ctx, None, 0)
    assert text == "runs 1–3 of 3 · checking every run for changes since the last start"
    ctx.catalog.refresh(full=True)
    _, text, *_ = runs_page._view(ctx, None, 0)
    assert text == "runs 1–3 of 3"
    ctx.catalog.close()


def test_a_large_comparison_is_remade_in_the_background_while_the_last_one_is_shown(tmp_path, monkeypatch):
    from dashboard.app import version_key
    from dashboard.pages import compare as compare_page

    monkeypatch.setattr(compare_page, "BACKGROUND_ROWS", 2)
    make_runs(tmp_path / "logs", 3)
    ctx = context(tmp_path / "logs")
    first = compare_page._snapshot(ctx)  # none yet: made in the request
    assert len(first.frame) == 3
    key = version_key(ctx, "/compare", [], time.time())["key"]

    make_runs(tmp_path / "more", 1)
    os.rename(tmp_path / "more" / "run000", tmp_path / "logs" / "late")
    ctx.catalog.logdir.mark_dirty(None)
    ctx.refresh()
    assert compare_page._snapshot(ctx) is first  # out of date: shown while the next is made
    deadline = time.monotonic() + 10
    while ctx.generation == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ctx.generation == 1
    assert version_key(ctx, "/compare", [], time.time())["key"] != key  # the next tick redraws
    again = compare_page._snapshot(ctx)
    assert again is not first and sorted(again.frame["run"]) == ["late", "run000", "run001", "run002"]
    ctx.catalog.close()
