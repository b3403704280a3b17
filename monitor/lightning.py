"""PyTorch Lightning: ``Trainer(callbacks=[BabysitterCallback()])`` records the run.

Usage::

    from monitor.lightning import BabysitterCallback
    trainer = L.Trainer(max_epochs=5, callbacks=[BabysitterCallback(logdir="runs", every=10)])
    trainer.fit(model, train_loader, val_loader)

What it does, with the Trainer's own hooks:

* ``setup("fit")``: opens the run (a ``Monitor``). Under ``strategy="ddp"`` every process
  does; the process group that Lightning initialised gives the rank, rank 0 names the run
  folder and every rank writes its own files into it. Hyperparameters are those of
  ``save_hyperparameters()`` plus the Trainer's settings (``max_epochs``,
  ``accumulate_grad_batches``, ``precision``, ``gradient_clip_val``, ``world_size``);
  ``num_classes`` comes from the argument or a hyperparameter of that name.
* ``on_train_start``: ``Monitor.watch(lightning_module, optimizers)`` with every optimizer
  of ``configure_optimizers``: updates measured across each one's ``step()``, the learning
  rates as ``lr``, ``lr/1`` (parameter groups) and ``lr/opt1``, ``lr/opt2``, ... (the other
  optimizers), schedulers shown through the rates used.
* each optimizer step (after the last micro-batch of gradient accumulation): one scalars
  record, which ends the monitor's iteration, numbered by optimizer steps from 0 (so
  accumulation is respected; with several optimizers stepping in one batch, that batch is
  one step) with ``loss``, the mean of the micro-batch losses that ``training_step``
  returned, and every metric logged with ``self.log`` during training, a ``_step`` suffix
  removed (``train_loss_step`` -> ``train_loss``; ``_epoch`` aggregates are left out).
* the end of each validation run: the metrics logged during validation (``val_loss``,
  ``val_acc``, ...; names ending in ``_epoch`` without the suffix) at the last training step.
  The rules read losses and accuracies through ``core.schema.METRIC_ALIASES``.
* the end of ``fit``: the run is marked finished (``stop_reason: "early_stopping"`` in
  ``meta.json`` when a callback stopped the Trainer); an exception marks it crashed with the
  error, Ctrl-C stopped (``stop_reason: "interrupted"``).

What the forward hooks see is the LightningModule's own ``forward``: a ``training_step``
that calls ``self(x)``. One that calls a submodule directly (``self.net(x)``) gives the
parameter statistics and scalars but no layer statistics; the callback says so once.

Monitoring never stops training: an error in the callback is logged once and the callback
goes quiet.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Mapping

import lightning.pytorch as pl
import torch

from ._callback import FailsQuietly
from ._monitor import Monitor, TrainingDivergedError

log = logging.getLogger(__name__)

__all__ = ["BabysitterCallback"]

_VAL_PREFIXES = ("val", "valid", "validation", "test")


def _number(v: Any) -> float | None:
    """A Python float from a 0-d tensor or number; ``None`` for anything else (a dict, a vector)."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            return None
        return float(v.detach().float().cpu())
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


def _metrics(trainer: "pl.Trainer") -> dict[str, float]:
    out = {}
    for k, v in trainer.callback_metrics.items():
        f = _number(v)
        if f is not None:
            out[str(k)] = f
    return out


def _plain_hparams(hp: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters as JSON-able values: numbers, strings and booleans kept, anything else as text."""
    out: dict[str, Any] = {}
    for k, v in hp.items():
        if v is None or isinstance(v, (bool, int, float, str)):
            out[str(k)] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (bool, int, float, str)) for x in v):
            out[str(k)] = list(v)
        else:
            out[str(k)] = repr(v)[:200]
    return out


class BabysitterCallback(FailsQuietly, pl.Callback):
    """Records a Lightning ``fit`` into ``<logdir>/<name>/``.

    Args:
        logdir: the log directory.
        name: the run name (generated when ``None``).
        every: layer statistics every ``every`` optimizer steps (and at the first).
        num_classes: classes of a classifier (else the hyperparameter ``num_classes``, if any).
        hparams: more hyperparameters for ``meta.json`` (added to ``save_hyperparameters()``'s).
        **options: other ``Monitor`` options (``on_nan``, ``bins``, ...).

    Attributes:
        monitor: the run's ``Monitor`` while ``fit`` runs (``None`` before and after).
        run_dir: the run folder, once ``fit`` has started.
    """

    framework = "Lightning"

    def __init__(self, logdir: str | os.PathLike[str] = "runs", name: str | None = None, *, every: int = 10,
                 num_classes: int | None = None, hparams: Mapping[str, Any] | None = None, **options: Any) -> None:
        super().__init__()
        self.logdir, self.name, self.every = logdir, name, every
        self.num_classes = num_classes
        self.extra_hparams = dict(hparams or {})
        self.options = options
        self.monitor: Monitor | None = None
        self.run_dir: Any = None
        self._watch: Any = None
        self._losses: list[torch.Tensor] = []
        self._global_step = 0  # the Trainer's global_step at the end of the previous batch
        self._step = 0  # the next step number: optimizer steps (batches in which an optimizer stepped) from 0
        self._val_keys: set[str] = set()
        self._before_val: dict[str, float] = {}
        self._warned_no_layers = False

    # -- helpers ---------------------------------------------------------------------------


    def _hparams(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> dict[str, Any]:
        hp = _plain_hparams(dict(getattr(pl_module, "hparams", {}) or {}))
        hp.update({
            "max_epochs": trainer.max_epochs, "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "precision": str(trainer.precision), "gradient_clip_val": trainer.gradient_clip_val,
            "world_size": trainer.world_size,
        })
        hp.update(self.extra_hparams)
        return hp

    # -- hooks -----------------------------------------------------------------------------

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if stage != "fit" or self.monitor is not None:
            return
        hp = self._hparams(trainer, pl_module)
        nc = self.num_classes if self.num_classes is not None else hp.get("num_classes")
        nc = nc if isinstance(nc, int) and not isinstance(nc, bool) and nc > 0 else None
        # A configuration error (bad every=, a rank 0 that cannot create the folder) stops fit() at once.
        self.monitor = Monitor(self.logdir, self.name, every=self.every, num_classes=nc, hparams=hp, **self.options)
        self.run_dir = self.monitor.run_dir
        self.monitor.set_meta(framework="lightning")

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.monitor is None or self._broken:
            return
        try:
            opts = list(trainer.optimizers)
            if not opts:
                log.warning("Babysitter: the Trainer has no optimizer; only scalars are recorded")
                return
            self._watch = self.monitor.watch(pl_module, opts, start_step=0)
            self.monitor.set_meta(framework="lightning", optimizers=[type(o).__name__ for o in opts])
            self._global_step = trainer.global_step
        except Exception as err:
            self._fail("watch", err)

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self.monitor is None or self._broken or self._watch is None:
            return
        try:
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if isinstance(loss, torch.Tensor) and loss.numel() == 1:
                self._losses.append(loss.detach())
            if trainer.global_step == self._global_step:
                return  # a micro-batch of gradient accumulation: no optimizer has stepped
            # global_step counts every optimizer's steps (two per batch with two optimizers in
            # manual optimization); a step here is one batch in which the optimizers stepped.
            self._global_step = trainer.global_step
            step, self._step = self._step, self._step + 1
            values: dict[str, Any] = {}
            for k, v in trainer.callback_metrics.items():
                k = str(k)
                if k in self._val_keys or k.startswith(_VAL_PREFIXES) or k.endswith("_epoch"):
                    continue
                # 0-d tensors go to the Monitor as they are: on an accelerator it reads them
                # without waiting for the device (a float() here would synchronise every step).
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    values[k[:-5] if k.endswith("_step") else k] = v.detach()
                elif (f := _number(v)) is not None:
                    values[k[:-5] if k.endswith("_step") else k] = f
            if self._losses:
                losses, self._losses = self._losses, []
                values["loss"] = losses[0] if len(losses) == 1 else torch.stack([t.float() for t in losses]).mean()
            self.monitor.log(step, **values)
            if step == 0 and not self._warned_no_layers and not self.monitor.layers:
                self._warned_no_layers = True
                log.warning("Babysitter: no layer output was recorded at step 0: the training_step does not call "
                            "the LightningModule's forward (self(x)); only parameters and scalars are recorded")
        except Exception as err:
            if isinstance(err, TrainingDivergedError):
                raise  # on_nan="raise" asked for it
            self._fail("on_train_batch_end", err)

    def on_validation_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.monitor is None or self._broken or trainer.sanity_checking:
            return
        self._before_val = _metrics(trainer)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.monitor is None or self._broken or trainer.sanity_checking:
            return
        try:
            before = self._before_val
            values = {}
            for k, v in _metrics(trainer).items():
                changed = k not in before or not (before[k] == v or (math.isnan(v) and math.isnan(before[k])))
                if k in self._val_keys or changed:
                    self._val_keys.add(k)
                    values[k[:-6] if k.endswith("_epoch") else k] = v
            if values:
                self.monitor.log(max(0, self._step - 1), **values)  # the same step: the same iteration
        except Exception as err:
            self._fail("on_validation_end", err)

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.monitor is None:
            return
        if trainer.should_stop:
            self.monitor.set_meta(stop_reason="early_stopping")
        self._close()

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        if self.monitor is None:
            return
        self._close(error=exception)  # Ctrl-C: stopped, stop_reason "interrupted" (Monitor.close)

    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if stage == "fit":
            self._close()

    def _close(self, error: BaseException | None = None) -> None:
        mon, self.monitor = self.monitor, None
        self._watch = None
        if mon is not None:
            mon.close(error=error)
