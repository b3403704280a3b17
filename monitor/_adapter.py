"""The interface between the Monitor and a framework adapter (``monitor/_torch.py``'s ``TorchWatch``).

An adapter turns a framework's events (forward, backward, optimizer steps) into records of a
:class:`~monitor.Monitor`. It talks to the Monitor only through these, and the Monitor to it
only through :class:`Adapter`'s methods:

* ``Monitor.attach(adapter)`` registers it and calls ``adapter.attach(monitor)``; from then
  on every ``Monitor.log`` hands its scalars to ``adapter.on_scalars`` before they are written.
* ``Monitor.stats_due(step)``: whether ``step`` is a logged step (the one cadence; the
  adapter asks it at the start of each iteration).
* ``Monitor.write_stats(kind, step, stats)``: one ``acts``, ``params`` or ``input`` record,
  built by the one record builder (``monitor/_records.py``'s ``layer_record``) that the
  numpy path uses too.
* ``Monitor.write_scalars(step, values)``: a scalars record the adapter held back
  (``on_scalars`` returned ``None``), written when its values have arrived.
* ``Monitor.set_layers``, ``set_meta``, ``finding``, ``every``, ``bins``, ``failed``: the
  public Monitor.
* ``Monitor.detach(adapter)``: called by the adapter's own ``close``; ``Monitor.close``
  calls ``close`` of every adapter still attached, first, so that what is on its way is
  written before the run ends.

Framework callbacks that only drive a Monitor (``monitor/lightning.py``, ``monitor/hf.py``)
need none of this: they call ``Monitor.watch`` and ``Monitor.log``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from ._monitor import Monitor

__all__ = ["Adapter"]


class Adapter:
    """What the Monitor calls on a framework adapter. Subclasses override what they need."""

    def attach(self, monitor: "Monitor") -> None:
        """Called by ``Monitor.attach`` once: the adapter starts recording into ``monitor``."""

    def on_scalars(self, step: int, values: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Called by ``Monitor.log`` with its scalars before they are written.

        Args:
            step: the step of the ``log`` call (validated).
            values: the scalars as given (numbers, 0-d arrays or tensors).

        Returns:
            The scalars to write (the adapter may add its own, such as learning rates, or turn
            tensors into numbers), or ``None`` to hold the record back: the adapter writes it
            later with ``Monitor.write_scalars``.
        """
        return values

    def close(self) -> None:
        """Remove every hook, write what is still on its way, ``Monitor.detach`` itself. Safe to call twice."""
