"""Queries on the summary table, one implementation for the command line and the dashboard:
column lookup, filtering (``lr<1e-3``, free text), sorting with missing values last, and the
hyperparameter specs (numeric or categorical, sampled range, log scale) the figures need."""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from .edge import _finite, _range_of
from .summary import HP_PREFIX, SUMMARY_COLUMNS, RunSummary

__all__ = ["higher_is_better", "column_for", "column_heading", "filter_frame", "query_frame", "sort_frame", "hparam_specs",
           "LOG_GUESS_SPAN"]

LOG_GUESS_SPAN = 10.0  # unsampled positive hyperparameters spanning more than this get a log axis

_FILTER_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|=|>|<)\s*(.*?)\s*$", re.S)


def higher_is_better(column: str) -> bool:
    """Whether the best run has the largest value of this summary column (accuracies; not loss or gap)."""
    return "acc" in column and column != "best_val_step"


def column_heading(column: str) -> str:
    """The heading of a summary-frame column in a table: ``hp.lr`` -> ``lr``.

    A hyperparameter named like a summary column (a run's ``steps`` hyperparameter next
    to the ``steps`` it reached) is headed ``steps (hparam)``, so that no two columns of
    a table carry the same heading.
    """
    if not column.startswith(HP_PREFIX):
        return column
    name = column[len(HP_PREFIX):]
    return f"{name} (hparam)" if name in SUMMARY_COLUMNS else name


def column_for(df, name: str) -> str:
    """The DataFrame column ``name`` refers to: itself, or ``hp.<name>`` for a hyperparameter.

    Raises:
        ConfigError: for an unknown column, listing the ones there are.
    """
    from .errors import ConfigError

    if name in df.columns:
        return name
    if HP_PREFIX + name in df.columns:
        return HP_PREFIX + name
    raise ConfigError(f"no column {name!r}; columns: {', '.join(map(str, df.columns))}")


def filter_frame(df, text: str | None):
    """Rows of a summary DataFrame that match ``text``.

    ``COLUMN OP VALUE`` (``OP`` one of ``= != > < >= <=``; ``COLUMN`` a summary column or a
    hyperparameter name) compares numerically when ``VALUE`` is a number, else as text;
    anything else keeps the rows whose run name, status or findings contain ``text``
    (case-insensitive). Nothing is evaluated.

    Raises:
        ConfigError: for an unknown column.
    """
    import pandas as pd

    if not text or not text.strip():
        return df
    m = _FILTER_RE.match(text)
    if m is None or (m.group(1) not in df.columns and HP_PREFIX + m.group(1) not in df.columns
                     and m.group(1) not in SUMMARY_COLUMNS):
        needle = text.strip().lower()
        hay = (df["run"].astype(str) + "\n" + df["status"].astype(str) + "\n" + df["findings"].astype(str)).str.lower()
        return df[hay.str.contains(needle, regex=False)]
    return df[column_mask(df, column_for(df, m.group(1)), m.group(2), m.group(3))]


def column_mask(df, col: str, op: str, raw: str):
    """Rows where ``df[col] OP raw`` (numeric when ``raw`` is a number, else as text; ``contains`` is
    a case-insensitive substring test), as a boolean Series with missing values False."""
    import pandas as pd

    if op == "contains":
        return df[col].astype(str).str.lower().str.contains(raw.lower(), regex=False).fillna(False).astype(bool)
    try:
        val: Any = float(raw)
        series = pd.to_numeric(df[col], errors="coerce")
    except ValueError:
        val, series = raw, df[col].astype(str)
    ops = {"=": series.eq, "!=": series.ne, ">": series.gt, "<": series.lt, ">=": series.ge, "<=": series.le}
    return ops[op](val).fillna(False).astype(bool)


_QUERY_RE = re.compile(r"^\s*\{(?P<col>(?:[^{}]|\\[{}])+)\}\s*(?P<op>s=|=|eq|!=|ne|>=|ge|<=|le|>|gt|<|lt|contains|"
                       r"scontains|icontains|datestartswith)\s*(?P<val>.*?)\s*$", re.S)
_QUERY_OPS = {"s=": "=", "eq": "=", "ne": "!=", "ge": ">=", "le": "<=", "gt": ">", "lt": "<",
              "scontains": "contains", "icontains": "contains", "datestartswith": "contains"}


def query_frame(df, query: str | None):
    """Rows of ``df`` matching a Dash DataTable ``filter_query`` (``{col} > 0.9 && {run} contains "lr"``).

    Each ``&&`` part compares one column; a part that is not understood, or names a column the
    frame lacks, keeps every row (the table shows its filter box as typed). Nothing is evaluated.
    """
    if not query or not query.strip():
        return df
    mask = None
    for part in query.split(" && "):
        m = _QUERY_RE.match(part)
        if m is None or m.group("col") not in df.columns:
            continue
        raw = m.group("val")
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'`":
            raw = raw[1:-1].replace("\\" + raw[0], raw[0])
        op = _QUERY_OPS.get(m.group("op"), m.group("op"))
        if op == "=" and m.group("op") == "s=" and isinstance(raw, str):
            op = "contains"  # a text cell typed without an operator: a substring, as the native table does
        part_mask = column_mask(df, m.group("col"), op, raw)
        mask = part_mask if mask is None else mask & part_mask
    return df if mask is None else df[mask]


def sort_frame(df, column: str | None = None, *, descending: bool | None = None):
    """Sort a summary DataFrame by ``column`` (default ``best_val_acc``), missing values last.

    Accuracies sort high to low and everything else low to high unless ``descending`` says otherwise.
    A leading ``-`` on ``column`` also asks for descending order.

    Raises:
        ConfigError: for an unknown column.
    """
    column = column or "best_val_acc"
    if column.startswith("-"):
        column, descending = column[1:], True
    col = column_for(df, column)
    if descending is None:
        descending = higher_is_better(col)
    try:
        return df.sort_values(col, ascending=not descending, na_position="last", kind="stable")
    except TypeError:  # a hyperparameter holding numbers in some runs and text in others
        return df.sort_values(col, ascending=not descending, na_position="last", kind="stable",
                              key=lambda s: s.astype(str))


def hparam_specs(summaries: Sequence[RunSummary]) -> dict[str, dict[str, Any]]:
    """Each hyperparameter seen in ``summaries``: ``{"log", "numeric", "varying", "sampled", "low", "high"}``.

    ``log`` is taken from the search spaces when a run sampled the parameter, else guessed:
    positive numbers spanning more than a factor of ``LOG_GUESS_SPAN`` (10) are drawn on a
    log axis (learning rates 0.5 and 30 are 1.8 decades apart, and a linear axis squeezes
    the small one against zero).
    ``low``/``high`` are the widest sampled range (None outside a search); ``varying`` is
    False when every run has the same value (nothing to compare).
    """
    specs: dict[str, dict[str, Any]] = {}
    values: dict[str, list[Any]] = {}
    for s in summaries:
        for k, v in s.hparams.items():
            values.setdefault(k, []).append(v)
        for k, spec in s.search_space.items():
            rng = _range_of(spec)
            if rng is None:
                continue
            lo, hi, is_log = rng
            d = specs.setdefault(k, {"log": is_log, "low": lo, "high": hi, "sampled": True})
            d["log"] = d["log"] or is_log
            d["low"], d["high"] = min(d["low"], lo), max(d["high"], hi)
    out: dict[str, dict[str, Any]] = {}
    for k, vals in values.items():
        nums = [float(v) for v in vals if _finite(v)]
        numeric = len(nums) == len(vals) and bool(nums)
        d = specs.get(k)
        if d is None:
            guess = numeric and min(nums) > 0 and max(nums) / min(nums) > LOG_GUESS_SPAN
            d = {"log": bool(guess), "low": None, "high": None, "sampled": False}
        distinct = {json.dumps(v, sort_keys=True, default=str) for v in vals}
        varying = len(distinct) > 1 or len(vals) < len(summaries)
        out[k] = {**d, "numeric": numeric, "log": bool(d["log"] and numeric), "varying": varying}
    return out
