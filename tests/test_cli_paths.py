"""A path without runs is the same mistake for every command, and gets the same answer.

``check``, ``compare``, ``report`` and ``dashboard`` are run as real subprocesses on a
missing folder and on an empty one: exit status 2, one line on stderr that says what the
path should have been, and nothing created or written.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

MISSING = "no such run folder or log directory"
EMPTY = "neither a run folder (meta.json, *.jsonl) nor a log directory holding runs"


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "babysitter", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


@pytest.mark.parametrize("command", ["check", "compare", "report", "dashboard"])
def test_a_missing_folder_is_exit_2_with_the_same_sentence_and_is_not_created(tmp_path, command):
    extra = ["-o", str(tmp_path / "r.html")] if command == "report" else []
    extra += ["--port", "1"] if command == "dashboard" else []
    p = _cli(command, "misspelled-dir", *extra, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().startswith(f"babysitter {command}: error: misspelled-dir: {MISSING}"), p.stderr
    assert not (tmp_path / "misspelled-dir").exists() and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("command", ["check", "compare", "report"])
def test_an_empty_folder_is_exit_2_with_the_same_sentence(tmp_path, command):
    (tmp_path / "empty").mkdir()
    extra = ["-o", str(tmp_path / "r.html")] if command == "report" else []
    p = _cli(command, "empty", *extra, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == f"babysitter {command}: error: empty: {EMPTY}"
    assert p.stdout == "" and not (tmp_path / "r.html").exists()


def test_a_log_directory_made_while_the_dashboard_starts_is_served(tmp_path, monkeypatch):
    # `babysitter demo` starts its trainings, which make the folder, before the dashboard's folder
    # step: a folder that appears between the check and the mkdir is no error.
    from pathlib import Path

    from babysitter.commands.dashboard import serve

    target = tmp_path / "runs"
    real_is_dir = Path.is_dir

    def is_dir_then_made(self):
        got = real_is_dir(self)
        if self == target and not got:
            target.mkdir()  # a training thread, right after the check
        return got

    monkeypatch.setattr(Path, "is_dir", is_dir_then_made)
    with socket.socket() as busy:  # refused after the folder step: no server starts
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert serve(target, port=busy.getsockname()[1], create=True) == 1
    assert real_is_dir(target)


def test_a_file_given_as_the_log_directory_is_exit_2(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    p = _cli("dashboard", "notes.txt", "--create", "--port", "1", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip() == "babysitter dashboard: error: notes.txt: not a directory", p.stderr
    assert (tmp_path / "notes.txt").read_text() == "x"


def test_dashboard_creates_a_missing_folder_only_when_asked(tmp_path):
    with socket.socket() as busy:  # a taken port: refused after the folder step, so no server starts
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        p = _cli("dashboard", "new-runs", "--create", "--port", str(busy.getsockname()[1]), cwd=tmp_path)
    assert p.returncode == 1 and "cannot listen" in p.stderr, p.stderr
    assert (tmp_path / "new-runs").is_dir()
