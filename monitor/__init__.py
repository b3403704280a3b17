"""What training code imports: the Monitor, and the framework adapters.

``import monitor`` never imports torch; ``monitor.watch`` loads the PyTorch adapter on use.
"""

from __future__ import annotations

from ._monitor import Monitor, TrainingDivergedError, validate_run_name
from ._writer import MonitoringWarning

__all__ = ["Monitor", "MonitoringWarning", "TrainingDivergedError", "validate_run_name"]
