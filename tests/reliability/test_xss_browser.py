"""Hostile strings in everything a run carries reach the real browser as text, never as markup.

A run's layer names, parameter names, hyperparameter keys and values, and a finding's
message, fix and layers (written through ``Monitor.finding``), and the error of a training
that crashed hold ``<img onerror>`` and ``<script>`` payloads. Every page that shows them (run list, overview, layers, updates,
compare) is opened in headless Chromium; no dialog may open, no injected element may
exist, and the payload must be readable on the page as plain text.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from core import Finding
from monitor import Monitor
from tests._server import BrowserPage, chromium, dashboard_server

pytestmark = pytest.mark.browser

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
SVG = "<svg onload=alert(3)>"
RUN = "hostile-fields"
# A second run whose name carries a payload too, so the run list and compare table have one.
OTHER = "other" + IMG

INJECTED = ("() => ({img: document.querySelectorAll('img[src=x]').length,"
            " svg: Array.from(document.querySelectorAll('svg')).filter(s => s.getAttribute('onload')).length,"
            " script: Array.from(document.scripts).filter(s => s.text.includes('alert(')).length,"
            " handlers: Array.from(document.querySelectorAll('*')).filter("
            "   e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).length})")


CRASH = f"RuntimeError: shapes {IMG} {SCRIPT}"  # the error recorded for OTHER, which crashes


def _write(logdir: Path, name: str, seed: int, crash: bool = False) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((32, 16))
    Ws = [rng.standard_normal((16, 16)) * 0.3 for _ in range(2)]
    layers = [IMG, SCRIPT]
    params = [f"W {SVG}", f"W {SCRIPT}"]
    hparams = {"lr": 10.0 ** -(seed + 2), IMG: SCRIPT, "optimizer": SVG}
    with Monitor(logdir, name=name, hparams=hparams, num_classes=4, every=2, heartbeat=0) as mon:
        mon.set_layers([(IMG, "relu"), (SCRIPT, "tanh")])
        for step in range(12):
            h = X
            for i, W in enumerate(Ws):
                h = np.tanh(h @ W) if i else np.maximum(0, h @ W)
                mon.activation(step, layers[i], h, kind="tanh" if i else "relu")
                mon.weights(step, params[i], W, update=W * 1e-3, grad=W * 0.1)
            mon.log(step, loss=1.4 - 0.05 * step, lr=hparams["lr"], train_acc=0.1 * step / 4,
                    val_acc=0.08 * step / 4)
        mon.finding(Finding("custom_check", "warning", 3, layers=(IMG,), message=f"message {SCRIPT} {IMG}",
                            fix=f"fix {SVG} {IMG}"))
        if crash:
            raise RuntimeError(CRASH.removeprefix("RuntimeError: "))


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("xss") / "runs"
    _write(d, RUN, 0)
    with pytest.raises(RuntimeError):
        _write(d, OTHER, 1, crash=True)
    return d


@pytest.fixture(scope="module")
def page(logdir):
    with dashboard_server(logdir) as base, chromium() as browser:
        p = BrowserPage(browser, base)
        yield p
        p.close()


def _check(page: BrowserPage, where: str, *texts: str, scope: str = "body") -> None:
    page.page.wait_for_timeout(500)  # time for an injected onerror/onload to fire
    assert page.dialogs == [], f"{where}: a dialog opened: {page.dialogs}"
    assert page.page.evaluate(INJECTED) == {"img": 0, "svg": 0, "script": 0, "handlers": 0}, where
    shown = page.page.inner_text(scope)
    for t in texts:
        assert t in shown, f"{where}: {t!r} is not shown as text"


def test_hostile_fields_render_as_text_on_every_page(page):
    page.goto("/")
    page.page.get_by_role("link", name=OTHER).wait_for()
    _check(page, "run list", OTHER, scope="#runs-table")

    page.goto(f"/run/{RUN}", "overview-loss")
    page.page.wait_for_function(
        "() => document.getElementById('overview-findings').innerText.includes('custom_check')", polling=50)
    _check(page, "overview", f"message {SCRIPT} {IMG}", f"fix {SVG} {IMG}", scope="#overview-findings")
    # The finding's layer is a link to that layer, its name as text.
    assert page.page.get_by_role("link", name=IMG).count() == 1

    # A crashed run's recorded error, in the box above its findings.
    page.goto(f"/run/{quote(OTHER, safe='')}", "overview-loss")
    page.page.wait_for_selector("#overview-findings .bs-crash", timeout=10_000)
    _check(page, "overview of a crash", CRASH, scope="#overview-findings .bs-crash")

    page.goto(f"/run/{RUN}/layers?layer={quote(SCRIPT, safe='')}", "layers-depth")
    page.wait_graph("layers-hist")
    _check(page, "layers", SCRIPT, scope="#layers-layer")

    page.goto(f"/run/{RUN}/updates?param={quote('W ' + SVG, safe='')}", "updates-ratio")
    _check(page, "updates", f"W {SVG}", scope="#updates-param")

    page.goto("/compare")
    page.page.wait_for_selector("#compare-table th", timeout=10_000)
    _check(page, "compare", IMG, SCRIPT, SVG, OTHER, scope="#compare-table")  # key, values, run name
    page.shot("xss-compare")
    assert page.errors == []
