"""Random search over learning rate and regularization on the digits network, coarse then fine.

The lecture's recipe for hyperparameters:

1. coarse: a wide range, sampled at random in log space, a few epochs per trial, to find
   where the good values live (and drop the ranges where the loss explodes);
2. fine: a narrower range around the best coarse trials, more epochs;
3. look at the results: is the best value at the edge of the range? Then shift the range.

Each search is an Optuna study. Every trial is a run in ``--logdir`` (``coarse-t000``, ...,
``fine-t000``, ...), with its hyperparameters, the search space and the study in
``meta.json``; a trial whose loss blows up is pruned by the diagnoses within a few logged
steps. Watch them live or afterwards with::

    python examples/search_digits.py --logdir runs
    babysitter dashboard runs        # the Compare page: studies, scatter, parallel coordinates, edge warning
    babysitter compare runs          # the same tables and findings in the terminal

The same command started several times (or on several machines, with ``--logdir`` and
``--storage`` on a shared filesystem, or ``--storage`` a database URL) runs the two studies
with that many workers::

    python examples/search_digits.py --logdir /shared/runs --storage /shared/runs/search.journal
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna  # noqa: E402

from examples.digits_numpy import train as train_digits  # noqa: E402
from monitor.search import LogUniform, Trial, random_search, refine  # noqa: E402

# Coarse ranges: several decades each, sampled in log space.
COARSE_SPACE = {"lr": LogUniform(1e-4, 10.0), "reg": LogUniform(1e-6, 1.0)}


def make_train(epochs: int, every: int = 20, on_nan: str = "raise"):
    """A training function for ``random_search``: one digits run per trial, ``epochs`` epochs.

    ``on_nan="raise"`` stops a trial whose loss became NaN even without pruning (it is then
    recorded as crashed); ``"warn"`` trains it to the end.
    """

    def train(trial: Trial):
        # The network builds its own Monitor: it gets the trial's name, the search space, the
        # study and the pruning callback; it records lr and reg (and the rest of its settings)
        # as hyperparameters itself.
        kw = trial.monitor_kwargs
        kw.pop("hparams")
        return train_digits(trial.logdir, name=trial.name, seed=trial.seed % (2**31), epochs=epochs,
                            lr=trial.hparams["lr"], reg=trial.hparams["reg"], hidden=64, every=every,
                            on_nan=on_nan, on_exists="error", **kw)

    return train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--logdir", default="runs", help="log directory (runs coarse-tNNN and fine-tNNN)")
    parser.add_argument("--coarse-trials", type=int, default=16, help="trials of the wide search")
    parser.add_argument("--coarse-epochs", type=int, default=2, help="epochs of each coarse trial")
    parser.add_argument("--fine-trials", type=int, default=10, help="trials of the narrowed search")
    parser.add_argument("--fine-epochs", type=int, default=10, help="epochs of each fine trial")
    parser.add_argument("--top-k", type=int, default=4, help="refine around this many of the best coarse trials")
    parser.add_argument("--seed", type=int, default=0, help="seeds the draws of both searches")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage shared by the workers: a journal file or a database URL "
                             "(default: this process only)")
    parser.add_argument("--no-prune", action="store_true", help="train diverging trials to the end")
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is too many here

    opts = dict(logdir=a.logdir, storage=a.storage, prune=not a.no_prune)
    coarse = random_search(make_train(a.coarse_epochs), COARSE_SPACE, a.coarse_trials, name="coarse", seed=a.seed,
                           **opts)
    pruned = sum(t.status == "pruned" for t in coarse.trials)
    crashed = sum(t.status == "crashed" for t in coarse.trials)
    best = coarse.best
    print(f"coarse: {len(coarse.trials)} trials, {pruned} pruned, {crashed} crashed; best val_acc "
          f"{best.value:.3f} at lr={best.hparams['lr']:.3g}, reg={best.hparams['reg']:.3g}" if best else
          "coarse: no trial produced a validation accuracy")
    if best is None:
        return 1
    fine_space = refine(coarse, top_k=a.top_k)
    print("fine ranges: " + ", ".join(f"{k} in [{s.low:.3g}, {s.high:.3g}]" for k, s in fine_space.items()))
    fine = random_search(make_train(a.fine_epochs), fine_space, a.fine_trials, name="fine", seed=a.seed + 1,
                         **opts)
    fb = fine.best
    if fb is not None:
        print(f"fine: best val_acc {fb.value:.3f} at lr={fb.hparams['lr']:.3g}, reg={fb.hparams['reg']:.3g} "
              f"({fb.name})")
    for res in (coarse, fine):
        for e in res.edge_findings():
            print(f"{res.name}: {e.finding.message} {e.finding.fix}")
    print(f"runs in {a.logdir}: babysitter dashboard {a.logdir}  (or: babysitter compare {a.logdir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
