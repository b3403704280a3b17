"""What training code imports: the Monitor, and the framework adapters.

``import monitor`` never imports torch; ``monitor.watch`` loads the PyTorch adapter on use.
The framework integrations are modules of their own, imported by the code that uses them:
``monitor.lightning.BabysitterCallback`` (PyTorch Lightning) and ``monitor.hf.BabysitterCallback``
(the Hugging Face ``Trainer``). Under ``torchrun`` the Monitor takes its rank from the
initialised process group.
"""

from __future__ import annotations

import os
from typing import Any

from ._monitor import Monitor, TrainingDivergedError, validate_run_name
from ._writer import MonitoringWarning
from .search import Choice, IntUniform, LogUniform, SearchResult, Trial, Uniform, load_search, random_search, refine

__all__ = [
    "Monitor", "MonitoringWarning", "TrainingDivergedError", "validate_run_name", "watch",
    "Choice", "IntUniform", "LogUniform", "SearchResult", "Trial", "Uniform", "load_search", "random_search", "refine",
]

_WATCH_OPTIONS = ("start_step", "log_input", "hist_sample", "defer_scalars", "kinds", "functional", "scaler")


def watch(model: Any, optimizer: Any = None, logdir: str | os.PathLike[str] = "runs", name: str | None = None,
          **options: Any) -> Monitor:
    """Open a run and record a PyTorch model and its optimizer: ``Monitor(...)`` + ``Monitor.watch``.

    Usage::

        mon = monitor.watch(model, optimizer, logdir="runs", every=10)
        for step, (x, y) in enumerate(loader):
            ...                                  # forward, backward, optimizer.step()
            mon.log(step, loss=loss)
        mon.close()

    Args:
        model: a ``torch.nn.Module``.
        optimizer: its ``torch.optim.Optimizer`` (a list of them, or ``None``: see ``Monitor.watch``).
        logdir: the log directory.
        name: the run name (generated when ``None``).
        **options: ``Monitor`` options (``every``, ``hparams``, ``num_classes``, ``on_nan``, ...)
            and ``Monitor.watch`` options (``start_step``, ``log_input``, ``hist_sample``).

    Returns:
        The open Monitor; closing it removes the hooks.
    """
    watch_opts = {k: options.pop(k) for k in _WATCH_OPTIONS if k in options}
    mon = Monitor(logdir, name, **options)
    try:
        mon.watch(model, optimizer, **watch_opts)
    except BaseException:
        mon.close()
        raise
    return mon
