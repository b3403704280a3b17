"""The dashboard in a real headless Chromium (Playwright's sync API, Debian's /usr/bin/chromium).

The server is the real command (``python -m babysitter dashboard``) started as a subprocess on
a free 127.0.0.1 port with its own process group, watching a temporary log directory.
Training data is written through the real ``Monitor`` while the page is open.
Screenshots and the measured write-to-browser latency go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from monitor import Monitor
from tests._server import ARTIFACTS, BrowserPage, chromium, dashboard_server

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"
LATENCY_SAMPLES = 8


def write_static_run(logdir: Path, name: str, steps: int = 120) -> None:
    """A finished run of a small numpy MLP: ReLU and tanh layers, weights with updates."""
    rng = np.random.default_rng(0)
    with Monitor(logdir, name=name, hparams={"lr": 0.01}, num_classes=10, every=10, on_exists="error") as mon:
        Ws = [rng.standard_normal((32, 32)) * s for s in (0.3, 0.3, 0.05, 0.05)]
        X = rng.standard_normal((64, 32))
        for step in range(steps):
            h = X
            for i, W in enumerate(Ws):
                h = np.tanh(h @ W) if i % 2 else np.maximum(0, h @ W)
                mon.activation(step, f"fc{i}", h, kind="tanh" if i % 2 else "relu")
                mon.weights(step, f"W{i}", W, update=W * 1e-3, grad=W * 0.1)
                Ws[i] = W * (1 + 1e-3 * (step % 7 - 3))
            mon.log(step, loss=2.3 * np.exp(-step / 60) + 0.05, lr=0.01, train_acc=min(1.0, step / 100),
                    val_acc=min(0.7, step / 130))


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("browser") / "runs"
    write_static_run(d, "static")
    write_static_run(d, HOSTILE, steps=20)
    return d


@pytest.fixture(scope="module")
def server(logdir):
    with dashboard_server(logdir) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, server):
    p = BrowserPage(browser, server)
    yield p
    p.close()


def test_pages_load_without_console_errors(page):
    page.goto("/", None)
    page.page.get_by_role("link", name="static").wait_for()
    page.shot("runs")
    for path, graph, shot in (("/run/static", "overview-loss", "overview"),
                              ("/run/static/layers?layer=fc2", "layers-depth", "layers"),
                              ("/run/static/updates", "updates-ratio", "updates")):
        page.goto(path, graph)
        page.page.wait_for_timeout(600)  # let the remaining graphs of the page draw
        page.shot(shot)
    assert page.errors == []
    # The layer named in the URL is the one picked, and the ratio plot has the healthy band.
    page.goto("/run/static/updates", "updates-ratio")
    assert page.js("document.querySelector('#updates-ratio .js-plotly-plot').layout.yaxis.type") == "log"


def test_live_steps_appear_within_3s_and_latency(page, logdir):
    mon = Monitor(logdir, name="live", every=1000, on_exists="error")
    with mon:
        mon.log(0, loss=2.0, lr=0.1)
        page.goto("/run/live", "overview-loss")
        # Plotly keeps numpy arrays base64-encoded in .data; _fullData holds the decoded arrays.
        count = "document.querySelector('#overview-loss .js-plotly-plot')._fullData[0].x.length"
        page.page.wait_for_function(f"() => {count} === 1", polling=20, timeout=5000)
        latencies = []
        rng = random.Random(0)
        for i in range(1, LATENCY_SAMPLES + 1):
            page.page.wait_for_timeout(rng.uniform(0, 1000))  # a random phase against the 1 s refresh
            t0 = time.perf_counter()
            mon.log(i, loss=2.0 / (i + 1), lr=0.1)
            page.page.wait_for_function(f"() => {count} === {i + 1}", polling=20, timeout=3000)
            latencies.append(time.perf_counter() - t0)
        live = page.js("document.getElementById('app-live').textContent")
        # The run header follows the data too (it was drawn once, with the first step only).
        page.page.wait_for_function(
            f"() => document.getElementById('run-status').innerText.includes('step {LATENCY_SAMPLES}')",
            polling=50, timeout=3000)
        header = page.page.inner_text("#run-header")
        page.shot("overview-live")
    p50, p95 = float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95))
    result = {"samples_s": [round(x, 3) for x in latencies], "p50_s": round(p50, 3), "p95_s": round(p95, 3),
              "max_s": round(max(latencies), 3), "refresh_interval_s": 1.0,
              "what": "Monitor.log() returns -> new point counted in the browser's Plotly data"}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "latency.json").write_text(json.dumps(result, indent=2))
    print(f"\nwrite-to-browser latency over {len(latencies)} samples: p50 {p50:.3f} s, p95 {p95:.3f} s")
    assert live.startswith("live")
    assert "no steps yet" not in header and "last write - ago" not in header
    assert max(latencies) < 3.0


def test_nan_loss_shows_the_finding(page, logdir):
    with Monitor(logdir, name="diverges", every=1000, on_exists="error") as mon:
        for s in range(5):
            mon.log(s, loss=1.0 / (s + 1))
        page.goto("/run/diverges", "overview-loss")
        assert "nan_loss" not in page.page.inner_text("#overview-findings")
        mon.log(5, loss=float("nan"))
        page.page.wait_for_function(
            "() => document.getElementById('overview-findings').innerText.includes('nan_loss')",
            polling=50, timeout=5000)
        # The NaN is also marked on the loss plot.
        page.page.wait_for_function(
            "() => Array.from(document.querySelector('#overview-loss .js-plotly-plot').data)"
            ".some(t => t.name === 'NaN/Inf loss')", polling=50, timeout=5000)
        text = page.page.inner_text("#overview-findings")
        # The header shows the new last step and the error count without a reload.
        page.page.wait_for_function(
            "() => { const t = document.getElementById('run-status').innerText;"
            " return t.includes('step 5') && t.includes('1 error'); }", polling=50, timeout=3000)
        page.shot("overview-nan")
    assert "Lower the learning rate" in text
    assert page.errors == []


def test_layer_slider_changes_depth_plot(page):
    page.goto("/run/static/layers", "layers-depth")
    title = "document.querySelector('#layers-depth .js-plotly-plot').layout.title.text"
    ys = "Array.from(document.querySelector('#layers-depth .js-plotly-plot')._fullData[0].y).join(',')"
    before_title, before_y = page.js(title), page.js(ys)
    assert before_title.endswith("step 110")
    page.page.locator("#layers-step .rc-slider-handle, #layers-step [role=slider]").first.focus()
    page.page.keyboard.press("Home")
    page.page.wait_for_function(f"() => {title}.endsWith('step 0')", polling=50, timeout=5000)
    assert page.js(ys) != before_y
    assert page.js("document.getElementById('layers-step-label').textContent") == "step 0"
    assert page.errors == []


def test_hostile_run_name_is_text(page):
    page.goto("/", None)
    link = page.page.get_by_role("link", name=HOSTILE)
    link.wait_for()
    assert link.inner_text() == HOSTILE
    link.click()
    page.wait_graph("overview-loss")
    assert page.page.inner_text("#run-header h2") == HOSTILE
    assert page.js("document.querySelectorAll('img').length") == 0
    page.page.wait_for_timeout(300)
    page.shot("hostile")
    assert page.dialogs == []
    assert page.page.url.endswith("/run/" + quote(HOSTILE, safe=""))
    assert page.errors == []


def test_ages_counted_in_the_browser_use_the_lists_units(browser, tmp_path):
    """The top bar and a run's header say "2 h ago" for a run last written two hours ago, as
    the run list does, not "7200 s ago"."""
    import os

    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    then = time.time() - 2 * 3600 - 30
    (run / "meta.json").write_text(json.dumps({"format": "babysitter", "format_version": 1, "run": "old",
                                               "status": "finished"}))
    (run / "scalars.r0.jsonl").write_text("".join(
        json.dumps({"kind": "scalars", "step": s, "time": then - 12 + s, "values": {"loss": 1 / (s + 1)}}) + "\n"
        for s in range(12)))
    for f in run.iterdir():
        os.utime(f, (then, then))
    d = run.parent
    with dashboard_server(d) as base:
        page = BrowserPage(browser, base)
        try:
            page.goto("/run/old", "overview-loss")
            page.page.wait_for_function("() => document.getElementById('app-live').textContent.includes('ago')"
                                        " && document.getElementById('run-age')", timeout=10_000)
            assert page.js("document.getElementById('app-live').textContent") == "idle \u00b7 last update 2 h ago"
            assert page.js("document.getElementById('run-age').textContent") == "last write 2 h ago"
        finally:
            page.close()
