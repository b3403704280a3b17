"""``babysitter report``: self-contained HTML (plotly.js inlined, nothing external), hostile names escaped."""

from __future__ import annotations

import re

import numpy as np
import pytest

from babysitter.cli import main
from monitor import Monitor

HOSTILE = '<img src=x onerror=alert(1)>"&'
HOSTILE_VALUE = "</script><script>alert(2)</script>"


def _train(logdir, name, lr, *, steps=30, seed=0, space=None):
    """A two-layer numpy network on random data, recorded with layer statistics."""
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((64, 10)), rng.integers(0, 3, 64)
    W1, W2 = rng.standard_normal((10, 16)) * 0.3, rng.standard_normal((16, 3)) * 0.3
    with Monitor(logdir, name, hparams={"lr": lr, "act": HOSTILE_VALUE}, num_classes=3, every=5, heartbeat=0,
                 search_space=space) as mon:
        mon.set_layers([("fc1", "relu"), ("fc2", "linear")])
        for step in range(steps):
            h = np.maximum(0, X @ W1)
            s = h @ W2
            p = np.exp(s - s.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            loss = -np.log(p[np.arange(64), y]).mean()
            d = p.copy()
            d[np.arange(64), y] -= 1
            d /= 64
            dW2 = h.T @ d
            dh = d @ W2.T * (h > 0)
            dW1 = X.T @ dh
            mon.input(step, X)
            mon.activation(step, "fc1", h, kind="relu")
            mon.activation(step, "fc2", s)
            mon.weights(step, "W1", W1, update=-lr * dW1, grad=dW1)
            mon.weights(step, "W2", W2, update=-lr * dW2, grad=dW2)
            W1 -= lr * dW1
            W2 -= lr * dW2
            acc = float((s.argmax(1) == y).mean())
            mon.log(step, loss=loss, lr=lr, train_acc=acc, **({"val_acc": acc * 0.9} if step % 5 == 4 else {}))
        return mon.run_dir


def _check_self_contained(text: str) -> None:
    assert "Plotly.newPlot" in text
    assert len(re.findall(r"plotly\.js v\d", text)) == 1  # the library, inlined exactly once
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)  # no script loaded from anywhere
    assert not re.search(r"<link[^>]*\bhref\s*=", text, re.I)


def test_run_report_is_self_contained_and_escaped(tmp_path, capsys):
    run_dir = _train(tmp_path / "runs", HOSTILE, 0.5)
    out = tmp_path / "run.html"
    assert main(["report", str(run_dir), "-o", str(out)]) == 0
    assert "wrote run report" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    _check_self_contained(text)
    assert "<img src=x" not in text and "</script><script>alert(2)" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;&quot;&amp;" in text  # the name, shown as text
    # loss, accuracy, learning rate, depth, dead/saturation, update ratio, gradient norm: the run pages' figures
    assert text.count('class="plotly-graph-div"') == 7
    assert "update:weight" in text.lower() or "upd" in text.lower()


def test_comparison_report(tmp_path):
    logdir = tmp_path / "runs"
    space = {"lr": {"type": "loguniform", "low": 1e-4, "high": 1.0, "log": True}}
    for i, lr in enumerate([0.9, 0.01, 0.001]):
        _train(logdir, f"s-t00{i}", lr, seed=i, space=space)
    _train(logdir, HOSTILE, 0.1, space=space)
    out = tmp_path / "cmp.html"
    assert main(["report", str(logdir), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    _check_self_contained(text)
    assert "<img src=x" not in text and "</script><script>alert(2)" not in text
    assert text.count("&lt;img src=x onerror=alert(1)&gt;") >= 1
    # scatter of lr, loss overlay, val accuracy overlay, parallel coordinates
    assert text.count('class="plotly-graph-div"') == 4
    assert '"type":"log"' in text.replace(" ", "")  # the lr axis


def test_report_of_a_missing_or_empty_path_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for path in ("nope", "empty"):
        assert main(["report", str(tmp_path / path), "-o", str(tmp_path / "x.html")]) == 2
        assert "babysitter report: error:" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


@pytest.mark.browser
def test_report_opens_offline_in_chromium(tmp_path):
    """The report renders its figures with every network request blocked, and runs no injected script."""
    from playwright.sync_api import sync_playwright

    run_dir = _train(tmp_path / "runs", HOSTILE, 0.5)
    out = tmp_path / "run.html"
    assert main(["report", str(run_dir), "-o", str(out)]) == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        try:
            page = browser.new_page()
            blocked, dialogs = [], []
            page.route("**/*", lambda route: (route.continue_() if route.request.url.startswith("file:")
                                              else (blocked.append(route.request.url), route.abort())))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(out.as_uri())
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 7",
                                   polling=50, timeout=30_000)
            assert blocked == [] and dialogs == []
            assert HOSTILE in page.inner_text(".bs-title h2")
        finally:
            browser.close()
