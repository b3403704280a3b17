"""The style sheet holds no dead rule: every class its selectors name is given to an element somewhere.

A static scan of ``dashboard/`` and ``babysitter/``: a class counts as used when it is
in the value of a Dash component's ``className=`` (any string in that expression: a
conditional picks one of two) or in a ``class="..."`` attribute of HTML a module writes
(the report). A rule whose class nothing uses fails here, so removed markup takes its
CSS with it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from dashboard import theme

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("dashboard", "babysitter")

_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CLASS_ATTR = re.compile(r"""\bclass=\\?["']([^"'\\{}]*)""")


def css_classes(css: str) -> set[str]:
    """The class names in the selectors of ``css`` (``.bs-card h3`` -> ``bs-card``; declarations skipped)."""
    css = _COMMENT.sub("", css)
    selectors = []
    for chunk in css.split("}"):
        head = chunk.split("{")[-2] if chunk.count("{") >= 2 else chunk.split("{")[0]
        selectors.append(head)  # an @media block's inner selector is the text before its second "{"
    return {m for sel in selectors for m in re.findall(r"\.([A-Za-z_][\w-]*)", sel)}


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def used_classes(root: Path = ROOT) -> set[str]:
    """Class names given to elements by the Python modules of ``SOURCES`` (theme's style sheet aside)."""
    used: set[str] = set()
    for package in SOURCES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.keyword) and node.arg == "className":
                    used.update(w for s in _strings(node.value) for w in s.split())
                elif isinstance(node, ast.Constant) and isinstance(node.value, str) and path.name != "theme.py":
                    used.update(w for m in _CLASS_ATTR.findall(node.value) for w in m.split())
    return used


def test_the_scan_reads_selectors_and_markup():
    css = ".a { color: red; } .b h3, .c.d > .e { margin: .2px; } @media (max-width: 9px) { .f { x: 1; } }"
    assert css_classes(css) == {"a", "b", "c", "d", "e", "f"}
    assert _CLASS_ATTR.findall('<div class="bs-card x">') == ["bs-card x"]


def test_every_class_of_the_style_sheet_is_used():
    unused = sorted(css_classes(theme.CSS) - used_classes())
    assert unused == [], f"CSS rules for classes nothing uses (remove them with their markup): {unused}"
