"""Framework-free core of Babysitter: the record format, numpy statistics, reading and diagnosis.

Imports neither ``monitor`` nor ``dashboard``, and never torch.
"""

from __future__ import annotations

from .diagnose import DiagnosisConfig, Diagnoser, diagnose
from .errors import BabysitterError, ConfigError, FormatError, RunExistsError, RunNotFoundError
from .reader import STALE_AFTER, LogDir, Run, Series, Table, is_run_dir
from .schema import FORMAT_VERSION, Finding, LayerInfo, Meta, Problem
from .stats import activation_stats, histogram, input_stats, param_stats

__all__ = [
    "BabysitterError", "ConfigError", "FormatError", "RunExistsError", "RunNotFoundError",
    "LogDir", "Run", "Series", "Table", "STALE_AFTER", "is_run_dir",
    "FORMAT_VERSION", "Finding", "LayerInfo", "Meta", "Problem",
    "activation_stats", "histogram", "input_stats", "param_stats",
    "DiagnosisConfig", "Diagnoser", "diagnose",
]
