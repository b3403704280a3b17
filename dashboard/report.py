"""Self-contained HTML reports: one run as its pages show it, a log directory as the compare page shows it.

A report is drawn from the pages' own pieces: a run's figures by ``run_figures`` and
``evidence`` (the functions the run pages call), a comparison's by ``compare_figures``,
its runs table with the compare table's columns (``pages.compare.table_columns``), and
its look from ``theme``: ``theme.CSS`` is the report's style sheet, the classes are the
pages' classes (``bs-card``, ``bs-finding``, ``bs-badge``...), the colours and the number
of digits in a table cell are the theme's. What the report has that the pages do not
(a finding with its evidence plot beside it, section headings, a table that scrolls in
its card) is styled in ``theme.CSS`` too.

The file opens offline: plotly.js is inlined once, with the first figure, and nothing is
loaded from elsewhere. Every string from a run (names, hyperparameters, messages, paths)
is escaped with ``html.escape`` before it reaches the page (quotes too: some land in
attributes); inside figures the builders escape it for Plotly's label markup
(``dashboard._text.plot_text``).
"""

from __future__ import annotations

import html
import math
import time
from typing import Any, Iterable, Sequence

import plotly.graph_objects as go

from core import views
from core.compare import hparam_specs, search_findings, sort_frame, summaries_frame
from core.schema import Finding
from core.summary import SummaryCache

from . import run_figures, theme
from .compare_figures import overlay_figure, parallel_figure, scatter_figure
from .evidence import EVIDENCE_RULES, evidence_figure
from .findings import FindingSource, no_findings_text, severity_counts

__all__ = ["run_report", "comparison_report", "cell_text"]


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def cell_text(v: Any) -> str:
    """A value as a table cell shows it, escaped: ``theme.TABLE_DIGITS`` significant digits, "–" when missing."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return ("∞" if v > 0 else "-∞") if math.isinf(v) else f"{v:.{theme.TABLE_DIGITS}g}"
    if _missing(v):
        return "–"
    return _esc(v)


def _missing(v: Any) -> bool:
    """None, NaN or pandas' NA (whose truth value raises, so it is compared by identity)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return True
    import pandas as pd

    return v is pd.NA


class _Figures:
    """Figures as HTML; plotly.js goes inline with the first one only."""

    def __init__(self) -> None:
        self.first = True

    def __call__(self, fig: go.Figure) -> str:
        out = fig.to_html(full_html=False, include_plotlyjs=self.first, include_mathjax=False,
                          config={"displaylogo": False, "responsive": True})
        self.first = False
        return out


def _card(*body: str, title: str | None = None) -> str:
    head = f"<h3>{_esc(title)}</h3>" if title else ""
    return f'<div class="bs-card">{head}{"".join(body)}</div>'


def _cards(*figures: str) -> str:
    """Each figure in a card of its own across the page, as the pages draw the figures with many lines."""
    return "".join(_card(f) for f in figures)


def _pair(left: str, right: str) -> str:
    """Two figures side by side (one above the other on a narrow screen), as the pages pair them."""
    return f'<div class="bs-grid2">{_card(left)}{_card(right)}</div>'



def _section(title: str) -> str:
    return f'<h3 class="bs-section">{_esc(title)}</h3>'


def _badge(text: Any, color: str) -> str:
    return f'<span class="bs-badge" style="background: {color}">{_esc(text)}</span>'


def _muted(text: str) -> str:
    return f'<span class="bs-muted">{text}</span>'


def _finding(f: Finding, where: str = "") -> str:
    """A finding as the overview page shows it: badge, rule, step and layers, message, fix."""
    color = theme.SEVERITY_COLORS.get(f.severity, theme.MUTED)
    head = [_badge(f.severity, color), f'<span class="rule">{_esc(f.rule)}</span>', where]
    if f.layers:
        head.append(f"<span>layers: {_esc(', '.join(f.layers))}</span>")
    body = [f'<div class="head">{"".join(head)}</div>', f'<div class="msg">{_esc(f.message)}</div>']
    if f.fix:
        body.append(f'<div class="fix">Fix: {_esc(f.fix)}</div>')
    return f'<div class="bs-finding" style="border-left-color: {color}">{"".join(body)}</div>'


def _page(title: str, crumbs: str, body: Iterable[str]) -> str:
    written = _esc(time.strftime("%Y-%m-%d %H:%M:%S"))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(title)}</title><style>{theme.CSS}</style></head>\n<body>\n"
            f'<div class="bs-top"><span class="bs-brand">Babysitter</span>'
            f'<div class="bs-crumbs">{_esc(crumbs)}</div></div>\n'
            f'<div class="bs-main">\n{"".join(body)}\n'
            f'<p class="bs-muted">Written by babysitter report on {written}.</p></div>\n</body></html>\n')


# -- one run ----------------------------------------------------------------------------------


def _header(s: Any, findings: list[Finding]) -> str:
    counts = severity_counts(findings)
    badges = [_badge(s.status, theme.STATUS_COLORS.get(s.status, theme.MUTED))]
    badges += [_badge(f"{counts[sev]} {sev}{'s' if counts[sev] > 1 else ''}", theme.SEVERITY_COLORS[sev])
               for sev in ("error", "warning", "info") if counts.get(sev)]
    last = f"step {cell_text(s.steps)}" if s.steps is not None else "no steps yet"
    return (f'<div class="bs-title"><h2>{_esc(s.run)}</h2>{"".join(badges)}{_muted(last)}'
            f"{_muted(f'best val acc {cell_text(s.best_val_acc)} · final loss {cell_text(s.final_loss)}')}</div>")


def _findings(run: Any, findings: list[Finding], status: str, fig: _Figures, max_points: int) -> str:
    """Each finding with the plot that shows it beside it (the figure the evidence link opens on a page)."""
    if not findings:
        return f'<div class="bs-muted">{_esc(no_findings_text(status))}</div>'
    out = []
    for f in findings:
        text = _finding(f, _muted(f"step {_esc(f.step)}"))
        if f.rule in EVIDENCE_RULES:
            out.append(f'<div class="bs-evidence">{text}<div>{fig(evidence_figure(run, f, max_points=max_points))}'
                       f"</div></div>")
        else:
            out.append(text)
    return "".join(out)


def _problems(run: Any) -> str:
    probs = run.all_problems()
    if not probs:
        return ""
    total = run.problem_count + (len(probs) - len(run.problems))
    items = [f"<li>{_esc(p)}</li>" for p in probs[:20]]
    if total > 20:
        items.append(f'<li class="bs-muted">... and {total - 20} more</li>')
    return _card(f"<ul>{''.join(items)}</ul>", title=f"{total} reading problem(s) (lines skipped)")


def _hparams(hparams: dict[str, Any]) -> str:
    if not hparams:
        return '<div class="bs-muted">none recorded</div>'
    rows = "".join(f'<tr><td class="name">{_esc(k)}</td><td>{cell_text(v)}</td></tr>' for k, v in hparams.items())
    return f'<table class="bs-table bs-kv">{rows}</table>'


def run_report(run: Any, *, max_points: int = 2000) -> str:
    """The HTML of a one-run report: what the run's overview, layers and updates pages show.

    Its header and findings (each with its evidence plot), the hyperparameters, the loss,
    accuracy and learning rate, the activations by depth and the dead and saturated units,
    the update:weight ratios and gradient norms.

    Args:
        run: a read ``core.reader.Run``.
        max_points: most points per trace, as the dashboard's ``--max-points``.
    """
    cache = SummaryCache()  # one diagnosis gives both the summary and the findings
    s = cache.get(run)
    findings = FindingSource(cache)(run)
    fig = _Figures()
    parts = [_header(s, findings)]
    if s.error:
        parts.append(_card(f"<b>Error:</b> {_esc(s.error)}"))
    parts.append(_card(_findings(run, findings, s.status, fig, max_points), title="Findings"))
    parts.append(_problems(run))
    parts.append(_card(_hparams(s.hparams), title="Hyperparameters"))
    parts.append(_section("Training"))
    parts.append(_cards(fig(run_figures.loss(run, max_points=max_points))))
    parts.append(_pair(fig(run_figures.accuracy(run, max_points=max_points)),
                       fig(run_figures.lr(run, max_points=max_points))))
    if len(views.layer_steps(run)):
        parts.append(_section("Layers"))
        parts.append(_cards(fig(run_figures.depth(run)),
                            fig(run_figures.dead_saturation(run, max_points=max_points))))
    if views.param_names(run):
        parts.append(_section("Updates"))
        parts.append(_cards(fig(run_figures.update_ratio(run, max_points=max_points)),
                            fig(run_figures.grad_norm(run, max_points=max_points))))
    return _page(f"Babysitter report: {run.name}", f"Report · {run.name}", parts)


# -- a log directory --------------------------------------------------------------------------


def _edges(edges: Sequence[Any]) -> str:
    if not edges:
        return '<div class="bs-muted">No hyperparameter\'s best value sits at the edge of its sampled range.</div>'
    return "".join(_finding(e.finding, _muted(_esc(f"{e.search or 'search'} · {e.param}"))) for e in edges)


def _runs_table(df: Any, specs: dict[str, dict[str, Any]]) -> str:
    """The compare table's columns (a column no run has a value in left out), one row per run."""
    from .pages.compare import table_columns

    cols = [c for c in table_columns(df, specs) if not df[c["id"]].map(_missing).all()]
    head = "".join(f"<th>{_esc(c['name'])}</th>" for c in cols)
    rows = []
    for rec in df.to_dict("records"):
        cells = []
        for c in cols:
            v = rec[c["id"]]
            num = c.get("type") == "numeric" and isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f'<td class="num">{cell_text(v)}</td>' if num else f"<td>{cell_text(v)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<div class="bs-scroll"><table class="bs-table bs-runs"><tr>{head}</tr>{"".join(rows)}</table></div>'


def comparison_report(logdir: Any, *, max_runs: int = 20, max_points: int = 2000) -> str:
    """The HTML of a comparison report: what the compare page shows, for every run of ``logdir``.

    The search findings, the runs table (best validation accuracy first), validation
    accuracy against each varying numeric hyperparameter, the loss and validation accuracy
    of the ``max_runs`` best runs overlaid, and parallel coordinates.

    Args:
        logdir: a refreshed ``core.logdir.LogDir``.
        max_runs: how many of the best runs to overlay in the curve plots.
        max_points: most points per trace.
    """
    runs = {r.name: r for r in logdir.runs()}
    summaries = SummaryCache().summaries(runs.values())
    df = sort_frame(summaries_frame(summaries), "best_val_acc")
    specs = hparam_specs(summaries)
    edges = search_findings(summaries)
    fig = _Figures()
    parts = [f'<div class="bs-title"><h2>Compare runs</h2>'
             f"{_muted(f'{len(df)} runs · sorted by best validation accuracy')}</div>",
             _card(_edges(edges), title="Search findings"),
             _card(_runs_table(df, specs), title="Runs")]
    # A hyperparameter that is the same in every run has nothing to show against the metric.
    numeric = [k for k, sp in specs.items() if sp["numeric"] and sp["varying"]]
    by_param = {e.param: e for e in edges}
    if numeric:
        parts.append(_section("Validation accuracy against each hyperparameter"))
        scatters = [fig(scatter_figure(df, p, color=next((q for q in numeric if q != p), None), specs=specs,
                                       edge=by_param.get(p))) for p in numeric]
        parts.append(_cards(*scatters))
    top = df["run"].tolist()[:max_runs]
    curves = {m: [] for m in ("loss", "val_acc")}
    for n in top:
        for m, out in curves.items():
            s = views.series(runs[n], m, max_points=max_points)
            out.append((n, s.steps, s.values))
    parts.append(_section(f"Curves of the {len(top)} best runs"))
    parts.append(_pair(
        fig(overlay_figure(curves["loss"], title="Training loss", y_title="loss", log_y=True, max_points=max_points)),
        fig(overlay_figure(curves["val_acc"], title="Validation accuracy", y_title="val accuracy", markers=True,
                           max_points=max_points))))
    if numeric:
        parts.append(_section("Parallel coordinates"))
        parts.append(_cards(fig(parallel_figure(df, numeric, specs=specs))))
    return _page(f"Babysitter comparison: {logdir.path}", f"Compare runs · {logdir.path}", parts)
