"""``babysitter compare``: table, JSON, sort, filter and search findings, on real run folders."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from babysitter.cli import main
from monitor import Monitor

SPACE = {"lr": {"type": "loguniform", "low": 1e-6, "high": 1e-1, "log": True}}


def _run(logdir, name, lr, acc, *, crash=False, nan=False):
    mon = Monitor(logdir, name, hparams={"lr": lr}, search_space=SPACE, heartbeat=0, on_nan="ignore")
    mon.open()
    for step in range(3):
        mon.log(step, loss=float("nan") if nan and step == 2 else 2.0 - step * 0.5, train_acc=acc + 0.05,
                val_acc=acc * (step + 1) / 3)
    mon.close(error=RuntimeError("boom") if crash else None)


@pytest.fixture()
def logdir(tmp_path):
    _run(tmp_path, "s-t000", 8e-2, 0.9)  # best, at the top of [1e-6, 1e-1] in log space
    _run(tmp_path, "s-t001", 1e-4, 0.5)
    _run(tmp_path, "s-t002", 1e-3, 0.7, nan=True)
    _run(tmp_path, "s-t003", 3e-5, 0.3, crash=True)
    _run(tmp_path, "\x1b[31mred\nline", 1e-5, 0.1)  # a hostile name: terminal escape and newline
    return tmp_path


def test_text_table_sorted_by_best_val_with_search_findings(logdir, capsys):
    assert main(["compare", str(logdir)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["run", "status", "steps", "best_val"]
    order = [ln.split()[0] for ln in lines[2:7]]
    assert order[:4] == ["s-t000", "s-t002", "s-t001", "s-t003"]
    assert "\x1b" not in out and "\\x1b[31mred\\nline" in out  # escaped, never interpreted by the terminal
    assert "5 of 5 runs" in out
    assert "edge_of_range" in out and "lr=0.08" in out and "fix: Shift the range" in out
    row = next(ln for ln in lines if ln.startswith("s-t002"))
    assert "nan_loss" in row


def test_json_output_is_strict_and_complete(logdir, capsys):
    assert main(["compare", str(logdir), "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    runs = {r["run"]: r for r in data["runs"]}
    assert set(runs) == {"s-t000", "s-t001", "s-t002", "s-t003", "\x1b[31mred\nline"}
    assert runs["s-t003"]["status"] == "crashed" and runs["s-t003"]["error"] == "RuntimeError: boom"
    assert runs["s-t002"]["diverged"] is True and runs["s-t002"]["final_loss"] is None
    assert runs["s-t000"]["best_val_acc"] == pytest.approx(0.9)
    assert runs["s-t000"]["hparams"] == {"lr": 8e-2}
    (edge,) = data["search_findings"]
    assert edge["param"] == "lr" and edge["side"] == "high" and edge["best_run"] == "s-t000"
    assert math.log10(edge["suggest_high"] / edge["suggest_low"]) == pytest.approx(5.0)
    assert edge["finding"]["rule"] == "edge_of_range"


@pytest.mark.parametrize("args, expected", [
    (["--filter", "lr<5e-4", "--sort", "lr"], ["\x1b[31mred\nline", "s-t003", "s-t001"]),
    (["--filter", "status=crashed"], ["s-t003"]),
    (["--filter", "NAN_LOSS"], ["s-t002"]),
    (["--sort=-lr"], ["s-t000", "s-t002", "s-t001", "s-t003", "\x1b[31mred\nline"]),
    # Equal final losses keep name order; the NaN loss goes last.
    (["--sort", "final_loss", "--filter", "status!=crashed"], ["\x1b[31mred\nline", "s-t000", "s-t001", "s-t002"]),
])
def test_sort_and_filter(logdir, capsys, args, expected):
    assert main(["compare", str(logdir), "--json", *args]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)["runs"]] == expected


def test_errors_name_what_is_allowed(logdir, tmp_path, capsys):
    assert main(["compare", str(logdir), "--sort", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no column 'nope'" in err and "best_val_acc" in err and "hp.lr" in err
    assert main(["compare", str(logdir), "--filter", "status=nope"]) == 0
    assert "match the filter" in capsys.readouterr().out


def test_console_entry_point(logdir):
    out = subprocess.run([sys.executable, "-m", "babysitter", "compare", str(logdir), "--json"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert len(json.loads(out)["runs"]) == 5
