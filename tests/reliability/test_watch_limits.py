"""Many runs, many files: the watcher never runs out of inotify watches silently.

A log directory of 400 runs and 2,000 files is watched with one recursive inotify
observer (one watch per folder, 401 here, far below the usual limit of 8,192 or more) and
a write to any run is still seen. When inotify cannot start (the per-user watch limit is
reached, ENOSPC), the watcher says so and polls instead, and still sees writes.
"""

from __future__ import annotations

import errno
import logging
import time
from pathlib import Path

import pytest
from watchdog.observers import Observer

from core import LogDir
from dashboard.watcher import Watcher

RUNS, FILES_PER_RUN = 400, 5
LINE = b'{"kind": "scalars", "step": %d, "values": {"loss": 1.0}}\n'


def _make(logdir: Path) -> None:
    for r in range(RUNS):
        d = logdir / f"run{r:04d}"
        d.mkdir(parents=True)
        (d / "meta.json").write_text('{"format": "babysitter", "format_version": 1}')
        for f in range(FILES_PER_RUN - 1):
            (d / f"s{f}.r{f}.jsonl").write_bytes(LINE % 0)


def _sees_append(logdir: LogDir, run: str, timeout: float = 15.0) -> bool:
    target = logdir.path / run / "s0.r0.jsonl"
    with open(target, "ab") as f:
        f.write(LINE % 1)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        logdir.refresh()
        r = logdir.get(run)
        if r is not None and len(r.scalar("loss")) == 2:
            return True
        time.sleep(0.05)
    return False


def test_thousands_of_files_are_watched(tmp_path):
    _make(tmp_path)
    logdir = LogDir(tmp_path)
    with Watcher(logdir) as w:
        assert w.mode == "inotify"
        assert len(logdir.runs()) == RUNS
        assert sum(r.records_read for r in logdir.runs()) == RUNS * (FILES_PER_RUN - 1)
        assert _sees_append(logdir, f"run{RUNS - 1:04d}")


def test_inotify_limit_falls_back_to_polling_with_a_message(tmp_path, monkeypatch, caplog):
    _make(tmp_path)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(Observer, "schedule", full)
    logdir = LogDir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="dashboard.watcher"):
        with Watcher(logdir, poll_interval=0.2) as w:
            assert w.mode == "polling"
            msgs = [r.getMessage() for r in caplog.records if r.name == "dashboard.watcher"]
            assert len(msgs) == 1 and "inotify watch limit reached" in msgs[0] and "polling" in msgs[0]
            assert _sees_append(logdir, "run0007")


def test_polling_requested_and_failing_is_not_silent(tmp_path, monkeypatch):
    from watchdog.observers.polling import PollingObserver

    def broken(self, *args, **kwargs):
        raise OSError(errno.EACCES, "denied")

    monkeypatch.setattr(PollingObserver, "schedule", broken)
    with pytest.raises(OSError, match="denied"):
        Watcher(LogDir(tmp_path), poll=True).start()
