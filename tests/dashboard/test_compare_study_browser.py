"""The compare page shows each study apart, with its pruned trials and the finding that pruned them (real Chromium).

The log directory holds a real ``random_search`` study whose diverging trials the
diagnoses pruned, under a study name that is an HTML payload (a run name, so it must show
as text), and a run outside any study.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from monitor import Monitor
from monitor.search import LogUniform, random_search
from tests._server import CHROMIUM, FLAGS, dashboard_server
from tests.monitor import _search_worker as worker

pytestmark = pytest.mark.browser

STUDY = "<img src=x onerror=alert(1)>lr"


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("studies") / "runs"
    res = random_search(worker.train, {"lr": LogUniform(1e-1, 1e3)}, 6, logdir=d, name=STUDY, seed=2,
                        storage=d.parent / "search.journal")
    assert {t.status for t in res.trials} == {"finished", "pruned"}
    with Monitor(d, "outside", hparams={"lr": 0.5}, heartbeat=0) as mon:
        mon.log(0, loss=1.1, val_acc=0.3)
    return d


def test_studies_card_table_and_scatter_show_pruned_trials_apart(logdir, tmp_path_factory):
    shots = Path("test-artifacts")
    shots.mkdir(exist_ok=True)
    with dashboard_server(logdir, timeout=60) as base, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=CHROMIUM, args=FLAGS,
            headless=True, viewport={"width": 1400, "height": 1000})
        page = ctx.pages[0]
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        try:
            page.goto(base + "/compare")
            page.wait_for_selector("#compare-studies .compare-study", timeout=30_000)
            card = page.locator("#compare-studies").inner_text()
            assert STUDY in card and "6 trials" in card and "pruned" in card and "best " + STUDY + "-t" in card
            page.locator("#compare-studies summary").first.click()
            pruned_text = page.locator("#compare-studies li").all_inner_texts()
            assert pruned_text and all(("loss_explosion" in t or "nan_loss" in t) and "after step" in t for t in pruned_text)
            # The table: grouped by study (the run outside any study last), pruned trials marked so.
            page.wait_for_selector("#compare-table td[data-dash-column=status]", timeout=30_000)
            runs = page.locator("#compare-table td[data-dash-column=run]").all_inner_texts()
            assert runs[-1] == "outside" and all(r.startswith(STUDY) for r in runs[:-1])
            status = page.locator("#compare-table td[data-dash-column=status]").all_inner_texts()
            assert status.count("pruned") == len(pruned_text)
            # The scatter draws them as their own trace.
            page.wait_for_function("() => { const g = document.querySelector('#compare-scatter .js-plotly-plot');"
                                   " return g && g.data && g.data.some(t => t.name === 'pruned'); }",
                                   polling=50, timeout=20_000)
            page.screenshot(path=str(shots / "compare-studies-1400.png"), full_page=True)
            page.set_viewport_size({"width": 1000, "height": 800})
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "compare-studies-1000.png"), full_page=True)
            assert page.locator("img[src=x]").count() == 0 and dialogs == []
        finally:
            ctx.close()
