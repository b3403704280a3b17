"""The watcher with a real watchdog observer: appends, new runs, deleted runs, half-written lines.

Waits poll with a deadline (the condition is checked until it holds); no sleep is an assertion.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable

import pytest

from core import LogDir
from dashboard import Watcher
from dashboard import watcher as watcher_mod

DEADLINE = 10.0


def wait_for(cond: Callable[[], bool], logdir: LogDir, deadline: float = DEADLINE) -> bool:
    """Refresh the log dir until ``cond()`` holds or the deadline passes."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        logdir.refresh()
        if cond():
            return True
        time.sleep(0.02)
    return False


def line(step: int, loss: float) -> str:
    return json.dumps({"kind": "scalars", "step": step, "time": time.time(), "values": {"loss": loss}}) + "\n"


def make_run(root: Path, name: str, steps: int = 3) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"format": "babysitter", "format_version": 1, "run": name,
                                             "status": "running"}))
    with open(d / "scalars.r0.jsonl", "a") as f:
        for s in range(steps):
            f.write(line(s, 1.0 / (s + 1)))
    return d


def loss_len(logdir: LogDir, name: str) -> int:
    run = logdir.get(name)
    return -1 if run is None else len(run.scalar("loss"))


@pytest.fixture(params=["inotify", "polling"])
def watched(request, tmp_path):
    root = tmp_path / "runs"
    make_run(root, "before")  # exists before the observer starts: found by the initial scan
    logdir = LogDir(root)
    w = Watcher(logdir, poll=request.param == "polling", poll_interval=0.2)
    w.start()
    try:
        assert w.mode == request.param
        yield root, logdir, w
    finally:
        w.stop()
    assert w.observer is None


def test_existing_runs_are_read_at_start(watched):
    root, logdir, _ = watched
    assert loss_len(logdir, "before") == 3


def test_appended_lines_are_read_after_an_event(watched):
    root, logdir, _ = watched
    assert loss_len(logdir, "before") == 3  # opened: from now on only new bytes are read
    v0 = logdir.version
    with open(root / "before" / "scalars.r0.jsonl", "a") as f:
        f.write(line(3, 0.2) + line(4, 0.1))
    assert wait_for(lambda: loss_len(logdir, "before") == 5, logdir)
    assert logdir.version > v0


def test_new_run_appears_and_deleted_run_disappears(watched):
    root, logdir, _ = watched
    make_run(root, "new", steps=2)
    assert wait_for(lambda: loss_len(logdir, "new") == 2, logdir)
    shutil.rmtree(root / "before")
    assert wait_for(lambda: "before" not in logdir.names(), logdir)
    assert logdir.names() == ["new"]


def test_half_written_line_waits_for_its_newline(watched):
    root, logdir, _ = watched
    whole = line(3, 0.5)
    path = root / "before" / "scalars.r0.jsonl"
    with open(path, "a") as f:
        f.write(whole[:20])
    # The partial write does produce an event and a read; the record must not appear yet.
    run = logdir.get("before")
    assert wait_for(lambda: run.bytes_read > 0 and run._tails["scalars.r0.jsonl"].pending_bytes == 20, logdir)
    assert loss_len(logdir, "before") == 3
    assert not run.problems
    with open(path, "a") as f:
        f.write(whole[20:])
    assert wait_for(lambda: loss_len(logdir, "before") == 4, logdir)
    assert list(run.scalar("loss").steps) == [0, 1, 2, 3]
    assert not run.problems


def test_rewritten_run_is_read_again(watched):
    root, logdir, _ = watched
    path = root / "before" / "scalars.r0.jsonl"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(line(0, 9.0))
    tmp.replace(path)  # new inode, shorter file
    assert wait_for(lambda: loss_len(logdir, "before") == 1, logdir)
    assert logdir.get("before").scalar("loss").values[0] == 9.0


def test_inotify_failure_falls_back_to_polling(tmp_path, monkeypatch, caplog):
    """When inotify cannot start (watch limit: ENOSPC), the watcher polls instead and says so."""
    real = watcher_mod.Observer

    class Exhausted(real):
        def start(self):
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watcher_mod, "Observer", Exhausted)
    root = tmp_path / "runs"
    logdir = LogDir(root)
    with caplog.at_level(logging.WARNING, logger="dashboard.watcher"):
        with Watcher(logdir, poll_interval=0.2) as w:
            assert w.mode == "polling"
            make_run(root, "late", steps=4)
            assert wait_for(lambda: loss_len(logdir, "late") == 4, logdir)
    assert "polling" in caplog.text and "inotify watch limit" in caplog.text


def test_a_background_start_over_a_seeded_list_verifies_it_and_then_follows_writes(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "kept")
    make_run(root, "new")
    logdir = LogDir(root)
    stored = LogDir(root)
    stored.refresh(full=True)
    seen = {n: stored.listing(n).signature for n in ("kept",)}
    seen["gone"] = seen["kept"].replace("kept", "gone")  # stored by an earlier start, deleted since
    assert logdir.seed(seen) == 2 and not logdir.verified
    w = Watcher(logdir).start(background=True)
    try:
        assert wait_for(lambda: logdir.verified, logdir)
        assert logdir.names() == ["kept", "new"]
        with open(root / "new" / "scalars.r0.jsonl", "a") as f:
            f.write(line(3, 0.1))
        assert wait_for(lambda: loss_len(logdir, "new") == 4, logdir)
    finally:
        w.stop()
    assert w.observer is None


def test_a_background_start_that_fails_says_so(tmp_path, monkeypatch, caplog):
    make_run(tmp_path / "runs", "there")
    logdir = LogDir(tmp_path / "runs")
    logdir.seed({"gone": "meta.json\x001\x002\x003"})

    def broken(self, polling):
        raise RuntimeError("no observer")
    monkeypatch.setattr(watcher_mod.Watcher, "_start_observer", broken)
    w = Watcher(logdir)
    with caplog.at_level(logging.ERROR, logger=watcher_mod.__name__):
        w.start(background=True)
        w.stop()  # waits for the start
    assert "will not show new writes" in caplog.text
    assert logdir.verified and logdir.names() == ["there"]  # the list is what the folder holds


def test_a_start_still_going_when_stop_gives_up_waiting_stops_its_observer(tmp_path, monkeypatch):
    make_run(tmp_path / "runs", "there")
    logdir = LogDir(tmp_path / "runs")
    real = watcher_mod.Observer.schedule

    def slow(self, *args, **kwargs):  # a recursive watch over many folders takes a while
        time.sleep(0.5)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(watcher_mod.Observer, "schedule", slow)
    w = Watcher(logdir)
    w.stop_wait = 0.05
    w.start(background=True)
    w.stop()  # returns before the start is done
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(t.name == "babysitter-watch-start" for t in __import__("threading").enumerate()):
        time.sleep(0.05)
    assert w.observer is None  # the observer the late start made is stopped, not left running
