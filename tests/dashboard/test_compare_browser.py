"""The compare page in a real headless Chromium: overlaying selected runs, the log axis, the edge warning.

The server is the real ``python -m babysitter dashboard`` on a free 127.0.0.1 port, over a
log directory written by a real ``random_search`` (tiny trainings, so the test stays fast).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from monitor import Monitor
from monitor.search import LogUniform, Uniform, random_search
from tests._server import CHROMIUM, FLAGS, dashboard_server

pytestmark = pytest.mark.browser

HOSTILE = "<b>bold<b><img src=x onerror=alert(1)>"


def _train(trial):
    """val accuracy rises with lr up to the top of the range: the best run sits at the edge."""
    lr = trial.hparams["lr"]
    score = (math.log10(lr) + 5) / 4  # 0 at 1e-5, 1 at 1e-1
    with trial.monitor(num_classes=10, heartbeat=0) as mon:
        for step in range(12):
            mon.log(step, loss=2.3 * math.exp(-step * score / 4) + 0.01, train_acc=score * step / 11,
                    val_acc=0.9 * score * step / 11)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("compare") / "runs"
    random_search(_train, {"lr": LogUniform(1e-5, 1e-1), "drop": Uniform(0.0, 0.5)}, 8, logdir=d,
                  name="coarse", seed=4)  # seed 4 samples lr = 0.086, in the top 10% of the range
    with Monitor(d, HOSTILE, hparams={"lr": 1e-3, "drop": 0.1}, heartbeat=0) as mon:
        mon.log(0, loss=2.3, val_acc=0.05)
    return d


@pytest.fixture(scope="module")
def server(logdir):
    with dashboard_server(logdir, timeout=60) as base:
        yield base


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=CHROMIUM, args=FLAGS,
            headless=True, viewport={"width": 1280, "height": 900})
        pg = ctx.pages[0]
        dialogs: list[str] = []
        pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        pg.dialogs = dialogs
        try:
            yield pg
        finally:
            ctx.close()


def _traces(page, graph_id: str) -> int:
    return page.evaluate(f"() => {{ const g = document.querySelector('#{graph_id} .js-plotly-plot');"
                         " return g && g.data ? g.data.length : -1; }")


def test_select_two_runs_overlays_their_curves(server, page):
    page.goto(server + "/compare")
    page.wait_for_selector("#compare-table input[type=checkbox]", timeout=30_000)
    rows = page.locator("#compare-table tr:has(input[type=checkbox])")
    assert rows.count() == 9
    first, second = (rows.nth(i).locator("td[data-dash-column=run]").inner_text() for i in (0, 1))
    rows.nth(0).locator("input[type=checkbox]").check()
    rows.nth(1).locator("input[type=checkbox]").check()
    page.wait_for_function("() => { const g = document.querySelector('#compare-loss .js-plotly-plot');"
                           " return g && g.data && g.data.length === 2; }", polling=50, timeout=20_000)
    page.wait_for_function("() => { const g = document.querySelector('#compare-acc .js-plotly-plot');"
                           " return g && g.data && g.data.length === 2; }", polling=50, timeout=20_000)
    names = page.evaluate("() => document.querySelector('#compare-loss .js-plotly-plot').data.map(t => t.name)")
    assert names == [first, second]
    # Sorted by best val accuracy: the top run is the one with the highest lr.
    assert first.startswith("coarse-t")
    rows.nth(1).locator("input[type=checkbox]").uncheck()
    page.wait_for_function("() => document.querySelector('#compare-loss .js-plotly-plot').data.length === 1",
                           polling=50, timeout=20_000)


def test_scatter_has_a_log_axis_and_the_edge_warning(server, page):
    page.goto(server + "/compare")
    page.wait_for_function("() => { const g = document.querySelector('#compare-scatter .js-plotly-plot');"
                           " return g && g.layout && g.data.length > 0; }", polling=50, timeout=30_000)
    assert page.evaluate("() => document.querySelector('#compare-scatter .js-plotly-plot').layout.xaxis.type") == "log"
    n_points = page.evaluate("() => document.querySelector('#compare-scatter .js-plotly-plot').data[0].x.length")
    assert n_points == 9
    edge = page.inner_text("#compare-edges")
    assert "lr" in edge and "Try next" in edge and "log-uniform" in edge
    title = page.evaluate("() => document.querySelector('#compare-scatter .js-plotly-plot').layout.title.text")
    assert "edge" in title
    # The uniform parameter on a linear axis.
    page.click("#compare-x")
    page.get_by_role("option", name="drop", exact=True).click()
    page.wait_for_function("() => document.querySelector('#compare-scatter .js-plotly-plot').layout.xaxis.type"
                           " === 'linear'", polling=50, timeout=20_000)
    assert page.locator("#compare-parallel .js-plotly-plot").count() == 1


def test_hostile_name_is_text(server, page):
    page.goto(server + "/compare")
    page.wait_for_selector("#compare-table input[type=checkbox]", timeout=30_000)
    cell = page.locator("#compare-table td[data-dash-column=run]", has_text="<b>bold<b>")
    assert cell.count() == 1 and cell.inner_text() == HOSTILE
    assert page.locator("#compare-table b").count() == 0 and page.locator("img[src=x]").count() == 0
    row = page.locator("#compare-table tr", has=page.locator("td[data-dash-column=run]", has_text="<b>bold<b>"))
    row.locator("input[type=checkbox]").check()
    page.wait_for_function("() => { const g = document.querySelector('#compare-loss .js-plotly-plot');"
                           " return g && g.data && g.data.length >= 1; }", polling=50, timeout=20_000)
    legend = page.evaluate("() => Array.from(document.querySelectorAll('#compare-loss .legendtext'))"
                           ".map(e => e.textContent)")
    assert HOSTILE in legend
    assert page.dialogs == []
