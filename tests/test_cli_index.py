"""``compare`` and ``check`` over a log directory share the persisted summaries (``core.index``):
a second command reads no unchanged run and says exactly what the first said."""

from __future__ import annotations

import json

import pytest

from babysitter.cli import main
from core.index import SummaryIndex
from monitor import Monitor


@pytest.fixture()
def logdir(tmp_path, monkeypatch):
    monkeypatch.setenv("BABYSITTER_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "runs"
    for i, lr in enumerate((1e-3, 1e-1, 10.0)):
        with Monitor(root, f"lr{i}", hparams={"lr": lr}, heartbeat=0, on_nan="ignore") as mon:
            for step in range(30):
                loss = 2.3 * (1 - 0.01 * step) if lr < 10 else 2.3 * 1.5 ** step
                mon.log(step, loss=loss, val_acc=0.1 + 0.01 * step * (lr < 10))
    return root


def outputs(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_compare_then_check_read_each_run_once(logdir, capsys, monkeypatch):
    code, first = outputs(capsys, "compare", str(logdir), "--json")
    assert code == 0
    stored = SummaryIndex(logdir).load()
    assert sorted(stored) == ["lr0", "lr1", "lr2"]

    import core.catalog as catalog

    def no_read(paths, *_):
        paths = list(paths)
        assert not paths, f"read again: {paths}"
        return []

    monkeypatch.setattr(catalog, "summarise_folders", no_read)
    code, again = outputs(capsys, "compare", str(logdir), "--json")
    assert code == 0 and json.loads(again) == json.loads(first)
    code, checked = outputs(capsys, "check", str(logdir), "--json")
    monkeypatch.undo()
    # The same findings as a check that diagnoses each run folder afresh (no index for a run path).
    fresh = []
    for name in ("lr0", "lr1", "lr2"):
        fresh += json.loads(outputs(capsys, "check", str(logdir / name), "--json")[1])
    assert code == 1  # the diverging run is an error
    assert [(f["run"], f["rule"], f["step"]) for f in json.loads(checked)] == \
        [(f["run"], f["rule"], f["step"]) for f in fresh]
    assert any(f["rule"] == "nan_loss" or f["severity"] == "error" for f in fresh)


def test_check_with_other_thresholds_diagnoses_afresh(logdir, capsys):
    outputs(capsys, "compare", str(logdir), "--json")
    code, text = outputs(capsys, "check", str(logdir), "--json")
    assert {"loss_explosion"} <= {f["rule"] for f in json.loads(text)}
    code, text = outputs(capsys, "check", str(logdir), "--disable", "loss_explosion", "--json")
    assert "loss_explosion" not in {f["rule"] for f in json.loads(text)}


def test_a_restarted_dashboard_answers_from_the_index_then_shows_what_changed(logdir, capsys):
    """A restart seeds its run list from the index; the watcher's background start then adds
    the run written while no server ran and drops the deleted one, with no page reload."""
    import shutil
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _server import dashboard_server
    from reliability._dashclient import PageDriver, http_transport

    assert outputs(capsys, "compare", str(logdir), "--json")[0] == 0  # fills the index
    shutil.rmtree(logdir / "lr2")
    with Monitor(logdir, "late", hparams={"lr": 0.01}, heartbeat=0) as mon:
        for step in range(5):
            mon.log(step, loss=1.0)
    with dashboard_server(logdir) as base:
        drv = PageDriver(*http_transport(base))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            table = json.dumps(drv.visit("/").get("runs-table", {}))
            pager = str(drv.visit("/").get("runs-pager", {}).get("children", ""))
            if "late" in table and "lr2" not in table and "checking" not in pager:
                break
            time.sleep(0.2)
        assert "late" in table and "lr0" in table and "lr2" not in table, table[:2000]
        assert pager == "runs 1–3 of 3", pager
        assert not drv.errors
