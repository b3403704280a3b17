"""Strings from a run, made safe for a terminal.

Run folder names, rule ids, layer names, messages and hyperparameter names come from files
anyone can write. Printed raw, ``ESC [2J`` clears the screen, ``ESC ]0;...BEL`` sets the
window title, ``ESC ]8;;URL`` makes a hidden link, a ``CR`` overwrites what was printed.
Every command prints such strings through ``safe_text``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["safe_text"]


def safe_text(s: Any, limit: int | None = 40) -> str:
    """``s`` as one printable line: control and format characters (escapes, newlines, bidi overrides) shown escaped.

    Args:
        s: anything; its ``str()`` is shown.
        limit: longest result in characters (cut with ``…``), or None for no limit.
    """
    text = str(s)
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return out if limit is None or len(out) <= limit else out[: limit - 1] + "…"
