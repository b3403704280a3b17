"""Shared by the tests of the examples and integrations: load an example script as a module, read a run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from core import Run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str) -> ModuleType:
    """``examples/<name>.py`` as a module (registered in ``sys.modules``: dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def read_clean(run_dir: Path) -> Run:
    """The run in ``run_dir``, read in full; asserts the reader found no problem in it."""
    run = Run(run_dir)
    run.update()
    assert run.problem_count == 0, run.all_problems()
    return run
