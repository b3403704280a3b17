"""A run folder made again under the same name, a file rewritten in place, a run renamed: never stale, never mixed.

* A data file truncated and written again, longer than before, keeps its inode (as ext4
  also reuses the inode of a deleted file for the next one): the reader must notice and
  read it again from the start, keeping only the new records.
* A run folder deleted and made again under the same name (a new ``meta.json``) is read
  from scratch, and an open page of it redraws: its version differs from any the page saw.
* An open page of a run that is renamed (or deleted) says that the run is gone.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from core import LogDir, Run
from dashboard import create_app
from monitor import Monitor

from ._dashclient import PageDriver, flask_transport


def _lines(steps: range, loss: float) -> bytes:
    return b"".join(json.dumps({"kind": "scalars", "step": s, "time": 1.0 + s, "values": {"loss": loss}}).encode()
                    + b"\n" for s in steps)


def test_a_file_rewritten_in_place_is_read_again_without_old_values(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    path = run_dir / "scalars.r0.jsonl"
    path.write_bytes(_lines(range(10), 1.0))
    run = Run(run_dir)
    run.update()
    ino = os.stat(path).st_ino
    with open(path, "r+b") as f:  # same inode: truncated, then written longer than before
        f.truncate(0)
        f.write(_lines(range(25), 2.0))
    assert os.stat(path).st_ino == ino
    run.update()
    loss = run.scalar("loss")
    assert loss.steps.tolist() == list(range(25)) and set(loss.values.tolist()) == {2.0}


def _train(logdir, loss: float, steps: int) -> None:
    with Monitor(logdir, "r", heartbeat=0, every=1, on_exists="error") as mon:
        for s in range(steps):
            mon.activation(s, "fc1", np.full((4, 3), loss), kind="relu")
            mon.log(s, loss=loss)


def test_a_run_made_again_over_reused_inodes_is_read_afresh(tmp_path):
    """The folder made again where every file got its old inode back (what ext4 may do)."""
    _train(tmp_path / "a", 1.0, 5)
    _train(tmp_path / "b", 3.0, 6)
    run = Run(tmp_path / "a" / "r")
    run.update()
    for f in (tmp_path / "b" / "r").iterdir():
        with open(tmp_path / "a" / "r" / f.name, "r+b") as dst:  # same inode, new contents
            dst.truncate(0)
            dst.write(f.read_bytes())
    run.update()
    assert set(run.scalar("loss").values.tolist()) == {3.0} and len(run.scalar("loss")) == 6
    assert float(np.nanmax(run.acts.field("mean"))) == 3.0 and len(run.acts) == 6 and run.all_problems() == []


def test_an_open_page_of_a_run_made_again_under_its_name_redraws(tmp_path):
    _train(tmp_path, 1.0, 5)
    ld = LogDir(tmp_path)
    ld.refresh()
    driver = PageDriver(*flask_transport(create_app(ld)))
    comps = driver.visit("/run/r")
    seen = comps["app-version"]["data"]["key"]
    shutil.rmtree(tmp_path / "r")
    ld.mark_dirty(None)
    ld.refresh()  # another viewer's tick: the run is gone from the list
    _train(tmp_path, 3.0, 5)  # same name, same number of records
    ld.mark_dirty(None)
    data = driver.tick(comps)  # this page's next tick finds the new run
    assert data and data.get("response"), "the open page was not told to redraw"
    assert comps["app-version"]["data"]["key"] != seen
    run = ld.get("r")
    assert set(run.scalar("loss").values.tolist()) == {3.0} and len(run.scalar("loss")) == 5
    assert driver.errors == []


def test_an_open_page_of_a_renamed_run_says_it_is_gone(tmp_path):
    _train(tmp_path, 1.0, 3)
    ld = LogDir(tmp_path)
    ld.refresh()
    driver = PageDriver(*flask_transport(create_app(ld)))
    comps = driver.visit("/run/r/layers")
    os.rename(tmp_path / "r", tmp_path / "r-renamed")
    ld.mark_dirty(None)
    driver.tick(comps)
    assert comps["app-version"]["data"]["key"][0] == "missing"
    retry = next(d for d in driver.deps if d["output"].startswith("..app-page.children@"))
    comps.setdefault("app-page", {})
    driver._call(retry, comps, "app-version.data")
    assert "Run not found" in json.dumps(comps["app-page"].get("children")), "the page still shows the old run"
    assert driver.errors == []
