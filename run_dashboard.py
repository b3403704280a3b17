#!/usr/bin/env python3
"""Serve the Babysitter dashboard over a log directory: the same as ``babysitter dashboard``.

    python run_dashboard.py [LOGDIR] [--host 127.0.0.1] [--port 8050] [--poll]
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from babysitter.cli import main as cli_main

    return cli_main(["dashboard", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
