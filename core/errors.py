"""Every exception Babysitter raises, in one place.

    BabysitterError                  base of everything below
    ├── ConfigError (ValueError)     an option or threshold has a value it cannot take
    ├── RunExistsError               a run folder with that name already exists
    └── RunNotFoundError             a path given as a run is not a run folder

A file that does not follow the run format raises nothing: the reader records a
``core.schema.Problem`` for it and goes on.

Each message says what was expected, what arrived, and what to do next.
"""

from __future__ import annotations

__all__ = ["BabysitterError", "ConfigError", "RunExistsError", "RunNotFoundError"]


class BabysitterError(Exception):
    """Base class of all Babysitter errors."""


class ConfigError(BabysitterError, ValueError):
    """Raised when an option, threshold or argument has a value that cannot be used."""


class RunExistsError(BabysitterError, FileExistsError):
    """Raised when a Monitor is asked to create a run whose folder already exists."""


class RunNotFoundError(BabysitterError, FileNotFoundError):
    """Raised when a path given as a run folder holds neither meta.json nor *.jsonl files."""

