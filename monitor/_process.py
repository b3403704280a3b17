"""What the Monitor needs from its process: run names, data-parallel ranks, exit and fork.

Monitors still open at interpreter exit are closed (finished, or crashed when an uncaught
exception is leaving); a forked child forgets its parent's Monitors; ``distributed_context``
finds an initialised ``torch.distributed`` group without importing torch. Also the checks of
what training code passes in: run names, steps and scalar values.
"""

from __future__ import annotations

import atexit
import logging
import math
import operator
import os
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any


from core.errors import ConfigError
from core.schema import DATA_SUFFIX, HEARTBEAT_FILE, META_FILE, STEP_LIMIT


if TYPE_CHECKING:
    from ._monitor import Monitor

log = logging.getLogger("monitor._monitor")  # the Monitor's one logger


def validate_run_name(name: str) -> str:
    """Check that ``name`` can be a single folder name; return it.

    Any character is allowed except path separators and NUL, and the name cannot be
    ``.``/``..`` or empty: a run name never reaches outside its log directory.

    Raises:
        ConfigError: when the name is not usable, saying why.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"run name must be a non-empty string, got {name!r}")
    if "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
        raise ConfigError(f"run name {name!r} must be one folder name: no '/', '\\', NUL, '.' or '..'")
    if name.startswith("."):
        raise ConfigError(f"run name {name!r} starts with '.': such folders are hidden and never listed as runs")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"run name {name!r} is not valid Unicode (a lone surrogate); it cannot be a folder name") \
            from None
    if len(name.encode("utf-8")) > 200:
        raise ConfigError(f"run name is {len(name.encode('utf-8'))} bytes long; keep it under 200")
    return name


def started_by_other_ranks(run_dir: Path) -> bool:
    """True for a folder that ranks > 0 created: no ``meta.json`` and no rank-0 file, only other ranks' files."""
    try:
        names = [e.name for e in os.scandir(run_dir)]
    except OSError:
        return False
    return (META_FILE not in names and not any(n.endswith(".r0" + DATA_SUFFIX) for n in names)
            and any(n.endswith(DATA_SUFFIX) for n in names)
            and all(n.endswith(DATA_SUFFIX) or n == HEARTBEAT_FILE for n in names))


def distributed_context() -> tuple[int, int, Any] | None:
    """``(rank, world_size, torch.distributed)`` when a process group is initialised, else ``None``.

    Never imports torch: a program that has not imported ``torch.distributed`` has no
    process group. Any error while asking counts as "not distributed".
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if not (dist.is_available() and dist.is_initialized()):
            return None
        return int(dist.get_rank()), int(dist.get_world_size()), dist
    except Exception:  # a half-torn-down group, a backend that cannot answer
        return None


def generated_name() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


# Monitors still open at interpreter exit are closed: "finished", or "crashed" when an
# uncaught exception is on its way out (recorded by the chained excepthook). The set holds
# strong references on purpose: an open Monitor that the training code dropped without
# close() (a local of a returned function) must still be marked at exit, not left
# "running" and later shown as crashed. close() removes it.
OPEN_MONITORS: "set[Monitor]" = set()
UNCAUGHT: list[BaseException] = []
_prev_excepthook = sys.excepthook


def _excepthook(tp, value, tb):  # pragma: no cover - exercised in a subprocess test
    UNCAUGHT.append(value)
    _prev_excepthook(tp, value, tb)


sys.excepthook = _excepthook


@atexit.register
def _close_open_monitors() -> None:
    err = UNCAUGHT[-1] if UNCAUGHT else None
    for mon in list(OPEN_MONITORS):
        mon.close(error=err)


def _forget_monitors_in_child() -> None:
    # A forked child (a data-loader worker, a subprocess helper) inherits the parent's open
    # Monitors; its exit must not mark the parent's still-training run finished.
    OPEN_MONITORS.clear()


os.register_at_fork(after_in_child=_forget_monitors_in_child)


def valid_step(step: Any) -> int:
    """``step`` as an int; raises ``ConfigError`` for anything a reader would drop or misread.

    Integers (Python, numpy, 0-d integer tensors) and floats with no fraction are taken; a
    fraction would be cut silently, and ``abs(step) >= 2**62`` is out of the format's range.
    """
    if isinstance(step, float) and step.is_integer():
        step = int(step)
    try:
        if isinstance(step, bool):
            raise TypeError
        value = operator.index(step)
    except TypeError:
        raise ConfigError(f"step must be an integer (the training step), got {step!r}") from None
    if not -STEP_LIMIT < value < STEP_LIMIT:
        raise ConfigError(f"step {value} is out of range: steps must be below 2**62 in absolute value")
    return value


def scalar_value(key: str, v: Any, warned: "dict[str, int] | None" = None) -> float | None:
    """``v`` as a float, or None (with a warning) when it is not a number; never raises into the training.

    An integer too large for a float (``10**400``) is recorded as +-Inf: that is what it
    means for a loss, and ``float()`` would raise ``OverflowError``.

    Args:
        warned: how many values of each key were skipped so far (updated): the warning is
            given for a key's first one only (a value logged at every step would repeat it at
            every step), and the count is for the Monitor to report when it closes.
    """
    try:
        return float(v.detach() if hasattr(v, "detach") else v)  # a torch tensor that requires grad
    except OverflowError:
        try:
            return math.inf if v > 0 else -math.inf
        except Exception:
            pass
    except Exception:
        pass
    try:
        shown = repr(v)[:80]
    except Exception:
        shown = f"<{type(v).__name__}>"
    if warned is not None:
        warned[key] = warned.get(key, 0) + 1
        if warned[key] > 1:
            return None
    log.warning("Babysitter: scalar %r=%s is not a number; skipped (this is said once for %r: its later values "
                "that are not numbers are skipped too, and counted when the run closes)", key, shown, key)
    return None
