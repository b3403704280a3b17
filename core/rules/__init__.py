"""The diagnosis rules: CS231n's "babysitting the learning process" checklist, one class each.

Every rule is a subclass of ``Rule`` registered with ``@register``. A rule is incremental:
``Rule.update(delta)`` sees only the records added since its previous call (``Delta``) and
keeps whatever small state it needs between calls, so re-evaluating a growing run costs
time proportional to the new records. Rules process points in step order and report the
first step at which they held, so one call over a whole run (post hoc) and many calls over
its growing prefix (live) give the same findings.

Each rule declares its thresholds as a frozen dataclass (a ``RuleThresholds`` subclass whose
fields are made with ``knob``: default, allowed range, unit), so defaults, validation, the
command line (``rule.field=value``) and the README table all come from one place.

Reference: Stanford CS231n, "Training Neural Networks I" (activation statistics versus
depth, dead ReLUs, the update:weight ratio around 1e-3, the initial loss log(C), the
overfit-a-tiny-subset sanity check).
"""

from __future__ import annotations

# Import order is registration order, which is evaluation order.
from . import loss, activations, params, data, accuracy, depth  # noqa: F401,E401  (each registers its rules)
from ._base import (
    RULES, UPDATE_RATIO_RELATIVE, Delta, NoThresholds, Rule, RuleThresholds, activation_layers, is_bias, knob,
    register, regularization_of, weights_by_depth,
)
from .loss import loss_explosion_finding, nan_loss_finding

__all__ = [
    "Rule", "RuleThresholds", "NoThresholds", "Delta", "knob", "register", "RULES",
    "is_bias", "regularization_of", "nan_loss_finding", "loss_explosion_finding", "weights_by_depth",
    "activation_layers", "UPDATE_RATIO_RELATIVE",
]
