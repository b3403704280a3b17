"""Compact HTML summaries of a run and of a log directory, for notebooks (``_repr_html_``).

``Run``, ``LogDir`` and ``monitor.Monitor`` display as these in Jupyter: a run as its status,
its findings with their fixes, the loss curve (an inline SVG, no JavaScript) and the layer
table at the latest logged step; a log directory as one row per run. Each display reads
what the files hold at that moment, so displaying again (or ``dashboard.notebook.live``)
shows a live run's progress.

Every string from a run (names, layer names, messages, fixes) is escaped with
``html.escape``; numbers are formatted, never pasted. Nothing here runs scripts.
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable

import numpy as np

from . import views
from .schema import SEVERITY_RANK

__all__ = ["run_html", "logdir_html", "sparkline_svg"]

MAX_FINDINGS = 8
MAX_LAYERS = 24
SPARK_POINTS = 600  # points of the loss sparkline
_SEV_COLOUR = {"error": "#c62828", "warning": "#ef6c00", "info": "#546e7a"}
_STYLE = ("font-family:system-ui,sans-serif;font-size:13px;line-height:1.35;max-width:980px;"
          "border:1px solid #ddd;border-radius:6px;padding:8px 12px")
_CELL = "padding:1px 8px;text-align:right;border-bottom:1px solid #eee"
_LCELL = "padding:1px 8px;text-align:left;border-bottom:1px solid #eee"


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _num(x: Any, pct: bool = False) -> str:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return ""
    if math.isnan(f):
        return ""
    if pct:
        return f"{100 * f:.0f}%"
    return f"{f:.3g}"


def sparkline_svg(steps: np.ndarray, values: np.ndarray, *, width: int = 420, height: int = 90,
                  colour: str = "#1565c0") -> str:
    """An inline SVG polyline of ``values`` over ``steps``; non-finite points as red marks at the top."""
    steps = np.asarray(steps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(steps) > SPARK_POINTS:  # a compact picture that keeps every spike and NaN
        idx = views.decimate_index(values, SPARK_POINTS)
        steps, values = steps[idx], values[idx]
    ok = np.isfinite(values)
    pad = 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'style="background:#fafafa;border:1px solid #eee">']
    if len(steps):
        x0, x1 = float(steps.min()), float(steps.max())
        sx = (width - 2 * pad) / (x1 - x0) if x1 > x0 else 0.0
        if ok.any():
            lo, hi = float(values[ok].min()), float(values[ok].max())
            sy = (height - 2 * pad) / (hi - lo) if hi > lo else 0.0
            pts = " ".join(f"{pad + (s - x0) * sx:.1f},{height - pad - (v - lo) * sy:.1f}"
                           for s, v in zip(steps[ok], values[ok]))
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
        for s in steps[~ok][:50]:
            x = pad + (s - x0) * sx
            parts.append(f'<text x="{x:.1f}" y="12" fill="#c62828" font-size="12" text-anchor="middle">×</text>')
    parts.append("</svg>")
    return "".join(parts)


def _findings_html(findings: list[Any]) -> str:
    if not findings:
        return '<div style="color:#2e7d32">No findings: nothing in the checklist fired.</div>'
    shown = sorted(findings, key=lambda f: (SEVERITY_RANK.get(f.severity, 3), -f.step))[:MAX_FINDINGS]
    rows = []
    for f in shown:
        colour = _SEV_COLOUR.get(f.severity, "#555")
        where = f" [{_e(', '.join(f.layers))}]" if f.layers else ""
        rows.append(
            f'<li style="margin:2px 0"><b style="color:{colour}">{_e(f.severity.upper())}</b> '
            f'<code>{_e(f.rule)}</code>{where} at step {int(f.step)}: {_e(f.message)}'
            f'<br><span style="color:#555">fix: {_e(f.fix)}</span></li>')
    more = len(findings) - len(shown)
    tail = f"<div>... and {more} more (babysitter check)</div>" if more > 0 else ""
    return f'<ul style="margin:4px 0;padding-left:18px">{"".join(rows)}</ul>{tail}'


def _layer_table(run: Any) -> str:
    at = views.layers_at(run, fields=("mean", "std", "dead_frac", "sat_frac", "nan"))  # the last logged step
    if at.step is None:
        return ""
    fields = at.values
    head = "".join(f'<th style="{_CELL}">{h}</th>' for h in ("mean", "std", "dead", "saturated", "NaN"))
    body = []
    for j, (name, kind) in enumerate(zip(at.names[:MAX_LAYERS], at.kinds)):
        nan = fields["nan"][j]
        nan_txt = "" if not np.isfinite(nan) or nan == 0 else f'<b style="color:#c62828">{int(nan)}</b>'
        body.append(
            f'<tr><td style="{_LCELL}"><code>{_e(name)}</code></td><td style="{_LCELL}">{_e(kind)}</td>'
            f'<td style="{_CELL}">{_num(fields["mean"][j])}</td><td style="{_CELL}">{_num(fields["std"][j])}</td>'
            f'<td style="{_CELL}">{_num(fields["dead_frac"][j], pct=True)}</td>'
            f'<td style="{_CELL}">{_num(fields["sat_frac"][j], pct=True)}</td><td style="{_CELL}">{nan_txt}</td></tr>')
    more = len(at.names) - MAX_LAYERS
    tail = f'<div style="color:#555">... and {more} more layers</div>' if more > 0 else ""
    return (f'<div style="margin-top:6px"><b>Layers at step {at.step}</b>'
            f'<table style="border-collapse:collapse;margin-top:2px"><tr><th style="{_LCELL}">layer</th>'
            f'<th style="{_LCELL}">kind</th>{head}</tr>{"".join(body)}</table>{tail}</div>')


def run_html(run: Any, findings: Iterable[Any] | None = None) -> str:
    """The compact summary of ``run`` (a ``core.Run``, updated here): status, findings, loss, layers.

    Args:
        run: the run.
        findings: its findings (diagnosed here when ``None``).
    """
    from .diagnose import Diagnoser

    run.update()
    if findings is None:
        dx = Diagnoser()
        dx.update(run)
        findings = dx.findings()
    findings = list(findings)
    status = run.status()
    ranks = run.ranks()
    bits = [f"<b>{_e(run.name)}</b>", _e(status)]
    if run.last_step is not None:
        bits.append(f"step {int(run.last_step)}")
    if len(ranks) > 1:
        bits.append(f"{len(ranks)} ranks (curves: rank {run.stats_rank or 0})")
    n_err = sum(f.severity == "error" for f in findings)
    n_warn = sum(f.severity == "warning" for f in findings)
    bits.append(f'<span style="color:{_SEV_COLOUR["error"]}">{n_err} error(s)</span>, '
                f'<span style="color:{_SEV_COLOUR["warning"]}">{n_warn} warning(s)</span>')
    rank = run.stats_rank or 0
    loss = views.series(run, "loss", rank=rank, max_points=SPARK_POINTS)
    curve = ""
    if len(loss):
        last = loss.values[-1]
        val = views.series(run, "val_acc", rank=rank, max_points=2)  # the last point is always kept
        extra = f", {_e(val.name)} {_num(val.values[-1])}" if len(val) else ""
        curve = (f'<div style="margin-top:6px"><b>{_e(loss.name)}</b> {_num(loss.values[0])} at step '
                 f'{int(loss.steps[0])} → {_num(last) or _e(str(last))} at step {int(loss.steps[-1])}{extra}'
                 f'<br>{sparkline_svg(loss.steps, loss.values)}</div>')
    problems = f'<div style="color:#ef6c00">{run.problem_count} unreadable line(s)</div>' if run.problem_count else ""
    return (f'<div class="babysitter-run" style="{_STYLE}"><div>{" · ".join(bits)}</div>{problems}'
            f"{_findings_html(findings)}{curve}{_layer_table(run)}</div>")


def logdir_html(logdir: Any) -> str:
    """One row per run of ``logdir`` (a ``core.LogDir``, refreshed here): status, step, loss, findings."""
    from .diagnose import Diagnoser

    logdir.refresh(full=True)
    rows = []
    for run in logdir.runs():
        try:
            run.update()
            dx = Diagnoser()
            dx.update(run)
            fs = dx.findings()
        except Exception as err:  # one broken run must not hide the others
            rows.append(f'<tr><td style="{_LCELL}">{_e(run.name)}</td><td colspan="5">{_e(err)}</td></tr>')
            continue
        loss = views.series(run, "loss", max_points=2)
        worst = next((f for f in fs if f.severity == "error"), next(iter(fs), None))
        rows.append(
            f'<tr><td style="{_LCELL}"><b>{_e(run.name)}</b></td><td style="{_LCELL}">{_e(run.status())}</td>'
            f'<td style="{_CELL}">{"" if run.last_step is None else int(run.last_step)}</td>'
            f'<td style="{_CELL}">{_num(loss.values[-1]) if len(loss) else ""}</td>'
            f'<td style="{_CELL}">{sum(f.severity == "error" for f in fs)} / '
            f'{sum(f.severity == "warning" for f in fs)}</td>'
            f'<td style="{_LCELL}">{_e(worst.rule) if worst else ""}</td></tr>')
    head = "".join(f'<th style="{_LCELL}">{h}</th>' for h in ("run", "status", "step", "loss", "errors / warnings",
                                                              "top finding"))
    body = "".join(rows) or '<tr><td colspan="6">no runs yet</td></tr>'
    return (f'<div class="babysitter-logdir" style="{_STYLE}"><b>{_e(logdir.path)}</b>: {len(rows)} run(s)'
            f'<table style="border-collapse:collapse;margin-top:4px"><tr>{head}</tr>{body}</table></div>')
