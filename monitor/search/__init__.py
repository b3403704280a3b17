"""Random hyperparameter search, in log space, coarse to fine (CS231n "Training Neural Networks I"), on Optuna.

The lecture's advice made into a few functions:

* sample at random, never on a grid (a grid spends most trials on the parameters that
  matter least; random trials see a new value of every parameter each time);
* sample scale parameters such as the learning rate and the regularization strength in
  log space: ``lr = 10 ** uniform(-6, -3)`` (``LogUniform(1e-6, 1e-3)``);
* run a coarse search first (few epochs, wide ranges), then a fine one around the best
  trials (``refine``), and shift the range when the best value sits at its edge
  (``core.compare.edge_of_range``, also returned by ``SearchResult.edge_findings``).

A search is an Optuna study: the same script started on N processes or N machines with
one ``storage`` (a journal file on a shared filesystem, SQLite, a database URL) adds N
workers to it, and every trial runs exactly once. While a trial trains, the diagnosis
engine reads its run and prunes it on an error finding (NaN, blow-up, non-finite
values), so a wide coarse range costs little time on diverged trials.

Usage::

    from monitor.search import LogUniform, load_search, random_search, refine

    def train(trial):
        with trial.monitor(num_classes=10) as mon:       # hparams, space, study in meta.json
            ...                                         # use trial.hparams["lr"], trial.seed
        return None                                     # value read from the run (best val_acc)

    space = {"lr": LogUniform(1e-6, 1e-1), "reg": LogUniform(1e-5, 1e1)}
    coarse = random_search(train, space, 40, logdir="runs", name="coarse", storage="runs/search.journal")
    fine = random_search(train, refine(coarse, top_k=4), 20, logdir="runs", name="fine",
                         storage="runs/search.journal", seed=1)

A training function that builds its own ``Monitor`` takes ``**trial.monitor_kwargs``
(``hparams``, ``search_space``, ``study`` and the pruning callback) and ``name=trial.name``.
A trial that raises is recorded as ``crashed`` (its run folder says so too) and the search goes on.
"""

from __future__ import annotations

from ._refine import refine
from ._search import random_search
from ._space import (
    Choice, IntUniform, LogUniform, Sampler, Uniform, from_distribution, sample_space, space_from_json, space_to_json,
    to_distribution,
)
from ._trials import SearchResult, Trial, TrialResult, load_search

__all__ = [
    "Sampler", "LogUniform", "Uniform", "IntUniform", "Choice", "Trial", "TrialResult", "SearchResult",
    "sample_space", "random_search", "refine", "load_search", "space_to_json", "space_from_json",
    "to_distribution", "from_distribution",
]
