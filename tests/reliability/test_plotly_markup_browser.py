"""Names holding Plotly's rich-text markup are drawn as the text they are, in the real browser.

Plotly draws titles, ticks, legends, hover labels and subplot titles as an HTML subset:
``<a href>`` becomes a clickable link (an SVG ``<a>``), ``<span style>`` a styled
``<tspan>``. A run whose layer and parameter names (and, in ``meta.json``, a layer kind)
hold such markup is opened in headless Chromium on the Layers and Updates pages, and its
``babysitter report`` file is opened too; the depth figure's hover label is shown with
Plotly's own hover call. No figure may hold a link or a tspan styled from a name, and the
markup must be readable in the figure as plain text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from monitor import Monitor
from tests._server import ROOT, BrowserPage, chromium, dashboard_server

pytestmark = pytest.mark.browser

LINK = '<a href="https://example.com/pwn">click me</a>'
BIG = '<span style="font-size:80px;fill:red">BIG</span>'
BOLD = "<b>bold</b>"
KIND = '<a href="https://example.com/kind">kind</a>'  # only reachable through a hand-written meta.json
RUN = "markup"

# Inside every Plotly figure on the page: links, tspans styled like the payload, and all text.
PROBE = """() => {
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  const links = plots.reduce((n, p) => n + p.querySelectorAll('a').length, 0);
  const styled = plots.reduce((n, p) => n + Array.from(p.querySelectorAll('tspan, text')).filter(
      t => /80px|fill:\\s*red/.test(t.getAttribute('style') || '')).length, 0);
  const text = plots.map(p => Array.from(p.querySelectorAll('text')).map(t => t.textContent).join('\\n')).join('\\n');
  return {plots: plots.length, links: links, styled: styled, text: text};
}"""

HOVER_DEPTH = """(sel) => {
  const g = document.querySelector(sel);
  Plotly.Fx.hover(g, [{curveNumber: 0, pointNumber: 0}]);
  const h = g.querySelector('.hoverlayer');
  return {links: h.querySelectorAll('a').length,
          styled: Array.from(h.querySelectorAll('tspan')).filter(t => /80px/.test(t.getAttribute('style') || '')).length,
          text: h.textContent};
}"""


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("markup") / "runs"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 8))
    names = [LINK, BIG, BOLD]
    with Monitor(d, RUN, every=1, heartbeat=0, num_classes=3) as mon:
        mon.set_layers([(n, "relu") for n in names])
        for step in range(6):
            h = X
            for n in names:
                W = rng.standard_normal((8, 8)) * 0.3
                h = np.maximum(0, h @ W)
                mon.activation(step, n, h, kind="relu")
                mon.weights(step, f"W {n}", W, update=W * 1e-3, grad=W * 0.1)
            mon.log(step, loss=1.1 - 0.05 * step)
    meta = json.loads((d / RUN / "meta.json").read_text())
    meta["layers"][0]["kind"] = KIND
    (d / RUN / "meta.json").write_text(json.dumps(meta))
    return d


def _assert_literal(probe: dict, where: str, *texts: str) -> None:
    assert probe["links"] == 0, f"{where}: a name became a link"
    assert probe["styled"] == 0, f"{where}: a name styled the figure's text"
    for t in texts:
        assert t in probe["text"], f"{where}: {t!r} is not drawn as text"


def test_markup_in_names_is_drawn_literally_on_the_layers_and_updates_pages(logdir):
    with dashboard_server(logdir) as base, chromium() as browser:
        page = BrowserPage(browser, base)
        page.goto(f"/run/{RUN}/layers?layer={quote(LINK, safe='')}", "layers-depth")
        for g in ("layers-hist", "layers-heatmap", "layers-deadsat"):
            page.wait_graph(g)
        page.page.wait_for_timeout(300)
        # Tick labels are cut to 40 characters; subplot titles, legend and heatmap title hold the rest.
        _assert_literal(page.js(PROBE), "layers", LINK[:39], BIG[:39], BOLD, f"{LINK}: histogram over time")
        hover = page.js(f"() => ({HOVER_DEPTH})('#layers-depth .js-plotly-plot')")
        _assert_literal(hover, "layers hover", LINK, f"({KIND})")

        page.goto(f"/run/{RUN}/updates", "updates-ratio")
        page.wait_graph("updates-grad")
        page.page.wait_for_timeout(300)
        _assert_literal(page.js(PROBE), "updates", f"W {BOLD}", f"W {LINK}"[:39])
        assert page.errors == []
        page.close()


def test_markup_in_names_and_kinds_is_drawn_literally_in_the_html_report(logdir, tmp_path):
    out = tmp_path / "report.html"
    subprocess.run([sys.executable, "-m", "babysitter", "report", str(logdir / RUN), "-o", str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    with chromium() as browser:
        page = BrowserPage(browser, "")
        page.page.goto(out.as_uri())
        page.page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4")
        _assert_literal(page.js(PROBE), "report", BOLD, f"W {BOLD}")
        # Hover the depth figure (found by its title): layer name and kind in its label.
        idx = page.js("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                      ".findIndex(g => ((g.layout.title && g.layout.title.text) || '').startsWith('Activations by depth'))")
        assert idx >= 0
        page.js(f"() => document.querySelectorAll('.js-plotly-plot')[{idx}].id = 'depth'")
        hover = page.js(f"() => ({HOVER_DEPTH})('#depth')")
        _assert_literal(hover, "report hover", LINK, f"({KIND})")
        page.close()
