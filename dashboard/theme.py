"""Colours, sizes, number formats and the style sheet: every visual constant of the dashboard and the HTML report."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
TEXT = "#1f2933"
MUTED = "#616e7c"
BG = "#f5f7fa"
CARD = "#ffffff"
BORDER = "#e4e7eb"
ACCENT = "#2563eb"

SEVERITY_COLORS = {"error": "#d64545", "warning": "#e08a00", "info": "#3f7fbf"}
STATUS_COLORS = {"live": "#1f9d55", "finished": "#616e7c", "stopped": "#8c6d1f", "crashed": "#d64545",
                 "pruned": "#8a6d3b"}
CRASH = "#b42318"  # the box with the error that stopped a crashed run: text and border
CRASH_BG = "#fef3f2"

TRAIN = "#2563eb"
VAL = "#e0610e"
GAP_FILL = "rgba(224, 97, 14, 0.15)"
NAN_MARK = "#d64545"
BAND_FILL = "rgba(31, 157, 85, 0.10)"
BAND_LINE = "rgba(31, 157, 85, 0.7)"
HIGHLIGHT = "#d64545"
MEAN = "#2563eb"
STD = "#7c3aed"
HEAT_SCALE = "Viridis"

GRAPH_HEIGHT = 320
SMALL_GRAPH_HEIGHT = 260
DEADSAT_HEIGHT = 430  # two stacked subplots, each with room for its axis

TABLE_DIGITS = 4  # significant digits of a number in a table cell (``.4g``)

# Qualitative palette for many traces (per layer / per parameter).
PALETTE = (
    "#2563eb", "#e0610e", "#1f9d55", "#d64545", "#7c3aed", "#8c564b", "#db2777", "#616e7c", "#a3a300", "#0891b2",
)


# Number formats a person reads without a lookup table: Plotly's default "SI" exponent format
# writes 1e-12 as "1p", 1.1e-4 as "110µ" and 6e9 as "6B" (billions, or bytes?). A template's
# axis settings apply to every axis of a figure (xaxis2, yaxis3, ... of subplots too).
NUMBER_FORMAT = "e"
TICKFORMAT = ".3~g"  # for axes that take a d3 format instead (parallel coordinates)
TEMPLATE = go.layout.Template(pio.templates["plotly_white"])
TEMPLATE.layout.xaxis.exponentformat = NUMBER_FORMAT
TEMPLATE.layout.yaxis.exponentformat = NUMBER_FORMAT
COLORBAR = dict(thickness=12, exponentformat=NUMBER_FORMAT)

# Legends of figures with many lines (one per layer or run) stand to the right of the plot,
# where they cannot cover its title however many entries they have.
SIDE_LEGEND = dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top", font=dict(size=11))


def base_layout(**overrides: Any) -> dict[str, Any]:
    """Plotly layout defaults shared by every figure."""
    layout: dict[str, Any] = dict(
        template=TEMPLATE,
        font=dict(family=FONT, size=12, color=TEXT),
        margin=dict(l=56, r=16, t=36, b=40),
        height=GRAPH_HEIGHT,
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1, font=dict(size=11)),
        hovermode="x unified",
        uirevision="keep",  # keep the user's zoom across live updates
    )
    layout.update(overrides)
    return layout


CSS = f"""
body {{ margin: 0; background: {BG}; color: {TEXT}; font-family: {FONT}; font-size: 14px; }}
a {{ color: {ACCENT}; text-decoration: none; }}
a:hover {{ text-decoration: underline; }}
.bs-top {{ display: flex; align-items: center; gap: 16px; padding: 10px 24px; background: #111827; color: #f9fafb; }}
.bs-top a {{ color: #f9fafb; }}
.bs-brand {{ font-weight: 700; font-size: 17px; letter-spacing: .2px; }}
.bs-crumbs {{ flex: 1; color: #cbd2d9; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }}
.bs-crumbs a {{ color: #cbd2d9; }}
.bs-live {{ font-size: 13px; color: #cbd2d9; white-space: nowrap; }}
.bs-main {{ max-width: 1280px; margin: 0 auto; padding: 18px 24px 40px; }}
.bs-card {{ background: {CARD}; border: 1px solid {BORDER}; border-radius: 8px; padding: 14px 16px; margin-bottom: 16px; }}
.bs-card h3 {{ margin: 0 0 8px; font-size: 15px; }}
.bs-grid2 {{ display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }}
/* A grid item is as wide as its content by default, and a drawn figure is content: without
   min-width 0 a figure drawn once at full width keeps its card (and the grid) that wide. */
.bs-grid2 > .bs-card {{ min-width: 0; }}
@media (max-width: 900px) {{ .bs-grid2 {{ grid-template-columns: 1fr; }} }}
.bs-title {{ display: flex; align-items: baseline; gap: 12px; margin: 4px 0 12px; flex-wrap: wrap; }}
.bs-title-live {{ display: contents; }}
.bs-title h2 {{ margin: 0; font-size: 20px; word-break: break-all; }}
.bs-tabs {{ display: flex; gap: 4px; margin-bottom: 16px; border-bottom: 1px solid {BORDER}; }}
.bs-tabs a {{ padding: 8px 14px; color: {MUTED}; border-bottom: 2px solid transparent; }}
.bs-tabs a.active {{ color: {TEXT}; border-bottom-color: {ACCENT}; font-weight: 600; }}
.bs-badge {{ display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; margin-right: 4px; }}
.bs-table {{ width: 100%; border-collapse: collapse; }}
.bs-table th {{ text-align: left; font-weight: 600; color: {MUTED}; font-size: 12px; text-transform: uppercase; padding: 8px; border-bottom: 1px solid {BORDER}; }}
.bs-table td {{ padding: 8px; border-bottom: 1px solid {BORDER}; vertical-align: middle; }}
.bs-table td.name {{ word-break: break-all; font-weight: 600; }}
/* The HTML report (dashboard/report.py): number cells, a key-value table, the wide runs table. */
.bs-table td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.bs-table.bs-kv {{ width: auto; min-width: 40%; }}
.bs-runs th {{ text-transform: none; white-space: nowrap; }}
.bs-runs td {{ vertical-align: top; max-width: 260px; }}
.bs-scroll {{ overflow: auto; max-height: 640px; }}
.bs-finding {{ border-left: 4px solid; padding: 8px 12px; margin-bottom: 10px; background: #fbfcfd; border-radius: 4px; }}
.bs-finding .head {{ display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }}
.bs-finding .rule {{ font-family: ui-monospace, monospace; font-weight: 600; }}
.bs-finding .msg {{ margin: 4px 0; }}
.bs-finding .fix {{ color: {MUTED}; }}
/* The error that stopped a crashed run (overview): the recorded text as it is, wrapped. */
.bs-crash {{ border: 1px solid {CRASH}; border-left-width: 4px; background: {CRASH_BG}; padding: 8px 12px; margin-bottom: 10px; border-radius: 4px; }}
.bs-crash .head {{ font-weight: 600; color: {CRASH}; }}
.bs-crash .msg {{ margin-top: 4px; font-family: ui-monospace, monospace; font-size: 13px; white-space: pre-wrap; overflow-wrap: anywhere; }}
/* The report: section headings, and each finding with its evidence plot beside it. */
.bs-section {{ margin: 24px 0 10px; font-size: 17px; }}
.bs-evidence {{ display: grid; grid-template-columns: minmax(240px, 1fr) minmax(0, 2fr); gap: 12px; align-items: start; margin-bottom: 10px; }}
.bs-evidence .bs-finding {{ margin-bottom: 0; }}
@media (max-width: 900px) {{ .bs-evidence {{ grid-template-columns: 1fr; }} }}
.bs-muted {{ color: {MUTED}; }}
.bs-empty {{ color: {MUTED}; padding: 24px; text-align: center; }}
.bs-controls {{ display: flex; gap: 24px; align-items: center; flex-wrap: wrap; margin-bottom: 8px; }}
.bs-controls label {{ color: {MUTED}; font-size: 13px; }}
.bs-slider {{ flex: 1; min-width: 320px; }}
.bs-filter {{ font: inherit; font-size: 14px; padding: 5px 10px; border: 1px solid {BORDER}; border-radius: 6px; width: 280px; max-width: 100%; box-sizing: border-box; }}
.bs-button {{ font: inherit; font-size: 13px; padding: 5px 12px; border: 1px solid {BORDER}; border-radius: 6px; background: {CARD}; color: {TEXT}; cursor: pointer; }}
.bs-button:disabled {{ color: {MUTED}; cursor: default; opacity: 0.6; }}
.bs-buttons {{ display: flex; gap: 6px; }}
.bs-pager {{ font-size: 13px; }}
"""
