"""The dashboard's pages: one module per page, each exposing ``PAGE`` (a ``Page``).

A page module defines::

    PAGE = Page(
        path="/run/<run>/layers",       # "<run>" captures one URL segment (the run name, URL-quoted)
        title="Layers",
        layout=layout,                  # layout(ctx, run="...", query={"layer": "fc1"}) -> Dash component
        register=register,              # register(app, ctx): the page's callbacks (optional)
        tab=True,                       # shown as a tab on the pages of one run
    )

and is listed in ``PAGE_MODULES`` below; ``dashboard.app.create_app`` imports the listed
modules in order and routes the URL to the first page whose ``path`` matches.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote


__all__ = ["Page", "PAGE_MODULES", "load_pages", "match"]

# Import order is routing order.
PAGE_MODULES = ("runs", "overview", "layers", "updates", "compare")


@dataclass(frozen=True)
class Page:
    """One page of the dashboard.

    Attributes:
        path: URL pattern; segments ``<name>`` capture one URL segment (unquoted) as a keyword.
        title: shown in tabs and the browser title.
        layout: ``layout(ctx, **captures, query=dict) -> component``; called on every visit.
        register: ``register(app, ctx)`` registers the page's callbacks once, or None.
        tab: True for pages of one run shown as tabs (their path starts with ``/run/<run>``).
    """

    path: str
    title: str
    layout: Callable[..., Any]
    register: Callable[[Any, Any], None] | None = None
    tab: bool = False


def load_pages(modules: tuple[str, ...] = PAGE_MODULES) -> list[Page]:
    """Import the page modules and return their ``PAGE`` objects, in order."""
    return [importlib.import_module(f"{__name__}.{name}").PAGE for name in modules]


def match(pattern: str, pathname: str) -> dict[str, str] | None:
    """Captures of ``pathname`` against ``pattern`` (``"/run/<run>"``), or None when it does not match."""
    want = [p for p in pattern.split("/") if p]
    got = [p for p in (pathname or "/").split("/") if p]
    if len(want) != len(got):
        return None
    out: dict[str, str] = {}
    for w, g in zip(want, got):
        if w.startswith("<") and w.endswith(">"):
            out[w[1:-1]] = unquote(g)
        elif w != g:
            return None
    return out
