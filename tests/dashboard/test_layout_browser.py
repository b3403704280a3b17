"""What a person sees: the geometry of every page and of both HTML reports, in a real Chromium.

DOM-level tests say a figure exists; these say it can be read. One server (the real
``python -m babysitter dashboard``) over two real numpy trainings of the demo network, one
healthy and one whose learning rate makes it diverge, and one browser. Every page (run
list, overview, layers, updates of each run, the compare page with both runs ticked) and
both kinds of ``babysitter report`` are opened at 1400x1000 and 1000x800, and measured:

- every figure lies inside its card, and no two figures overlap;
- no title, legend entry or annotation overlaps another text (titles, legends,
  annotations, axis titles, tick labels), no annotation covers a drawn point, and no note
  placed on a plot area (not at a data value) sits in a subplot that has data;
- each subplot has room to be read (a plot area at least 100 px tall);
- the page does not scroll sideways; tables fit their card or scroll inside it, every
  column has a heading and no two headings are the same;
- tick labels carry no SI suffix ("1p", "110µ", "6B").

Screenshots of every page go to ``test-artifacts/layout-*.png``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from babysitter.commands.report import write_report
from babysitter.demo_training import run_demo
from tests._server import ARTIFACTS, chromium, dashboard_server

pytestmark = pytest.mark.browser

SIZES = ((1400, 1000), (1000, 800))
RUNS = ("healthy", "diverged")

# Runs in the page; returns a list of sentences, one per defect. ``cardSel`` names what a card is.
MEASURE_JS = r"""
(cardSel) => {
  const out = [];
  const R = (el) => el.getBoundingClientRect();
  const shown = (el) => { const r = R(el); return r.width > 0 && r.height > 0; };
  const overlap = (a, b, tol = 1) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > tol
      && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > tol;
  const inside = (a, b, tol = 1) => a.left >= b.left - tol && a.right <= b.right + tol
      && a.top >= b.top - tol && a.bottom <= b.bottom + tol;
  const txt = (el) => (el.textContent || '').trim().slice(0, 40);
  const de = document.documentElement;
  if (de.scrollWidth > de.clientWidth + 1) out.push(`page scrolls sideways (${de.scrollWidth} > ${de.clientWidth} px)`);

  const plots = [...document.querySelectorAll('.js-plotly-plot')].filter(shown);
  const plotName = (gd) => {
    const holder = gd.closest('[id]');
    const t = gd.querySelector('.gtitle');
    return (holder && holder.id ? '#' + holder.id : 'figure') + (t ? ` "${txt(t)}"` : '');
  };
  const boxes = plots.map((gd) => {
    const svgs = [...gd.querySelectorAll('.main-svg')];
    const r = svgs.length ? R(svgs[0]) : R(gd);
    return {gd, r, name: plotName(gd)};
  });
  for (const b of boxes) {
    const card = b.gd.closest(cardSel);
    if (!card) { out.push(`${b.name}: not inside a card`); continue; }
    const c = R(card);
    if (!inside(b.r, c)) {
      out.push(`${b.name}: figure ${Math.round(b.r.left)}..${Math.round(b.r.right)} x ${Math.round(b.r.top)}..`
               + `${Math.round(b.r.bottom)} outside its card ${Math.round(c.left)}..${Math.round(c.right)} x `
               + `${Math.round(c.top)}..${Math.round(c.bottom)}`);
    }
  }
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    if (overlap(boxes[i].r, boxes[j].r)) out.push(`${boxes[i].name} overlaps ${boxes[j].name}`);
  }

  const SI = /\d\s*[kMGTPEZYBmunpfazyµμ]$/;
  for (const b of boxes) {
    const gd = b.gd, fl = gd._fullLayout || {};
    const q = (sel) => [...gd.querySelectorAll(sel)].filter(shown).filter((e) => txt(e) !== '');
    const primary = [
      ...q('.gtitle').map((e) => ['title', e]),
      ...q('.legend .traces').map((e) => ['legend entry', e]),
      ...q('.annotation-text-g').map((e) => ['annotation', e]),
    ];
    const others = [
      ...q('.g-xtitle text, .g-ytitle text, [class^="g-x"] .xtitle, [class^="g-y"] .ytitle').map((e) => ['axis title', e]),
      ...q('.xtick text, .ytick text').map((e) => ['tick label', e]),
      ...q('.parcoords .axis-title').map((e) => ['axis title', e]),
      ...q('.parcoords .tick text').map((e) => ['tick label', e]),
      ...q('.colorbar .cbtitle text, .cbaxis text, .colorbar text').map((e) => ['colour bar text', e]),
    ];
    const seen = new Set();
    for (let i = 0; i < primary.length; i++) {
      const [ka, a] = primary[i], ra = R(a);
      for (let j = 0; j < primary.length + others.length; j++) {
        if (j === i) continue;
        const [kb, bEl] = j < primary.length ? primary[j] : others[j - primary.length];
        if (a.contains(bEl) || bEl.contains(a)) continue;
        const key = [a, bEl].map((e) => txt(e)).sort().join('|');
        if (j < primary.length && seen.has(key)) continue;
        if (overlap(ra, R(bEl), 2)) {
          seen.add(key);
          out.push(`${b.name}: ${ka} "${txt(a)}" overlaps ${kb} "${txt(bEl)}"`);
        }
      }
    }
    for (const [, e] of others) {
      if (e.closest('.xtick, .ytick, .tick, .cbaxis, .colorbar') && SI.test(txt(e))) {
        out.push(`${b.name}: tick label "${txt(e)}" has an SI suffix`);
      }
    }
    // Subplots with room to be read.
    for (const [id, sp] of Object.entries(fl._plots || {})) {
      if (sp.yaxis && sp.yaxis._length < 100) {
        out.push(`${b.name}: subplot ${id} is only ${Math.round(sp.yaxis._length)} px tall`);
      }
    }
    // No note over drawn data: the annotation's box holds no drawn point of any trace.
    const gr = R(gd);
    const notes = [...gd.querySelectorAll('.annotation')].filter(shown);
    const pts = [];
    for (const tr of gd._fullData || []) {
      if (tr.visible !== true || !['scatter', 'scattergl', 'bar'].includes(tr.type)) continue;
      const xa = fl[(tr.xaxis || 'x').replace('x', 'xaxis')], ya = fl[(tr.yaxis || 'y').replace('y', 'yaxis')];
      if (!xa || !ya || !tr.x || !tr.y) continue;
      const n = Math.min(tr.x.length, tr.y.length), step = Math.max(1, Math.floor(n / 4000));
      for (let k = 0; k < n; k += step) {
        const xv = xa.d2l(tr.x[k]), yv = ya.d2l(tr.y[k]);
        if (!Number.isFinite(xv) || !Number.isFinite(yv)) continue;
        const px = gr.left + xa._offset + xa.l2p(xv), py = gr.top + ya._offset + ya.l2p(yv);
        if (px < gr.left + xa._offset - 1 || px > gr.left + xa._offset + xa._length + 1) continue;
        if (py < gr.top + ya._offset - 1 || py > gr.top + ya._offset + ya._length + 1) continue;
        pts.push([px, py, tr.name, (tr.xaxis || 'x') + (tr.yaxis || 'y')]);
      }
    }
    for (const a of notes) {
      const r = R(a), cx = (r.left + r.right) / 2, cy = (r.top + r.bottom) / 2;
      const hit = pts.find(([x, y]) => x >= r.left && x <= r.right && y >= r.top && y <= r.bottom);
      if (hit) { out.push(`${b.name}: note "${txt(a)}" is drawn over data (${hit[2]})`); continue; }
      // A note placed on the plot area (not at a data value, as a threshold line's label is) inside a
      // subplot that has data is about the wrong subplot, or hides some of it.
      const spec = (fl.annotations || [])[Number(a.getAttribute('data-index'))] || {};
      if (/^[xy]\d*$/.test(spec.yref || '')) continue;
      for (const [id, sp] of Object.entries(fl._plots || {})) {
        const xa = sp.xaxis, ya = sp.yaxis;
        if (!xa || !ya) continue;
        const l = gr.left + xa._offset, t = gr.top + ya._offset;
        if (cx < l || cx > l + xa._length || cy < t || cy > t + ya._length) continue;
        const has = pts.find((p) => p[3] === id);
        if (has) out.push(`${b.name}: note "${txt(a)}" sits in subplot ${id}, which has data (${has[2]})`);
      }
    }
  }

  for (const t of [...document.querySelectorAll('table')].filter(shown)) {
    const card = t.closest(cardSel);
    const where = t.closest('[id]') ? '#' + t.closest('[id]').id : 'table';
    if (!card) { out.push(`${where}: table not inside a card`); continue; }
    const c = R(card), r = R(t);
    if (r.right > c.right + 1 || r.left < c.left - 1) {
      let el = t.parentElement, scrolls = false;
      while (el && el !== card.parentElement) {
        const ox = getComputedStyle(el).overflowX;
        if ((ox === 'auto' || ox === 'scroll') && inside(R(el), c)) { scrolls = true; break; }
        el = el.parentElement;
      }
      if (!scrolls) out.push(`${where}: table ${Math.round(r.width)} px wide sticks out of its card (${Math.round(c.width)} px)`);
    }
    const head = t.querySelector('tr');
    const cells = head ? [...head.children].filter((e) => e.tagName === 'TH') : [];
    if (cells.length > 1) {
      const names = cells.filter((e) => !e.classList.contains('dash-select-header')).map((e) => txt(e));
      names.forEach((n, i) => {
        if (!n) out.push(`${where}: column ${i + 1} has no heading`);
        else if (names.indexOf(n) !== i) out.push(`${where}: two columns are headed "${n}"`);
      });
    }
  }
  return out;
}
"""


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("layout") / "runs"
    run_demo(d, steps=400, name="healthy", variant="healthy", seed=0, heartbeat=0)
    run_demo(d, steps=400, name="diverged", variant="diverging", seed=1, heartbeat=0)
    return d


@pytest.fixture(scope="module")
def reports(logdir, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("reports")
    paths = {name: out / f"{name}.html" for name in (*RUNS, "comparison")}
    for name in RUNS:
        assert write_report(logdir / name, paths[name]) == "run"
    assert write_report(logdir, paths["comparison"]) == "comparison"
    return paths


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def server(logdir):
    with dashboard_server(logdir, timeout=60) as base:
        yield base


def _wait_plots(page, selector: str = ".js-plotly-plot") -> None:
    """Until every figure on the page has drawn (has data or an annotation) and nothing moved for a moment."""
    page.wait_for_function(
        f"() => {{ const g = [...document.querySelectorAll('{selector}')];"
        " return g.length > 0 && g.every(p => p._fullLayout && p.querySelector('.main-svg')); }",
        polling=100, timeout=30_000)
    page.wait_for_timeout(700)  # a late callback (the second figure of a page) and Plotly's relayout


def _measure(page, shot: str, card: str = ".bs-card") -> list[str]:
    """The page's defects, measured after a window resize (Plotly's responsive figures redraw then:
    a layout that only holds until the first resize is not a layout), and its screenshot."""
    page.evaluate("window.dispatchEvent(new Event('resize'))")
    page.wait_for_timeout(400)
    problems = [f"{shot}: {p}" for p in page.evaluate(MEASURE_JS, card)]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"layout-{shot}.png"), full_page=True)
    return problems


def _pages(page, base: str, size: str) -> list[str]:
    problems: list[str] = []
    page.goto(base + "/")
    page.get_by_role("link", name="healthy").wait_for()
    problems += _measure(page, f"runs-{size}")
    for run in RUNS:
        for sub, graph in (("", "overview-loss"), ("/layers", "layers-deadsat"), ("/updates", "updates-ratio")):
            page.goto(f"{base}/run/{run}{sub}")
            page.wait_for_selector(f"#{graph} .js-plotly-plot")
            _wait_plots(page)
            problems += _measure(page, f"{run}{sub.replace('/', '-') or '-overview'}-{size}")
    page.goto(base + "/compare")
    page.wait_for_selector("#compare-table input[type=checkbox]", timeout=30_000)
    boxes = page.locator("#compare-table tr:has(input[type=checkbox]) input[type=checkbox]")
    for i in range(boxes.count()):
        boxes.nth(i).check()
    page.wait_for_function("() => { const g = document.querySelector('#compare-loss .js-plotly-plot');"
                           " return g && g.data && g.data.length === 2; }", polling=50, timeout=20_000)
    _wait_plots(page)
    problems += _measure(page, f"compare-{size}")
    return problems


@pytest.mark.parametrize("width,height", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_page_and_report_is_laid_out_readably(browser, server, reports, width, height):
    size = f"{width}x{height}"
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        problems = _pages(page, server, size)
        for name, path in reports.items():
            page.goto(path.as_uri())
            _wait_plots(page)
            problems += _measure(page, f"report-{name}-{size}")
    finally:
        page.close()
    assert errors == []
    assert problems == [], "\n".join(problems)


def test_what_the_pages_say_matches_the_runs(browser, server):
    """A diverged run's loss is drawn on a log axis by default, a healthy one's on a linear axis;
    a finished run never says "so far"."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(server + "/run/diverged")
        page.wait_for_selector("#overview-loss .js-plotly-plot")
        _wait_plots(page)
        assert page.evaluate("document.querySelector('#overview-loss .js-plotly-plot').layout.yaxis.type") == "log"
        page.goto(server + "/run/healthy")
        page.wait_for_selector("#overview-findings")
        _wait_plots(page)
        assert page.evaluate("document.querySelector('#overview-loss .js-plotly-plot').layout.yaxis.type") == "linear"
        assert "so far" not in page.inner_text("#app-page")
    finally:
        page.close()


@pytest.mark.parametrize("low, high", [(0.003, 0.4), (1e-5, 0.1), (0.004, 0.012), (0.002, 0.03)])
def test_the_tick_labels_of_a_log_sampled_scatter_never_run_into_each_other(browser, tmp_path, low, high):
    # Over a decade or two Plotly labels every digit; written as values ("0.007") they ran together.
    import numpy as np
    import pandas as pd

    from core.compare import HP_PREFIX
    from dashboard.compare_figures import scatter_figure

    lr = np.geomspace(low, high, 5)
    df = pd.DataFrame({"run": [f"r{i}" for i in range(5)], HP_PREFIX + "lr": lr,
                       "best_val_acc": np.linspace(0.2, 0.9, 5)})
    fig = scatter_figure(df, "lr", specs={"lr": {"log": True, "low": low, "high": high}})
    page = tmp_path / "scatter.html"
    fig.write_html(page, include_plotlyjs=True, full_html=True, default_width="100%")
    for width, height in SIZES:
        p = browser.new_page(viewport={"width": width - 400, "height": height})  # the compare card's share
        try:
            p.goto(page.as_uri())
            p.wait_for_selector(".xtick text")
            boxes = p.evaluate("""() => [...document.querySelectorAll('.xtick text')].map((e) => {
                const r = e.getBoundingClientRect(); return [e.textContent, r.left, r.right]; })""")
        finally:
            p.close()
        boxes.sort(key=lambda b: b[1])
        assert len(boxes) >= 2, boxes
        crowded = [(a[0], b[0]) for a, b in zip(boxes, boxes[1:]) if b[1] < a[2] + 2]
        assert not crowded, (width, [b[0] for b in boxes])
