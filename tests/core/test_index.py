"""The persisted summary index and the catalog over it: what is read again and what is not.

A run whose files change, shrink, are replaced or deleted is summarised again; one whose
files are as they were is not read at all, by a new catalog over the same index (a server
restart) as by the same one. A damaged, unwritable or outdated index costs a warning and
a re-read, never an error.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from core import index as index_mod
from core.catalog import Catalog
from core.index import RunRecord, SummaryIndex
from core.logdir import LogDir


def scalars(steps, loss=1.0, t0=None):
    t0 = time.time() if t0 is None else t0
    return [{"kind": "scalars", "step": s, "time": t0 + s, "values": {"loss": loss / (s + 1), "val_acc": 0.1 * s}}
            for s in steps]


def write(root: Path, name: str, steps, status="finished", hparams=None):
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    (run / "meta.json").write_text(json.dumps({"run": name, "status": status, "hparams": hparams or {"lr": 0.1}}))
    with open(run / "scalars.r0.jsonl", "a") as f:
        for rec in scalars(steps):
            f.write(json.dumps(rec) + "\n")
    return run


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "logs"
    for i in range(4):
        write(r, f"run{i}", range(10))
    return r


def opened(root, cache):
    cat = Catalog(LogDir(root), index=SummaryIndex(root, cache))
    cat.refresh()
    return cat


def steps_of(cat, name):
    return cat.row(name).record.summary.steps


def test_a_restart_over_unchanged_runs_reads_no_run(root, tmp_path):
    cache = tmp_path / "cache"
    first = opened(root, cache)
    assert len(first.pending()) == 4
    first.fill()
    assert first.read == 4 and first.index.writes == 4
    first.close()

    again = opened(root, cache)
    assert again.pending() == []
    assert [r.status for r in again.rows()] == ["finished"] * 4
    assert steps_of(again, "run2") == 9
    assert again.read == 0 and again.index.writes == 0
    assert not any(again.logdir.is_open(n) for n in again.logdir.names())  # no data file was opened


@pytest.mark.parametrize("change", ["appended", "shrunk", "replaced", "meta"])
def test_a_changed_run_is_summarised_again(root, tmp_path, change):
    cache = tmp_path / "cache"
    opened(root, cache).fill()
    data = root / "run1" / "scalars.r0.jsonl"
    if change == "appended":
        with open(data, "a") as f:
            f.write(json.dumps(scalars([10])[0]) + "\n")
        want = 10
    elif change == "shrunk":
        lines = data.read_text().splitlines(keepends=True)
        data.write_text("".join(lines[:5]))
        want = 4
    elif change == "replaced":  # same size and contents up to a value, a new file (new inode)
        text = data.read_text()
        tmp = data.with_suffix(".tmp")
        tmp.write_text(text.replace('"step": 9', '"step": 8', 1).replace('"step": 8,', '"step": 7,', 1))
        os.replace(tmp, data)
        want = 8
    else:
        meta = json.loads((root / "run1" / "meta.json").read_text())
        meta["status"] = "stopped"
        (root / "run1" / "meta.json").write_text(json.dumps(meta))
        want = 9
    cat = opened(root, cache)
    assert cat.pending() == ["run1"]
    cat.fill()
    assert cat.read == 1
    assert steps_of(cat, "run1") == want
    if change == "meta":
        assert cat.row("run1").status == "stopped"
    assert steps_of(cat, "run0") == 9


def test_a_deleted_run_leaves_the_list_and_the_index(root, tmp_path):
    cache = tmp_path / "cache"
    cat = opened(root, cache)
    cat.fill()
    shutil.rmtree(root / "run3")
    cat.logdir.mark_dirty(None)
    cat.refresh()
    assert [r.name for r in cat.rows()] == sorted(["run0", "run1", "run2"], key=lambda n: -cat.row(n).activity)
    assert "run3" not in cat.index.load()
    write(root, "run3", range(3))  # made again under the same name: its own summary
    again = opened(root, cache)
    assert again.pending() == ["run3"]
    again.fill()
    assert steps_of(again, "run3") == 2


def test_a_run_being_read_is_followed_in_process(root, tmp_path):
    cat = opened(root, tmp_path / "cache")
    cat.fill()
    run = cat.logdir.get("run0")  # a page opened it
    with open(run.path / "scalars.r0.jsonl", "a") as f:
        f.write(json.dumps(scalars([10])[0]) + "\n")
    cat.logdir.mark_dirty("run0")
    cat.refresh()
    assert steps_of(cat, "run0") == 10
    assert "run0" not in cat.pending()


def test_the_index_of_other_code_is_dropped(root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    opened(root, cache).fill()
    monkeypatch.setattr(index_mod, "_code_key", "another-version")
    cat = opened(root, cache)
    assert len(cat.pending()) == 4


def test_a_damaged_index_is_replaced_with_a_warning(root, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = opened(root, cache)
    first.fill()
    path = first.index.path
    first.close()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    cat = opened(root, cache)
    assert "damaged" in caplog.text
    assert cat.index.persistent and len(cat.pending()) == 4
    cat.fill()
    assert steps_of(cat, "run0") == 9


def test_a_damaged_record_is_read_again(root, tmp_path):
    cache = tmp_path / "cache"
    first = opened(root, cache)
    first.fill()
    path = first.index.path
    first.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE runs SET record='{\"summary\": 3}' WHERE name='run2'")
    cat = opened(root, cache)
    assert cat.pending() == []  # records are decoded when first shown
    assert cat.row("run2").record is None and cat.row("run2").status == "pending"
    assert cat.pending() == ["run2"] and "run2" not in cat.index.load()
    cat.fill()
    assert steps_of(cat, "run2") == 9 and cat.read == 1


def test_an_unwritable_cache_keeps_summaries_in_memory(root, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    cat = opened(root, blocker / "cache")
    assert "cannot be used" in caplog.text and not cat.index.persistent
    cat.fill()
    assert steps_of(cat, "run1") == 9


def test_the_cache_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BABYSITTER_CACHE", str(tmp_path / "c"))
    assert index_mod.cache_dir() == tmp_path / "c"
    monkeypatch.setenv("BABYSITTER_CACHE", "off")
    assert index_mod.cache_dir() is None
    monkeypatch.delenv("BABYSITTER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert index_mod.cache_dir() == tmp_path / "x" / "babysitter"


def test_a_record_keeps_non_finite_numbers(root, tmp_path):
    run = root / "nan"
    run.mkdir()
    (run / "meta.json").write_text(json.dumps({"run": "nan", "status": "crashed", "hparams": {"lr": 10}}))
    (run / "scalars.r0.jsonl").write_text(
        '{"kind":"scalars","step":0,"time":1,"values":{"loss":2.3}}\n'
        '{"kind":"scalars","step":1,"time":2,"values":{"loss":null},"nonfinite":{"loss":"nan"}}\n')
    cat = opened(root, tmp_path / "cache")
    cat.fill()
    rec = RunRecord.from_text(cat.index.load()["nan"][1])
    assert rec is not None and math.isnan(rec.summary.final_loss) and rec.summary.diverged
    assert rec.summary.hparams == {"lr": 10} and rec.meta_status == "crashed"
    assert [f.rule for f in rec.findings] == [f.rule for f in cat.row("nan").record.findings]
    assert RunRecord.from_text("not json") is None


def test_a_restart_lists_the_stored_runs_at_once_and_the_full_refresh_corrects_them(root, tmp_path):
    cache = tmp_path / "cache"
    first = opened(root, cache)
    first.fill()
    first.close()
    write(root, "run1", range(10, 15))  # changed while no server ran
    shutil.rmtree(root / "run3")  # deleted
    write(root, "run4", range(3))  # new

    cat = Catalog(LogDir(root), index=SummaryIndex(root, cache))
    assert cat.seed_listing() == 4
    assert cat.logdir.verified is False
    assert cat.logdir.names() == ["run0", "run1", "run2", "run3"]  # what the last start saw, not re-listed yet
    assert steps_of(cat, "run1") == 9 and cat.pending() == []
    assert cat.read == 0 and not any(cat.logdir.is_open(n) for n in cat.logdir.names())
    cat.refresh()  # a tick: nothing was marked dirty, so no full listing happens in a request
    assert cat.logdir.verified is False and "run4" not in cat.logdir.names()
    assert cat.logdir.get("run4") is not None  # a run written since is found on disk when asked for

    v = cat.version
    cat.refresh(full=True)  # what the watcher's start does
    assert cat.logdir.verified is True and cat.version > v
    assert cat.logdir.names() == ["run0", "run1", "run2", "run4"]
    assert cat.pending() == ["run1"]  # changed: summarised again; run4 is open, so followed in process
    cat.fill()
    assert steps_of(cat, "run1") == 14 and steps_of(cat, "run4") == 2
    assert "run3" not in cat.index.load()


def test_a_listed_folder_is_not_seeded_again(root, tmp_path):
    cache = tmp_path / "cache"
    opened(root, cache).fill()
    cat = opened(root, cache)  # listed by its refresh
    assert cat.seed_listing() == 0 and cat.logdir.verified is True
    empty = Catalog(LogDir(root), index=SummaryIndex(root, tmp_path / "other"))
    assert empty.seed_listing() == 0 and empty.logdir.verified is True  # nothing stored: listed as usual
