"""Framework-free core of Babysitter: the record format, numpy statistics, reading and diagnosis.

Imports neither ``monitor`` nor ``dashboard``, and never torch. The public names below load
their module on first use (PEP 562), so that ``monitor``, which needs only the format and the
statistics, does not pay for the reader and the rules at ``import monitor``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# public name -> the submodule that defines it
_EXPORTS = {
    "DiagnosisConfig": "diagnose", "Diagnoser": "diagnose", "diagnose": "diagnose",
    "BabysitterError": "errors", "ConfigError": "errors", "RunExistsError": "errors", "RunNotFoundError": "errors",
    "STALE_AFTER": "reader", "LogDir": "logdir", "Run": "reader", "Series": "reader", "Table": "reader",
    "is_run_dir": "reader", "Sampling": "_sample",
    "FORMAT_VERSION": "schema", "Finding": "schema", "LayerInfo": "schema", "Meta": "schema", "Problem": "schema",
    "activation_stats": "stats", "histogram": "stats", "input_stats": "stats", "param_stats": "stats",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .diagnose import DiagnosisConfig, Diagnoser, diagnose
    from .errors import BabysitterError, ConfigError, RunExistsError, RunNotFoundError
    from .reader import STALE_AFTER, Run, Series, Table, is_run_dir
    from .logdir import LogDir
    from ._sample import Sampling
    from .schema import FORMAT_VERSION, Finding, LayerInfo, Meta, Problem
    from .stats import activation_stats, histogram, input_stats, param_stats


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """Keeps a public name bound to what it names when its submodule loads.

    Importing ``core.diagnose`` makes the import system set ``core.diagnose`` to the module,
    which would hide the function ``core.diagnose`` (``from core import diagnose`` would give
    the module). An eager ``from .diagnose import diagnose`` rebinds the name afterwards; this
    does the same for the lazy exports.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
