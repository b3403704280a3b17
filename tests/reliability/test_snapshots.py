"""A figure callback sees one consistent moment of a run that grows while it draws.

The dashboard's tick reads new records (``LogDir.refresh``) on one request thread while
figure callbacks of other viewers read the same run on theirs. A callback that takes the
steps, then a field, must not get a field longer than its steps.

The first test forces the worst interleaving: the moment the updates (or layers over-time)
callback reads its first field after the steps, a second thread appends steps to the files and reads them in
(``LogDir.refresh``, as the tick does), and the callback goes on after it (or after 1 s
when it is held off). The second runs it for real: a writer thread grows a 100-layer run
by one step every few milliseconds, a refresher thread reads it in, and four viewers call
the Layers and Updates callbacks through the server in a loop. No call may answer 500.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core import LogDir
from core.reader import Table
from core.schema import ACT_FIELDS, PARAM_FIELDS
from dashboard import create_app, figures
from dashboard.context import Drawn
from monitor import Monitor

from ._dashclient import PageDriver, flask_transport

LAYERS = 100
RNG = np.random.default_rng(0)


def _write_step(mon: Monitor, step: int) -> None:
    names = [f"layer{i}" for i in range(LAYERS)]
    mon.write_stats("acts", step, {n: {**dict(zip(ACT_FIELDS, RNG.random(len(ACT_FIELDS)).tolist())),
                                       "hist_lo": -1.0, "hist_hi": 1.0, "hist": [1] * 16} for n in names})
    mon.write_stats("params", step, {f"{n}.weight": dict(zip(PARAM_FIELDS, (RNG.random(len(PARAM_FIELDS)) * 1e-3).tolist()))
                                     for n in names})
    mon.log(step, loss=1.0 / (step + 1))


def _called_from(module: str) -> bool:
    """Whether a function of ``module`` is on the call stack (the page reads through ``core.views``)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__") == module:
            return True
        frame = frame.f_back
    return False


@pytest.fixture
def live(tmp_path):
    mon = Monitor(tmp_path, "live", heartbeat=0, every=1).open()
    for s in range(200):
        _write_step(mon, s)
    yield tmp_path, mon
    mon.close()


@pytest.mark.parametrize("path,module,first", [("/run/live/updates", "dashboard.pages.updates", "upd_ratio"),
                                               ("/run/live/layers", "dashboard.pages.layers", "dead_frac")])
def test_a_run_growing_in_the_middle_of_a_callback_does_not_break_it(live, monkeypatch, path, module, first):
    logdir, mon = live
    ld = LogDir(logdir)
    ld.refresh()
    app = create_app(ld)
    app.babysitter_context.drawn = Drawn(size=0)  # every call draws: the drawing itself is under test
    driver = PageDriver(*flask_transport(app))
    comps = driver.visit(path)
    assert driver.errors == []
    step = [200]
    orig = Table.field
    grown = []

    def field_after_growth(self, name):
        if not grown and name == first and _called_from(module):  # once, inside the page's figure callback
            grown.append(True)
            for _ in range(7):
                _write_step(mon, step[0])
                step[0] += 1
            ld.mark_dirty("live")
            t = threading.Thread(target=ld.refresh)
            t.start()
            t.join(1.0)  # held off by the callback's snapshot, the refresh finishes after it
        return orig(self, name)

    monkeypatch.setattr(Table, "field", field_after_growth)
    for _ in range(3):
        grown.clear()
        comps["app-version"]["data"] = {"key": ["changed", step[0]]}
        driver.page_callbacks(comps)
        assert grown, "no page callback read a field"
        time.sleep(0.2)
    assert driver.errors == []
    assert step[0] == 221 and len(ld.get("live").params) == 221


def test_viewers_of_a_run_growing_under_them_never_get_an_error(live):
    logdir, mon = live
    ld = LogDir(logdir)
    ld.refresh()
    app = create_app(ld)
    stop = threading.Event()

    def writer() -> None:
        s = 200
        while not stop.is_set():
            _write_step(mon, s)
            ld.mark_dirty("live")
            s += 1
            time.sleep(0.003)

    def refresher() -> None:
        while not stop.is_set():
            app.babysitter_context.refresh()

    drivers = [PageDriver(*flask_transport(app)) for _ in range(4)]

    def viewer(d: PageDriver, path: str) -> None:
        comps = d.visit(path)
        n = 0
        while not stop.is_set():
            n += 1
            comps["app-version"]["data"] = {"key": ["changed", n]}
            d.page_callbacks(comps)

    threads = [threading.Thread(target=writer), threading.Thread(target=refresher)]
    threads += [threading.Thread(target=viewer, args=(d, p)) for d, p in
                zip(drivers, ["/run/live/updates", "/run/live/layers"] * 2)]
    for t in threads:
        t.start()
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join(30)
    errors = [e for d in drivers for e in d.errors]
    assert errors == [], errors[:3]
    assert sum(d.calls for d in drivers) > 20 and len(ld.get("live").params) > 210


def test_viewers_of_one_run_at_one_version_share_one_drawing(live, monkeypatch):
    logdir, _ = live
    ld = LogDir(logdir)
    ld.refresh()
    app = create_app(ld)
    drawn = []
    real = figures.update_ratio_figure
    monkeypatch.setattr(figures, "update_ratio_figure", lambda *a, **k: drawn.append(1) or real(*a, **k))
    drivers = [PageDriver(*flask_transport(app)) for _ in range(8)]
    threads = [threading.Thread(target=d.visit, args=("/run/live/updates",)) for d in drivers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(d.errors == [] and d.calls for d in drivers)
    assert len(drawn) == 1
