"""Every exception Babysitter raises, in one place.

    BabysitterError                  base of everything below
    ├── ConfigError (ValueError)     an option or threshold has a value it cannot take
    ├── RunExistsError               a run folder with that name already exists
    ├── RunNotFoundError             a path given as a run is not a run folder
    └── FormatError                  a file is not in the run format (used in reports, not raised
                                     out of the reader: the reader records problems instead)

Each message says what was expected, what arrived, and what to do next.
"""

from __future__ import annotations

__all__ = ["BabysitterError", "ConfigError", "RunExistsError", "RunNotFoundError", "FormatError"]


class BabysitterError(Exception):
    """Base class of all Babysitter errors."""


class ConfigError(BabysitterError, ValueError):
    """Raised when an option, threshold or argument has a value that cannot be used."""


class RunExistsError(BabysitterError, FileExistsError):
    """Raised when a Monitor is asked to create a run whose folder already exists."""


class RunNotFoundError(BabysitterError, FileNotFoundError):
    """Raised when a path given as a run folder holds neither meta.json nor *.jsonl files."""


class FormatError(BabysitterError):
    """Describes a line or file that does not follow docs/format.md."""
