"""Diagnosis rules (CS231n's babysitting checklist), framework-free.

This module is extended by the diagnosis engine; the Monitor uses ``nan_loss_finding``
to write the one finding it can see in-process at once.
"""

from __future__ import annotations

from .schema import Finding

__all__ = ["nan_loss_finding"]


def nan_loss_finding(step: int, tag: str) -> Finding:
    """The ``nan_loss`` finding for a loss that became ``tag`` (``"nan"``, ``"inf"``, ``"-inf"``) at ``step``."""
    return Finding(
        rule="nan_loss", severity="error", step=step, layers=(),
        message=f"The loss became {tag.upper() if tag == 'nan' else tag} at step {step}: training diverged.",
        fix="Lower the learning rate (often by 10x); check for log(0) or division by zero in the loss.",
    )
