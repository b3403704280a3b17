"""The lecture's sanity check: overfit a tiny subset of the training data.

Before a real training run, CS231n ("Training Neural Networks I", step 4) trains the model
on ~20 examples with regularization off: a correct model, loss and gradient reach 100%
training accuracy (loss near 0) within a few hundred steps. When it cannot, something is
broken, and no amount of tuning will help.

    from monitor import Monitor
    from monitor.sanity import SANITY_OVERFIT, overfit_subset

    X_small, y_small = overfit_subset(X_train, y_train, n=20, seed=0)
    with Monitor("runs", "sanity", sanity=SANITY_OVERFIT, hparams={"reg": 0.0}) as mon:
        ...  # train on X_small, y_small for ~200 steps; log train_acc
    # babysitter check runs/sanity  -> cannot_overfit (error) when train_acc never reached 100%

The ``cannot_overfit`` rule judges a run marked ``sanity="overfit_small"`` once it is
finished, from the best ``train_acc`` it logged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import ConfigError
from core.schema import REG_KEYS, SANITY_OVERFIT

__all__ = ["SANITY_OVERFIT", "overfit_subset", "check_sanity_hparams"]



def overfit_subset(X: Any, y: Any, n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` training examples for the overfit check, spread over the classes.

    Picks examples round-robin over the classes (in a seeded random order), so 20 examples
    of a 10-class problem hold two of each class.

    Args:
        X: training inputs, examples first.
        y: integer labels, one per example.
        n: how many examples (at most ``len(y)``).
        seed: seed of the choice.

    Returns:
        ``(X[idx], y[idx])`` as numpy arrays.

    Raises:
        ConfigError: when ``n`` is not in ``1..len(y)`` or ``X`` and ``y`` differ in length.
    """
    Xa, ya = np.asarray(X), np.asarray(y)
    if len(Xa) != len(ya):
        raise ConfigError(f"X has {len(Xa)} examples but y has {len(ya)} labels; give one label per example")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= len(ya):
        raise ConfigError(f"n must be an integer in 1..{len(ya)} (examples in the subset), got {n!r}")
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.nonzero(ya == c)[0]).tolist() for c in np.unique(ya)]
    idx: list[int] = []
    while len(idx) < n:
        for members in by_class:
            if members and len(idx) < n:
                idx.append(members.pop())
    order = np.array(sorted(idx), dtype=np.intp)
    return Xa[order], ya[order]


def check_sanity_hparams(hparams: dict[str, Any]) -> None:
    """Raise when the hyperparameters of an overfit check turn regularization on.

    Raises:
        ConfigError: when a regularization strength (``core.schema.REG_KEYS``: ``reg``, ``weight_decay``...)
            is above 0.
    """
    for key in REG_KEYS:
        v = hparams.get(key)
        if isinstance(v, (int, float)) and v > 0:
            raise ConfigError(f"the overfit sanity check needs regularization off; {key}={v!r}, set it to 0")
