"""Strings from a run, made safe for Plotly's text.

Plotly draws titles, tick labels, legends, hover labels and annotations as a small HTML
subset (``<a href>``, ``<b>``, ``<span style>``, ``<br>``): a layer called
``<a href="https://...">`` would become a link, a ``<span style="font-size:80px">`` would
paint over the figure. Every string that comes from a run (run, layer, parameter and
hyperparameter names and values, layer kinds) goes through ``plot_text`` before it reaches
a figure; the markup the figure builders write themselves (``<br>``, ``<extra>``) does not.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["plot_text"]


def plot_text(s: Any, limit: int = 80) -> str:
    """``s`` escaped for Plotly's label markup (``<b>`` in a name stays literal), cut to ``limit`` chars.

    Plotly reads ``&lt;``, ``&gt;`` and ``&amp;`` back as the characters, so the name is shown
    exactly as it is. ``%{`` is escaped too: in a hover template it would insert a value.
    """
    text = str(s)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=False).replace("%{", "%&#123;")
