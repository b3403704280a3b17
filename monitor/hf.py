"""Hugging Face Transformers: ``Trainer(..., callbacks=[BabysitterCallback()])`` records the run.

Usage::

    from monitor.hf import BabysitterCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds, eval_dataset=val,
                      callbacks=[BabysitterCallback(logdir="runs")])
    trainer.train()

What it does, with the Trainer's callback events:

* ``on_train_begin``: opens the run (a ``Monitor``; under ``torchrun`` or ``accelerate
  launch`` every process does, rank 0 names the folder and every rank writes its own
  files) and ``Monitor.watch(model, optimizer)`` on ``trainer.model`` and the torch optimizer
  inside the Trainer's (accelerate's wrapper is looked through). Hyperparameters are the
  ``TrainingArguments`` that shape training (``learning_rate``, batch size,
  ``gradient_accumulation_steps``, ``max_grad_norm``, ``bf16``, ...) plus the model's
  ``model_type`` and size. ``num_classes`` is ``config.num_labels`` for a classifier
  (``...ForSequenceClassification`` and the other ``For...Classification`` heads) and
  ``config.vocab_size`` for a language model (``...ForCausalLM``, ``...ForMaskedLM``): the
  first loss of a fresh model should be near log(C) in both cases.
* every optimizer step (``on_step_end``): ``loss``, the mean of the micro-batch losses the
  model returned in this step (read from the model output by a forward hook, so it is the
  loss of each step, not the Trainer's average over ``logging_steps``), at the step the
  monitor counts (optimizer steps from 0: gradient accumulation respected), with the
  learning rate of each parameter group.
* ``on_log``: ``grad_norm`` (the Trainer's total gradient norm, taken before
  ``max_grad_norm`` clips it; the per-parameter gradient norms of logged steps are taken
  before clipping too) and ``learning_rate`` as ``lr`` at the step just taken;
  ``loss`` too when the model output carried none (a custom ``compute_loss``).
* ``on_evaluate``: every metric (``eval_loss``, ``eval_accuracy``, ...; the rules read them
  through ``core.schema.METRIC_ALIASES``), timing metrics left out.
* ``on_train_end``: the run is finished (``stop_reason: "early_stopping"`` when a callback
  stopped training). The Trainer has no exception event: an exception that leaves
  ``train()`` marks the run crashed at interpreter exit (uncaught), or when the process
  ends without ``on_train_end`` having been called (caught), with that as the error.
"""

from __future__ import annotations

import atexit
import logging
import os
from typing import Any, Mapping

import torch
from transformers import TrainerCallback

from ._callback import FailsQuietly
from ._monitor import Monitor, TrainingDivergedError

log = logging.getLogger(__name__)

__all__ = ["BabysitterCallback"]

# TrainingArguments fields that shape training, copied into meta.json's hparams.
HPARAM_FIELDS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
    "weight_decay", "max_grad_norm", "warmup_steps", "warmup_ratio", "lr_scheduler_type", "optim", "adam_beta1",
    "adam_beta2", "adam_epsilon", "bf16", "fp16", "seed", "label_smoothing_factor",
)
_TIMING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")
_CLASSIFIER_SUFFIXES = ("ForSequenceClassification", "ForTokenClassification", "ForImageClassification",
                        "ForAudioClassification", "ForMultipleChoice")
_LM_SUFFIXES = ("ForCausalLM", "ForMaskedLM", "LMHeadModel")


def _torch_optimizer(opt: Any) -> Any:
    """The ``torch.optim.Optimizer`` inside accelerate's (or another) wrapper."""
    # AcceleratedOptimizer subclasses torch.optim.Optimizer without its state (no hooks of its own);
    # its step() calls the inner optimizer's, whose hooks fire.
    for _ in range(5):
        inner = getattr(opt, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer):
            break
        opt = inner
    return opt


def num_classes_of(model: Any) -> int | None:
    """``num_labels`` of a classifier, ``vocab_size`` of a language model, else ``None``."""
    cfg = getattr(model, "config", None)
    name = type(model).__name__
    if name.endswith(_CLASSIFIER_SUFFIXES):
        n = getattr(cfg, "num_labels", None)
    elif name.endswith(_LM_SUFFIXES):
        n = getattr(cfg, "vocab_size", None)
    else:
        return None
    return n if isinstance(n, int) and n > 1 else None


def _number(v: Any) -> float | None:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().cpu()) if v.numel() == 1 else None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


class BabysitterCallback(FailsQuietly, TrainerCallback):
    """Records a ``Trainer.train()`` into ``<logdir>/<name>/``.

    Args:
        logdir: the log directory.
        name: the run name (generated when ``None``).
        every: layer statistics every ``every`` optimizer steps (and at the first).
        num_classes: overrides the one taken from the model (see the module docstring).
        hparams: more hyperparameters for ``meta.json``.
        **options: other ``Monitor`` options (``on_nan``, ``bins``, ...).

    Attributes:
        run_dir: the run folder, once training has started.
    """

    framework = "Hugging Face"

    def __init__(self, logdir: str | os.PathLike[str] = "runs", name: str | None = None, *, every: int = 10,
                 num_classes: int | None = None, hparams: Mapping[str, Any] | None = None, **options: Any) -> None:
        self.logdir, self.name, self.every = logdir, name, every
        self.num_classes = num_classes
        self.extra_hparams = dict(hparams or {})
        self.options = options
        self.monitor: Monitor | None = None
        self.run_dir: Any = None
        self._watch: Any = None
        self._loss_hook: Any = None
        self._losses: list[torch.Tensor] = []
        self._model_loss_seen = False

    # -- events ----------------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        if self.monitor is not None:
            return
        hp = {k: getattr(args, k) for k in HPARAM_FIELDS if hasattr(args, k)}
        hp["world_size"] = args.world_size
        cfg = getattr(model, "config", None)
        if cfg is not None:
            hp["model_type"] = getattr(cfg, "model_type", None)
            for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "hidden_act"):
                if isinstance(getattr(cfg, k, None), (int, str)):
                    hp[k] = getattr(cfg, k)
        hp.update(self.extra_hparams)
        nc = self.num_classes if self.num_classes is not None else num_classes_of(model)
        self.monitor = Monitor(self.logdir, self.name, every=self.every, num_classes=nc, hparams=hp, **self.options)
        self.run_dir = self.monitor.run_dir
        _LIVE.add(self)
        try:
            opt = _torch_optimizer(optimizer)
            if isinstance(model, torch.nn.Module) and isinstance(opt, torch.optim.Optimizer):
                self._watch = self.monitor.watch(model, opt)
                self._loss_hook = model.register_forward_hook(self._take_loss)
            else:
                log.warning("Babysitter: the Trainer gave no torch model/optimizer (%s, %s); only scalars are recorded",
                            type(model).__name__, type(optimizer).__name__)
            self.monitor.set_meta(framework="transformers", optimizer=type(opt).__name__,
                                  model_class=type(model).__name__)
        except Exception as err:
            self._fail("on_train_begin", err)

    def _take_loss(self, module: Any, args: Any, output: Any) -> None:
        # The model's own loss of a training forward (labels given); never changes the output.
        if not module.training:
            return
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._losses.append(loss.detach())
            self._model_loss_seen = True

    @staticmethod
    def _step(state: Any) -> int:
        """The optimizer step just taken, from 0 (``global_step`` counts steps taken, skipped ones included)."""
        return max(0, int(state.global_step) - 1)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is None or self._broken:
            return
        try:
            values: dict[str, Any] = {}
            if self._losses:
                losses, self._losses = self._losses, []
                # A 0-d tensor: the Monitor reads it without waiting for the device.
                values["loss"] = losses[0] if len(losses) == 1 else torch.stack([t.float() for t in losses]).mean()
            # Every step ends the monitor's iteration, with or without a loss (a custom compute_loss);
            # a step the GradScaler skipped is flagged by the adapter.
            self.monitor.log(self._step(state), **values)
        except Exception as err:
            if isinstance(err, TrainingDivergedError):
                raise  # on_nan="raise" asked for it
            self._fail("on_step_end", err)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        if self.monitor is None or self._broken or not logs:
            return
        if any(k.startswith("eval_") for k in logs) or "train_runtime" in logs:
            return  # evaluation metrics come through on_evaluate; the end-of-training summary is not a step
        values: dict[str, Any] = {}
        for k, v in logs.items():
            f = _number(v)
            if f is None or k in ("epoch", "step") or k.endswith(_TIMING_SUFFIXES):
                continue
            if k == "learning_rate":
                values["lr"] = f
            elif k == "loss":
                if not self._model_loss_seen:
                    values["loss"] = f
            else:
                values[k] = f
        if values:
            try:
                self.monitor.log(self._step(state), **values)  # the same step: the same iteration
            except Exception as err:
                if isinstance(err, TrainingDivergedError):
                    raise  # on_nan="raise" asked for it
                self._fail("on_log", err)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None,
                    **kwargs: Any) -> None:
        if self.monitor is None or self._broken or not metrics:
            return
        values = {}
        for k, v in metrics.items():
            f = _number(v)
            if f is not None and not k.endswith(_TIMING_SUFFIXES) and k != "epoch":
                values[k] = f
        if values:
            try:
                self.monitor.log(self._step(state), **values)
            except Exception as err:
                self._fail("on_evaluate", err)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is None:
            return
        if control.should_training_stop and state.max_steps and state.global_step < state.max_steps:
            self.monitor.set_meta(stop_reason="early_stopping")
        self.close()

    def close(self, error: BaseException | None = None) -> None:
        """Remove the hooks and mark the run finished (or crashed with ``error``). Safe to call twice."""
        _LIVE.discard(self)
        mon, self.monitor = self.monitor, None
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        self._watch = None
        if mon is not None:
            mon.close(error=error)


class TrainingEndedWithoutTrainEnd(RuntimeError):
    """The error recorded for a run whose process ended inside ``Trainer.train()``."""


# Callbacks whose training has begun and not ended. atexit runs handlers in reverse order of
# registration, so this one runs before the Monitor's own: a run that never saw on_train_end
# (an exception that the program caught) is marked crashed, not finished.
_LIVE: "set[BabysitterCallback]" = set()


@atexit.register
def _close_unfinished() -> None:
    from ._process import UNCAUGHT

    for cb in list(_LIVE):
        err = UNCAUGHT[-1] if UNCAUGHT else TrainingEndedWithoutTrainEnd(
            "the process ended inside Trainer.train() (an exception was raised and caught?)")
        cb.close(error=err)
