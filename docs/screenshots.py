#!/usr/bin/env python3
"""Take the README's screenshots again: ``python docs/screenshots.py`` (needs Chromium and Playwright).

The three demo trainings of ``babysitter demo`` run to their end at full speed in a
temporary log directory, the real dashboard serves it, and headless Chromium photographs
the pages the README shows into ``docs/images/`` at 1400 px wide (the overview's first
screen, the whole layers page).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babysitter.demo_training import run_demo  # noqa: E402
from tests._server import chromium, dashboard_server  # noqa: E402

OUT = ROOT / "docs" / "images"
SHOTS = (  # file, path, the figure to wait for, the whole page (else its first screen)
    ("overview.png", "/run/demo-saturated", "overview-loss", False),
    ("layers.png", "/run/demo-saturated/layers", "layers-deadsat", True),
)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(tmp) / "runs"
        for seed, variant in enumerate(("healthy", "saturated", "diverging")):
            run_demo(logdir, steps=1500, name=f"demo-{variant}", variant=variant, seed=seed, heartbeat=0)
        with dashboard_server(logdir, timeout=60) as base, chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name, path, graph, full in SHOTS:
                page.goto(base + path)
                page.wait_for_selector(f"#{graph} .js-plotly-plot .main-svg", timeout=30_000)
                page.wait_for_timeout(1500)  # the page's other figures
                page.screenshot(path=str(OUT / name), full_page=full)
                print("wrote", OUT / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
