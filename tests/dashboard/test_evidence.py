"""Evidence for every finding: a link to the plot that shows it (step and layer pre-selected), the
threshold drawn on it, the same plot in the HTML report, and info findings on the overview.

Real numpy trainings that show each problem; the pages are built through their ``layout``
functions with the query a finding's link carries (the browser test clicks the link).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from core import Finding, LogDir
from core.diagnose import diagnose
from dashboard.context import AppContext
from dashboard.evidence import EVIDENCE_RULES, evidence_figure, evidence_href
from dashboard.pages import layers, overview, updates
from examples.init_experiment import run_experiment
from monitor import Monitor
from tests._nets import train_mlp

CASES = {
    "tanh10_large": dict(hidden=(100,) * 10, act="tanh", init=1.0, lr=0.05, epochs=1),
    "tanh10_small": dict(hidden=(100,) * 10, act="tanh", init=0.01, lr=0.05, epochs=1),
    "relu_bias": dict(bias=-3.0, lr=0.1, epochs=2),
    "lr_low": dict(lr=1e-6, epochs=5),
    "lr20": dict(lr=20.0, epochs=2),
    "raw": dict(center=False, lr=1e-3, epochs=2),
    "big": dict(hidden=(256,), n_train=60, batch=20, lr=0.1, epochs=40),
    "fc3": dict(hidden=(64, 64, 64), init="he", last_scale=0.1, lr=0.02, lr_scale=(1, 1, 30, 1), epochs=5),
}
# rule -> (page, plot the page opens on)
PAGE_OF = {"vanishing_activations": "layers", "exploding_activations": "layers", "saturation": "layers",
           "dead_relu": "layers", "update_ratio": "updates", "vanishing_gradients": "updates",
           "exploding_gradients": "updates", "loss_explosion": "", "nan_loss": "", "lr_too_low": "",
           "initial_loss": "", "inputs_not_centered": "", "overfitting": ""}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence")
    for name, kw in CASES.items():
        train_mlp(root, name, **kw)
    run_experiment(root, n=200, nonlinearities=("relu",), inits=("large",))
    with Monitor(root, "info_only", num_classes=10, heartbeat=0) as mon:
        mon.finding(Finding("activations_not_visible", "info", 0, message="No activation module is visible.",
                            fix="Use nn.ReLU modules instead of F.relu."))
        mon.log(0, loss=2.3)
    ld = LogDir(root)
    ld.refresh()
    return ld


def _all(logdir):
    for run in logdir.runs():
        if run.name == "info_only":  # a note without a plot (nothing recorded shows it)
            assert all(evidence_href(run, f) is None for f in diagnose(run))
            continue
        for f in diagnose(run):
            yield run, f


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    if children is None:
        return
    for c in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(c, "to_plotly_json"):
            yield from _walk(c)


def _text(component) -> str:
    out = []
    for c in _walk(component):
        ch = getattr(c, "children", None)
        if isinstance(ch, str):
            out.append(ch)
        elif isinstance(ch, (list, tuple)):
            out += [x for x in ch if isinstance(x, str)]
    return " ".join(out)


def test_every_finding_links_to_the_page_of_its_plot_with_step_and_layer(logdir):
    rules = set()
    for run, f in _all(logdir):
        rules.add(f.rule)
        href = evidence_href(run, f)
        assert href is not None, f.rule
        url = urlsplit(href)
        q = dict(parse_qsl(url.query))
        page = url.path.rstrip("/").split("/")[-1] if PAGE_OF[f.rule] else ""
        assert page == PAGE_OF[f.rule], (f.rule, href)
        assert q["rule"] == f.rule and q["step"] == str(f.step)
        if f.layers:
            assert q["finding_layer"] in f.layers
            if page == "layers":
                assert q["layer"] in f.layers
            if page == "updates":
                assert q["param"] in run.params.names
    assert set(PAGE_OF) <= rules  # every kind of evidence was exercised


def _hlines(fig):
    return [s.y0 for s in fig.layout.shapes if s.type == "line" and s.y0 == s.y1 and s.xref.endswith("domain")]


def _vlines(fig):
    return [s.x0 for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1 and s.yref.endswith("domain")]


def test_each_evidence_plot_draws_the_threshold_and_marks_the_step(logdir):
    for run, f in _all(logdir):
        fig = evidence_figure(run, f)
        assert f.rule in fig.layout.title.text and f"step {f.step}" in fig.layout.title.text
        if f.rule not in ("vanishing_activations", "exploding_activations"):
            assert f.step in _vlines(fig), f.rule
        if f.rule in ("dead_relu", "saturation", "inputs_not_centered"):
            assert pytest.approx(f.threshold) in _hlines(fig)
        if f.rule == "update_ratio" and "other hidden" not in f.message:
            assert pytest.approx(f.threshold) in _hlines(fig)
        if f.rule == "loss_explosion":
            first = float(run.scalar("loss").values[0])
            assert pytest.approx(first * f.threshold) in _hlines(fig)
        if f.rule in ("vanishing_gradients", "exploding_gradients"):
            names = [t.name for t in fig.data]
            assert any(n.startswith(f"{f.threshold:g} x ") for n in names)  # the threshold, relative to the output
        if f.rule == "vanishing_activations":
            base = run.acts.field("std")[run.acts.row_at(f.step), run.acts.index["fc1"]]
            assert pytest.approx(base * f.threshold) in _hlines(fig)
        if f.rule == "exploding_activations":
            assert any("per layer" in (t.name or "") for t in fig.data) or _hlines(fig)


def test_the_linked_page_preselects_the_layer_and_step_and_shows_the_evidence(logdir):
    ctx = AppContext(logdir)
    run = logdir.get("relu_bias")
    (f,) = [f for f in diagnose(run) if f.rule == "dead_relu"]
    q = dict(parse_qsl(urlsplit(evidence_href(run, f)).query))
    page = layers.layout(ctx, run="relu_bias", query=q)
    by_id = {getattr(c, "id", None): c for c in _walk(page)}
    assert by_id["layers-layer"].value == "fc1"
    assert run.acts.step_array()[by_id["layers-step"].value] == f.step
    assert by_id["evidence-graph"].figure.layout.title.text.startswith("dead_relu at step")
    assert f.message in _text(by_id["evidence"])
    run = logdir.get("fc3")
    (f,) = [f for f in diagnose(run) if f.rule == "update_ratio"]
    page = updates.layout(ctx, run="fc3", query=dict(parse_qsl(urlsplit(evidence_href(run, f)).query)))
    by_id = {getattr(c, "id", None): c for c in _walk(page)}
    assert by_id["updates-param"].value == "W3" and "evidence-graph" in by_id


def test_the_overview_links_each_finding_to_its_plot_and_shows_info_findings(logdir):
    ctx = AppContext(logdir)
    page = overview.layout(ctx, run="lr20", query={})
    links = [c.href for c in _walk(page) if getattr(c, "children", None) == "show the plot"]
    assert sorted(links) == sorted(evidence_href(logdir.get("lr20"), f) for f in ctx.findings(logdir.get("lr20")))
    assert "evidence" not in {getattr(c, "id", None) for c in _walk(page)}  # no evidence card without a query
    info = overview.layout(ctx, run="info_only", query={})
    text = _text(info)
    assert "activations_not_visible" in text and "No activation module is visible." in text and "info" in text


def test_the_html_report_puts_the_plot_beside_each_finding(logdir, tmp_path):
    from dashboard.report import run_report

    run = logdir.get("tanh10_small")
    findings = diagnose(run)
    html = run_report(run)
    assert html.count('class="bs-evidence"') == len(findings) >= 3
    for f in findings:
        assert f"{f.rule} at step {f.step}" in html  # each evidence figure's title
    # The seven figures of the run pages plus one per finding.
    assert html.count('class="plotly-graph-div"') == 7 + len([f for f in findings if f.rule in EVIDENCE_RULES])


@pytest.mark.browser
def test_clicking_a_finding_opens_its_plot_in_the_browser(logdir):
    from tests._server import BrowserPage, chromium, dashboard_server

    with dashboard_server(logdir.path) as base, chromium() as browser:
        for width, height in ((1400, 1000), (1000, 800)):
            page = BrowserPage(browser, base)
            page.page.set_viewport_size({"width": width, "height": height})
            page.goto("/run/relu_bias", "overview-loss")
            page.page.locator(".bs-finding", has_text="dead_relu").get_by_role("link", name="show the plot").click()
            page.wait_graph("evidence-graph")
            assert "/run/relu_bias/layers?rule=dead_relu" in page.page.url
            assert "dead_relu at step" in page.page.inner_text("#evidence")
            assert page.page.inner_text("#layers-layer") .strip() == "fc1"  # the layer picked for the page's plots
            page.wait_graph("layers-hist")
            page.shot(f"evidence-dead-relu-{width}")
            page.goto("/run/info_only", "overview-loss")
            assert "activations_not_visible" in page.page.inner_text("#overview-findings")
            assert page.errors == [] and page.dialogs == []
            page.close()


def test_hostile_layer_names_reach_the_evidence_plot_as_text(tmp_path):
    import numpy as np

    hostile = "<img src=x onerror=alert(1)>"
    with Monitor(tmp_path, "hostile", num_classes=10, every=1, heartbeat=0) as mon:
        for step in range(4):
            mon.activation(step, hostile, np.zeros((32, 16)), kind="relu")  # every unit dead
            mon.log(step, loss=2.3)
    ld = LogDir(tmp_path)
    ld.refresh()
    run = ld.get("hostile")
    (f,) = [f for f in diagnose(run) if f.rule == "dead_relu"]
    assert f.layers == (hostile,)
    text = evidence_figure(run, f).to_json()
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    q = dict(parse_qsl(urlsplit(evidence_href(run, f)).query))
    assert q["layer"] == hostile  # URL-encoded in the link, decoded to the literal name
