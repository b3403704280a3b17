"""Reading a Dash component tree in tests: what a page says, without a browser."""

from __future__ import annotations

from typing import Any


def texts(component: Any, types: bool = False) -> list[str]:
    """Every string in a Dash component tree, in order; with ``types``, each component's type too
    (as ``"<component Img>"``), so a test can see that a hostile string stayed a string."""
    out: list[str] = []

    def walk(c: Any) -> None:
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, (list, tuple)):
            for x in c:
                walk(x)
        elif hasattr(c, "to_plotly_json"):
            if types:
                out.append(f"<component {type(c).__name__}>")
            walk(getattr(c, "children", None))
    walk(component)
    return out
