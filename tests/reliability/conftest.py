"""The load test runs only when asked for: ``bash test.sh -m load`` (it takes over a minute)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    expr = config.getoption("markexpr") or ""
    if "load" in expr and "not load" not in expr:
        return
    skip = pytest.mark.skip(reason="load test: run with  bash test.sh -m load")
    for item in items:
        if "load" in item.keywords:
            item.add_marker(skip)
