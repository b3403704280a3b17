"""``babysitter report PATH -o report.html``: a self-contained HTML report of one run or of a log directory.

The file opens offline: plotly.js is inlined once (``include_plotlyjs=True`` on the first
figure) and nothing is loaded from elsewhere. Every piece of text from the runs (names,
hyperparameters, messages) is escaped with ``html.escape`` before it reaches the page,
and escaped again for Plotly's label markup inside figures.
"""

from __future__ import annotations

import argparse
import html
import math
import time
from pathlib import Path
from typing import Any, Sequence

NAME = "report"
HELP = "write a self-contained HTML report (opens offline) of one run folder or a whole log directory"

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; color: #1f2933;
       background: #f5f7fa; margin: 0; padding: 24px 32px; font-size: 14px; }
h1 { font-size: 22px; margin: 0 0 4px; word-break: break-all; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: #616e7c; } .card { background: #fff; border: 1px solid #e4e7eb; border-radius: 8px;
       padding: 12px 16px; margin: 12px 0; }
table { border-collapse: collapse; font-size: 13px; } th, td { padding: 4px 10px; border-bottom: 1px solid #e4e7eb;
       text-align: left; vertical-align: top; } th { background: #f0f4f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.sev-error { color: #d64545; font-weight: 600; } .sev-warning { color: #e08a00; font-weight: 600; }
.sev-info { color: #3f7fbf; font-weight: 600; } .fix { color: #1f2933; margin-top: 2px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(520px, 100%), 1fr)); gap: 12px; }
/* A grid item is as wide as its content by default, and a drawn figure is content: without
   min-width 0 a figure drawn once at full width keeps its card (and the grid) that wide. */
.grid > .card { min-width: 0; }
.card > div { width: 100%; }
.scroll { overflow-x: auto; max-height: 640px; overflow-y: auto; }
.evidence { display: grid; grid-template-columns: minmax(240px, 1fr) minmax(0, 2fr); gap: 12px;
       align-items: start; border-bottom: 1px solid #e4e7eb; padding: 8px 0; }
.evidence:last-child { border-bottom: none; } .evidence .card { margin: 0; }
@media (max-width: 900px) { .evidence { grid-template-columns: 1fr; } }
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a run folder, or a log directory for a comparison report")
    parser.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    parser.add_argument("--max-runs", type=int, default=20,
                        help="comparison: how many of the best runs to overlay in the curve plots")


def esc(s: Any) -> str:
    """Text for the page, escaped (quotes too, so it is safe in attributes)."""
    return html.escape(str(s), quote=True)


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        return "–" if math.isnan(v) else ("∞" if v > 0 else "-∞") if math.isinf(v) else f"{v:.4g}"
    try:
        import pandas as pd

        if v is pd.NA:
            return "–"
    except ImportError:  # pragma: no cover
        pass
    return esc(v)


class _Figures:
    """Turns figures into HTML divs; plotly.js goes inline with the first one only."""

    def __init__(self) -> None:
        self.first = True
        self.count = 0

    def div(self, fig) -> str:
        out = fig.to_html(full_html=False, include_plotlyjs=self.first, include_mathjax=False,
                          config={"displaylogo": False, "responsive": True})
        self.first = False
        self.count += 1
        return f'<div class="card">{out}</div>'


def _findings_html(run: Any, findings: Sequence[Any], figs: "_Figures") -> str:
    """Each finding with the plot that shows it beside it (the dashboard's evidence figure)."""
    from dashboard.evidence import EVIDENCE_RULES, evidence_figure

    if not findings:
        return '<p class="muted">No findings.</p>'
    rows = []
    for f in findings:
        layers = f' · layers {esc(", ".join(f.layers))}' if f.layers else ""
        text = (f'<div><div><span class="sev-{esc(f.severity)}">{esc(f.severity)}</span> <b>{esc(f.rule)}</b>'
                f' <span class="muted">step {esc(f.step)}{layers}</span></div>'
                f'<div>{esc(f.message)}</div><div class="fix"><b>Fix:</b> {esc(f.fix)}</div></div>')
        plot = figs.div(evidence_figure(run, f)) if f.rule in EVIDENCE_RULES else ""
        rows.append(f'<div class="evidence">{text}{plot}</div>')
    return "".join(rows)


def _kv_table(d: dict[str, Any]) -> str:
    if not d:
        return '<p class="muted">none recorded</p>'
    return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{_num(v)}</td></tr>" for k, v in d.items()) + "</table>"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
            f'<p class="muted">Written by babysitter report on {esc(time.strftime("%Y-%m-%d %H:%M:%S"))}.</p>'
            f"</body></html>\n")


def run_report(run) -> str:
    """The HTML of a one-run report: summary, findings, loss, accuracy, layer and update statistics."""
    from core import views
    from core.summary import SummaryCache
    from dashboard import figures as F

    cache = SummaryCache()  # one diagnosis gives both the summary and the findings list
    s = cache.get(run)
    figs = _Figures()
    loss, vloss = views.series(run, "loss"), views.series(run, "val_loss")
    parts = [f"<h1>{esc(run.name)}</h1>",
             f'<p class="muted">status {esc(s.status)} · last step {_num(s.steps)} · '
             f"best val acc {_num(s.best_val_acc)} · final loss {_num(s.final_loss)}</p>"]
    if s.error:
        parts.append(f'<div class="card"><b>Error:</b> {esc(s.error)}</div>')
    parts.append('<h2>Findings</h2><div class="card">' + _findings_html(run, cache.findings(run), figs) + "</div>")
    parts.append('<h2>Hyperparameters</h2><div class="card">' + _kv_table(s.hparams) + "</div>")
    parts.append('<h2>Loss and accuracy</h2><div class="grid">')
    parts.append(figs.div(F.loss_figure(loss.steps, loss.values, val_steps=vloss.steps, val_loss=vloss.values)))
    tr, va = views.series(run, "train_acc"), views.series(run, "val_acc")
    parts.append(figs.div(F.accuracy_figure(tr.steps, tr.values, va.steps, va.values)))
    parts.append("</div>")
    at = views.layers_at(run)  # the last logged step
    if at.step is not None:
        parts.append('<h2>Layers</h2><div class="grid">')
        parts.append(figs.div(F.depth_figure(at.names, at.values["mean"], at.values["std"], step=at.step,
                                             kinds=at.kinds)))
        parts.append(figs.div(F.dead_saturation_figure(views.layer_lines(run, "dead_frac", at.names),
                                                       views.layer_lines(run, "sat_frac", at.names))))
        parts.append("</div>")
    if views.param_names(run):
        parts.append('<h2>Updates</h2><div class="grid">')
        parts.append(figs.div(F.update_ratio_figure(views.param_lines(run, "upd_ratio", positive=True))))
        parts.append(figs.div(F.grad_norm_figure(views.param_lines(run, "grad_norm", positive=True))))
        parts.append("</div>")
    problems = run.all_problems()
    if problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in problems[:50])
        parts.append(f'<h2>Problems reading the files</h2><div class="card"><ul>{items}</ul></div>')
    return _page(f"Babysitter report: {run.name}", "\n".join(parts))


_TABLE_COLS = (
    ("run", "run"), ("status", "status"), ("steps", "steps"), ("best_val_acc", "best val"),
    ("final_val_acc", "val"), ("final_train_acc", "train"), ("gap", "gap"), ("final_loss", "loss"),
    ("errors", "errors"), ("warnings", "warnings"), ("findings", "findings"),
)


def comparison_report(logdir, *, max_runs: int = 20) -> str:
    """The HTML of a comparison report: runs table, search findings, scatters, overlays, parallel coordinates."""
    from core import views
    from core.compare import SummaryCache, column_heading, hparam_specs, search_findings, sort_frame, summaries_frame
    from dashboard.compare_figures import overlay_figure, parallel_figure, scatter_figure

    runs = {r.name: r for r in logdir.runs()}
    summaries = SummaryCache().summaries(runs.values())
    df = sort_frame(summaries_frame(summaries), "best_val_acc")
    specs = hparam_specs(summaries)
    edges = search_findings(summaries)
    figs = _Figures()
    parts = [f"<h1>Run comparison: {esc(logdir.path)}</h1>",
             f'<p class="muted">{len(df)} runs · sorted by best validation accuracy</p>']
    if edges:
        items = "".join(f'<li><span class="sev-warning">edge_of_range</span> {esc(e.finding.message)}'
                        f'<div class="fix"><b>Fix:</b> {esc(e.finding.fix)}</div></li>' for e in edges)
        parts.append(f'<h2>Search findings</h2><div class="card"><ul>{items}</ul></div>')
    hp_cols = [c for c in df.columns if c.startswith("hp.")]
    head = ("".join(f"<th>{esc(h)}</th>" for _, h in _TABLE_COLS)
            + "".join(f"<th>{esc(column_heading(c))}</th>" for c in hp_cols))
    body = []
    for rec in df[[c for c, _ in _TABLE_COLS] + hp_cols].itertuples(index=False):
        cells = []
        for i, v in enumerate(rec):
            cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{_num(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    parts.append(f'<h2>Runs</h2><div class="card scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>')
    # A hyperparameter that is the same in every run has nothing to show against the metric.
    numeric = [k for k, s in specs.items() if s["numeric"] and s["varying"]]
    by_param = {e.param: e for e in edges}
    if numeric:
        parts.append('<h2>Validation accuracy against each hyperparameter</h2><div class="grid">')
        for i, p in enumerate(numeric):
            other = next((q for q in numeric if q != p), None)
            parts.append(figs.div(scatter_figure(df, p, color=other, specs=specs, edge=by_param.get(p))))
        parts.append("</div>")
    top = [n for n in df["run"].tolist()[:max_runs]]
    loss_curves, acc_curves = [], []
    for n in top:
        r = runs[n]
        s = views.series(r, "loss")
        loss_curves.append((n, s.steps, s.values))
        v = views.series(r, "val_acc")
        acc_curves.append((n, v.steps, v.values))
    parts.append(f'<h2>Curves of the {len(top)} best runs</h2><div class="grid">')
    parts.append(figs.div(overlay_figure(loss_curves, title="Training loss", y_title="loss", log_y=True)))
    parts.append(figs.div(overlay_figure(acc_curves, title="Validation accuracy", y_title="val accuracy",
                                         markers=True)))
    parts.append("</div>")
    if len(numeric) >= 1:
        parts.append("<h2>Parallel coordinates</h2>")
        parts.append(figs.div(parallel_figure(df, numeric, specs=specs)))
    return _page(f"Babysitter comparison: {logdir.path}", "\n".join(parts))


def write_report(path: str | Path, output: str | Path, *, max_runs: int = 20) -> str:
    """Write the report of ``path`` (a run folder or a log directory) to ``output``; returns ``"run"`` or ``"comparison"``.

    Raises:
        PathError: when ``path`` does not exist or holds no run (nothing is written then).
    """
    from babysitter.commands import find_runs, open_logdir
    from core.reader import is_run_dir

    p = Path(path)
    if is_run_dir(p):
        text, kind = run_report(find_runs(p)[0][1]), "run"
    else:
        text, kind = comparison_report(open_logdir(p), max_runs=max_runs), "comparison"
    out = Path(output)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return kind


def run(args: argparse.Namespace) -> int:
    from babysitter.commands import PathError, usage_error

    try:
        kind = write_report(args.path, args.output, max_runs=args.max_runs)
    except PathError as err:
        return usage_error(NAME, str(err))
    except OSError as err:
        return usage_error(NAME, f"cannot write {args.output}: {err}")
    print(f"wrote {kind} report {args.output}")
    return 0
