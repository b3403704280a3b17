"""Comparing runs: the summaries, the search-level checks and the table queries, in one import.

The parts live in their own modules: ``core.summary`` (``RunSummary``, ``summarize``, the
per-run ``SummaryCache``), ``core.edge`` (``edge_of_range``, ``search_findings``) and
``core.table`` (filtering, sorting, hyperparameter specs). This module re-exports them.
"""

from __future__ import annotations

from .edge import (
    DEFAULT_OUTER, EdgeOfRange, EdgeOfRangeRule, EdgeOfRangeThresholds, edge_of_range, search_findings,
)
from .summary import (
    HP_PREFIX, SUMMARY_COLUMNS, RunSummary, SummaryCache, run_findings, summaries_frame, summarize,
    summarize_logdir,
)
from .table import LOG_GUESS_SPAN, column_for, column_heading, filter_frame, hparam_specs, sort_frame

__all__ = [
    "RunSummary", "SummaryCache", "EdgeOfRange", "summarize", "summarize_logdir", "summaries_frame",
    "edge_of_range", "search_findings", "filter_frame", "sort_frame", "column_for", "hparam_specs", "run_findings",
    "column_heading", "LOG_GUESS_SPAN",
    "column_heading", "LOG_GUESS_SPAN",
    "SUMMARY_COLUMNS", "HP_PREFIX", "DEFAULT_OUTER", "EdgeOfRangeRule", "EdgeOfRangeThresholds",
]
