"""PyTorch adapter: ``Monitor.watch(model, optimizer)`` records every layer with hooks.

Its modules are the only ones beside the framework callbacks that import torch: this one (the
``TorchWatch`` lifecycle and the step's one host transfer), ``_torch_forward`` (forward hooks,
functional activations), ``_torch_optim`` (gradient and optimizer hooks) and ``_torch_stats``
(the statistic kernels). Usage (three lines in a training loop)::

    mon = Monitor("runs", num_classes=10)            # 1: the run
    mon.watch(model, optimizer)                      # 2: hooks on the model and the optimizer
    for step, (x, y) in enumerate(loader):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        mon.log(step, loss=loss)                     # 3: the loss (a tensor is fine)
    mon.close()                                      # or ``with Monitor(...) as mon:``

What is recorded, on logged steps only (the first step and every ``every`` steps), for the
first forward of the step (in training mode when an optimizer is watched):

* the output of every activation module (ReLU, LeakyReLU, PReLU, ELU, GELU, SiLU, Tanh,
  Sigmoid, Softplus, ...), Linear, Conv, BatchNorm/LayerNorm/GroupNorm/RMSNorm, Embedding,
  RNN/LSTM/GRU (the output sequence) and MultiheadAttention module, of modules whose kind
  the user declares (``kinds=``), and of activation functions (``F.relu``, ``torch.tanh``,
  ...) called inside ``forward``, seen through a ``TorchFunctionMode`` active only during a
  logged forward and named after the calling module (``block.relu()``). Units are channels
  (axis 1) for convolutions and normalisations over channels and for activations of their
  outputs, the last axis otherwise; the batch axis is 1 inside ``batch_first=False`` modules.
* the model's first floating-point tensor argument, positional or keyword (the ``input``
  record).
* per parameter tensor: weight norm/std and NaN/Inf counts after the optimizer step, the
  update (the real difference of the weights across ``step()``, so momentum and Adam are
  right; for plain SGD on float32/float64 weights, exactly ``-lr * grad``, its norm is
  ``lr * ||grad||`` without a copy) and its ratio to the norm of the weight before the
  update, the gradient norm and NaN/Inf counts when backward has accumulated the gradient
  (before clipping). A parameter that got no gradient at that step (frozen with
  ``requires_grad=False``, or unused) has ``upd_norm``, ``upd_ratio`` and ``grad_norm``
  ``null``. A Parameter shared by several layers is recorded once, under its first name.
* the learning rate of each optimizer and parameter group, as the scalars ``lr``, ``lr/1``,
  ..., ``lr/opt1``, ... added to the step's ``mon.log`` record; ``skipped_step`` when no
  optimizer stepped.

Cost. Forward and gradient hooks are attached only for logged steps and removed after them,
so an unlogged step runs the model with no hook at all; torch's global optimizer hooks then
do one flag check. On a logged step every statistic is computed with torch ops on the tensor's own
device, stacked into one vector per layer, and all vectors go to the host in one transfer
(``torch.cat(...).tolist()``) when the step ends (``mon.log``). On the CPU, where reading a
value is a memory read, host arithmetic replaces the small ops between the passes.


A failure inside a hook never stops training: it is logged once and monitoring of that
layer (or of the parameters) stops. Hooks never modify a tensor and use no random numbers:
training with and without the monitor is bit-identical.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from typing import Any

import torch
from torch import nn
from torch.optim import optimizer as _optim

from core.schema import KIND_ACTS, KIND_INPUT, KIND_PARAMS, LayerInfo

# The statistic kernels, re-exported: ``monitor._torch`` is the adapter's one import.
from ._torch_param_stats import (  # noqa: F401
    GRAD, GRAD_LAYOUT, PARAM_LAYOUT, cpu_grad_lists, cpu_param_lists, decode_param, grad_vector, param_vector,
)
from ._torch_stats import (  # noqa: F401
    HIST_SAMPLE, HistBatch, Scratch, activation_vector, decode_activation, decode_input, hist_sample_of, input_vector,
)

from ._adapter import Adapter
from ._torch_forward import ActivationMode, ForwardSide, Layer, batch_first, layer_kind, sequence_kind, unit_rule
from ._torch_optim import KEEP_SNAPSHOT_BYTES, OptimizerSide, WatchedOpt

log = logging.getLogger(__name__)

__all__ = ["TorchWatch", "HIST_SAMPLE", "Scratch", "layer_kind", "activation_vector", "decode_activation",
           "input_vector", "decode_input", "param_vector", "grad_vector", "cpu_param_lists", "cpu_grad_lists",
           "decode_param", "hist_sample_of", "watch_model"]


# -- the hooks -----------------------------------------------------------------------------


def _gather(parts: list[torch.Tensor | list[float]]) -> list[float]:
    """All parts as one list: device tensors go to the host in one transfer; lists are host values already."""
    tensors = [t for t in parts if isinstance(t, torch.Tensor)]
    host: list[float] = []
    if tensors:
        if len({t.device for t in tensors}) > 1:  # a model split over devices: one copy per device
            tensors = [t.cpu() for t in tensors]
        host = torch.cat(tensors).tolist()  # the one device-to-host transfer of this step
    out: list[float] = []
    pos = 0
    for t in parts:
        if isinstance(t, torch.Tensor):
            k = t.numel()
            out.extend(host[pos:pos + k])
            pos += k
        else:
            out.extend(t)
    return out


def _compile_wrappers(model: nn.Module) -> list[nn.Module]:
    """The ``torch.compile`` wrapper modules (``OptimizedModule``) around ``model``.

    Found among the objects the garbage collector tracks (a wrapper is referred to by the
    user's code only): one scan, tens of milliseconds, done once.
    """
    import gc

    opt_cls = getattr(getattr(getattr(torch, "_dynamo", None), "eval_frame", None), "OptimizedModule", None)
    if opt_cls is None:
        return []
    # type(), not isinstance(): isinstance() on a weak proxy whose object is gone raises.
    return [o for o in gc.get_objects() if issubclass(type(o), opt_cls) and o._orig_mod is model]


def _unwrap(model: nn.Module) -> tuple[nn.Module, bool]:
    """The module whose layers are recorded: without torch.compile's and DataParallel/DDP's wrappers.

    Returns ``(inner module, compiled)``; names are taken from the inner module, so they have no
    ``_orig_mod.`` or ``module.`` prefix.
    """
    compiled = False
    wrappers: tuple[type, ...] = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    opt_mod = getattr(getattr(torch, "_dynamo", None), "eval_frame", None)
    opt_cls = getattr(opt_mod, "OptimizedModule", None)
    while True:
        if opt_cls is not None and isinstance(model, opt_cls):
            model, compiled = model._orig_mod, True
        elif isinstance(model, wrappers):
            model = model.module
        else:
            return model, compiled


class _Pending:
    """A scalars record waiting for its device values (copied without blocking)."""

    __slots__ = ("step", "plain", "keys", "host", "event")

    def __init__(self, step: int, plain: dict[str, Any], keys: list[str], host: torch.Tensor, event: Any) -> None:
        self.step, self.plain, self.keys, self.host, self.event = step, plain, keys, host, event

    def ready(self) -> bool:
        return self.event is None or self.event.query()

    def values(self) -> dict[str, Any]:
        if self.event is not None:
            self.event.synchronize()
        out = dict(self.plain)
        out.update(zip(self.keys, self.host.tolist()))
        return out


class TorchWatch(Adapter, ForwardSide, OptimizerSide):
    """Hooks on a model and its optimizers that feed a :class:`~monitor.Monitor`: its adapter (``monitor/_adapter.py``).

    Made by :meth:`Monitor.watch` (which attaches it: the hooks are registered then); removed by
    :meth:`remove` (safe to call twice), by leaving a ``with`` block, or when the Monitor closes.

    Steps. An iteration (forward, backward, the ``step()`` of each optimizer) ends with
    ``mon.log(step, ...)``, and every record of that iteration carries that ``step``. The
    next iteration is numbered ``step + 1`` to decide whether it is logged. Until the first
    ``mon.log`` call (and in a loop that never calls it), iterations are counted by the
    ``step()`` calls of the first optimizer, from ``start_step``.

    Args:
        model: the model (a ``torch.compile``'d, DataParallel or DDP model is unwrapped for
            names; the layers recorded are those of the module inside). A model passed to
            ``torch.compile`` after ``watch()`` is recorded through its compiled wrapper from
            the first logged step after its first compiled step.
        optimizer: an optimizer, a list of them, or ``None``. Optimizers created later whose
            parameters belong to the model are watched as well (torch's global optimizer
            hooks). With none, forwards in eval mode are recorded too.
        start_step: the number of the first step.
        log_input: record the model's first floating-point tensor argument (``input`` record).
        hist_sample: at most this many values per layer are binned for the histogram.
        defer_scalars: copy accelerator loss tensors to the host without waiting and write
            them when they arrive (``None``: on accelerators only). Tests use ``True`` on CPU.
        kinds: layer kinds for modules the table does not know (custom activations), by
            module class, class name or module name: ``{MySwish: "silu"}``.
        functional: record activation functions called inside ``forward`` (default True).
        scaler: the ``torch.amp.GradScaler`` of a mixed-precision loop: gradient norms are
            divided by its scale, so they are those of the unscaled gradients.
    """

    def __init__(self, model: nn.Module, optimizer: Any = None, *,
                 start_step: int = 0, log_input: bool = True, hist_sample: int = HIST_SAMPLE,
                 defer_scalars: bool | None = None, kinds: Any = None, functional: bool = True,
                 scaler: Any = None) -> None:
        from core.errors import ConfigError
        from core.schema import LAYER_KINDS

        if not isinstance(model, nn.Module):
            raise ConfigError(f"watch() needs a torch.nn.Module as the model, got {type(model).__name__}")
        opts = [] if optimizer is None else list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
        for o in opts:
            if not isinstance(o, torch.optim.Optimizer):
                raise ConfigError(f"watch() needs a torch.optim.Optimizer (or a list of them, or None), "
                                  f"got {type(o).__name__}")
        if not isinstance(start_step, int) or start_step < 0:
            raise ConfigError(f"start_step must be a non-negative integer, got {start_step!r}")
        if not isinstance(hist_sample, int) or hist_sample < 1:
            raise ConfigError(f"hist_sample must be a positive integer, got {hist_sample!r}")
        user_kinds: dict[Any, str] = dict(kinds or {})
        for key, kind in user_kinds.items():
            if kind not in LAYER_KINDS:
                raise ConfigError(f"kinds[{key!r}] must be one of {sorted(LAYER_KINDS)}, got {kind!r}")
        if scaler is not None and not callable(getattr(scaler, "get_scale", None)):
            raise ConfigError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")
        self.mon: Any = None  # the Monitor, once attached
        self.root = model
        self.model, self.compiled = _unwrap(model)
        self.step = start_step
        self.log_input = log_input
        self.hist_sample = hist_sample
        self.defer_scalars = defer_scalars
        self.functional = functional
        self.scaler = scaler
        self.removed = False

        self._layers: dict[nn.Module, Layer] = {}
        self._mod_names: dict[nn.Module, str] = {}
        skip = {id(m.out_proj) for m in self.model.modules() if isinstance(m, nn.MultiheadAttention)}
        seq_first: dict[str, bool] = {}
        for name, mod in self.model.named_modules():
            self._mod_names[mod] = name
            bf = batch_first(mod)
            parent = name.rpartition(".")[0] if name else None
            inherited = seq_first.get(parent, False) if parent is not None else False
            seq_first[name] = (not bf) if bf is not None else inherited
            if id(mod) in skip:  # MultiheadAttention applies its out_proj itself: its output is the attention's
                continue
            kind = (user_kinds.get(name) or user_kinds.get(type(mod)) or user_kinds.get(type(mod).__name__)
                    or sequence_kind(mod) or layer_kind(mod))
            if kind is not None:
                self._layers[mod] = Layer(mod, name or type(mod).__name__.lower(), kind, unit_rule(mod, kind),
                                           seq_first[name])
        self._names: dict[int, str] = {}
        for name, p in self.model.named_parameters():  # deduplicated: a shared Parameter keeps its first name
            self._names.setdefault(id(p), name)
        self._params: list[tuple[str, torch.Tensor]] = [(n, p) for n, p in self.model.named_parameters()]
        self._param_ids = {id(p) for _, p in self._params}

        self._opts: dict[int, WatchedOpt] = {}  # id(optimizer) -> watched optimizer
        self._not_ours: weakref.WeakSet[Any] = weakref.WeakSet()  # optimizers seen that hold none of its parameters
        for o in opts:
            self.add_optimizer(o)
        self._opt_handles: list[Any] = []

        self._root_handles: list[Any] = []
        self._fwd_handles: list[Any] = []
        self._grad_handles: list[Any] = []
        self._due = False
        self._recording = False
        self._forward_done = False
        # How iterations end: "?" until known, "log" (mon.log ends each), "count" (a loop that never
        # calls mon.log: each step() of the first optimizer ends one).
        self._ends = "?"
        self._last_log: int | None = None
        self._steps_since_log = 0
        self._ever_stepped = False
        self._skip_reported = False
        self._no_act_reported = False
        self._calls: dict[str, int] = {}
        self._stack: list[nn.Module] = []
        self._chan: dict[int, torch.Tensor] = {}  # outputs of this forward laid out channels first
        self._mode: ActivationMode | None = None
        self._acts: list[tuple[str, str, int, int, Any]] = []
        self._input: tuple[int, Any] | None = None
        self._grads: dict[int, Any] = {}  # id(param) -> grad stats taken when backward accumulated them
        self._grad_seen: dict[int, Any] = {}  # id(param) -> (grad ref, version, sample) at backward (GradSeen)
        self._grad_queue: list[torch.Tensor] = []  # parameters whose gradient this backward accumulated
        self._grad_scale: Any = None
        self._stepped: dict[int, list[Any]] = {}  # id(param) -> [name, param, vec] after an optimizer step
        self._pre: dict[int, list[list[Any]]] = {}  # id(optimizer) -> [name, param, copy, plain lr, step grad, wb]
        self._layer_info: dict[str, LayerInfo] = {}
        self._meta_layers_written = 0
        self._params_failed = False
        self._failed = False
        self._traced = False
        self._zeros: dict[torch.device, torch.Tensor] = {}
        self._lr: dict[int, dict[str, float]] = {}
        self._pending: deque[_Pending] = deque()
        self._warned: set[str] = set()
        self._scratch = Scratch()
        self._hists = HistBatch()  # the subsample counts of this step's CPU layer records, binned at its end
        self._snaps: dict[int, torch.Tensor] = {}
        opt_bytes = sum(p.numel() * p.element_size() for _, p in self._params)
        self._keep_snaps = opt_bytes <= KEEP_SNAPSHOT_BYTES

    # -- the adapter interface (monitor/_adapter.py) -----------------------------------------

    def attach(self, monitor: Any) -> None:
        """Called by ``Monitor.attach``: the optimizer hooks are registered and the first iteration begins."""
        from core.errors import ConfigError

        if self.mon is not None or self.removed:
            raise ConfigError(f"{self!r} was attached to a Monitor already; watch the model again instead")
        self.mon = monitor
        self._opt_handles = [_optim.register_optimizer_step_pre_hook(self._pre_step),
                             _optim.register_optimizer_step_post_hook(self._post_step)]
        monitor.set_meta(framework="torch", optimizer=", ".join(type(o).__name__ for o in self.optimizers) or None)
        self._begin_iteration()

    # -- public ----------------------------------------------------------------------------

    @property
    def layers(self) -> list[str]:
        """Names of the watched modules, in ``named_modules`` order."""
        return [lay.name for lay in self._layers.values()]

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The watched optimizers that still exist, in the order they were added."""
        return [o for o in (w.ref() for w in sorted(self._opts.values(), key=lambda w: w.index)) if o is not None]

    def remove(self) -> None:
        """Remove every hook, write what is still on its way and leave the Monitor. Safe to call twice."""
        if self.removed:
            return
        if self.mon is None:  # never attached: no hook to remove
            self.removed = True
            return
        try:
            if self._due and (self._acts or self._stepped or self._grads or self._input):
                self._flush(self._rec_step())
        except Exception as err:
            self._warn_once("this model", err)
        self.removed = True
        self._detach_forward()
        self._detach_root()
        self._detach_grads()
        for h in self._opt_handles:
            h.remove()
        self._opt_handles = []
        self._scratch, self._snaps = Scratch(), {}
        try:
            self.drain(block=True)
        finally:
            self.mon.detach(self)

    close = remove

    def __enter__(self) -> "TorchWatch":
        return self

    def __exit__(self, tp, value, tb) -> bool:
        self.remove()
        return False

    def __repr__(self) -> str:
        opts = ", ".join(type(o).__name__ for o in self.optimizers) or "no optimizer"
        return (f"TorchWatch({type(self.model).__name__}, {opts}, "
                f"layers={len(self._layers)}, step={self.step}, removed={self.removed})")

    # -- cadence ---------------------------------------------------------------------------

    def _rec_step(self) -> int:
        return self.step

    def _begin_iteration(self) -> None:
        if self._traced:
            self._compiled_after_watch()
        self._due = not self._failed and not self.removed and self.mon.stats_due(self.step)
        self._forward_done = False
        self._acts, self._input, self._grads, self._stepped, self._pre = [], None, {}, {}, {}
        self._hists.clear()
        self._grad_seen = {}
        self._grad_queue = []
        self._grad_scale = None
        self._detach_forward()
        self._detach_grads()
        if self._due:
            self._attach_root()
        else:
            self._detach_root()

    def _compiled_after_watch(self) -> None:
        """The model ran through ``torch.compile`` after ``watch()``: the hooks move to the compiled wrapper.

        Hooks on the module inside a compiled wrapper are traced into its graph and never run
        when the graph does. Moved to the wrapper, they run around the compiled call, and the
        layers are recorded as when the compiled model is watched (an eager forward on logged
        steps), from the next logged step on.
        """
        self._traced = False
        try:
            wrappers = _compile_wrappers(self.model) if self.root is self.model else []
        except Exception as err:  # monitoring never stops training
            log.debug("Babysitter: looking for the torch.compile wrapper failed: %s", err)
            wrappers = []
        if len(wrappers) == 1:
            self._detach_root()
            self.root, self.compiled = wrappers[0], True
            log.info("Babysitter: %s was compiled after watch(): its layers are recorded through the compiled "
                     "module from the next logged step", type(self.model).__name__)
        elif "compiled after watch" not in self._warned:
            self._warned.add("compiled after watch")
            log.warning("Babysitter: %s runs through torch.compile without one wrapper module to hook (a compiled "
                        "function calling it, Module.compile(), or several torch.compile wrappers): its layers "
                        "are not recorded. Watch the compiled model instead: mon.watch(torch.compile(model), "
                        "optimizer)", type(self.model).__name__)

    def _warn_once(self, what: str, err: BaseException) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("Babysitter: monitoring of %s stopped after an error: %s: %s",
                        what, type(err).__name__, err, exc_info=err)

    def _zero(self, device: torch.device) -> torch.Tensor:
        z = self._zeros.get(device)
        if z is None:
            z = self._zeros[device] = torch.zeros((), dtype=torch.float64, device=device)
        return z

    # -- the end of an iteration -----------------------------------------------------------

    def _flush(self, step: int) -> None:
        """Write the records of this iteration, all values moved to the host at once, with ``step``."""
        parts: list[Any] = []
        params: list[tuple[str, int, bool, bool]] = []
        if not self._params_failed and (self._stepped or self._grads or (self._opts and self._forward_done)):
            try:
                with torch.no_grad():
                    rest = [(n, p) for n, p in self._params if id(p) not in self._stepped and self._names.get(id(p)) == n]
                    cpu_rest = [(n, p) for n, p in rest if p.device.type == "cpu" and p.dtype in (torch.float32,
                                                                                                   torch.float64)]
                    vecs = {id(p): v for (n, p), v in zip(cpu_rest, cpu_param_lists([p for _, p in cpu_rest],
                                                                                     [None] * len(cpu_rest)))}
                    scale = self._grad_scale
                    for n, p in self._params:
                        if self._names.get(id(p)) != n:
                            continue  # a shared Parameter is recorded once
                        e = self._stepped.get(id(p))
                        vec = e[2] if e is not None else vecs.get(id(p))
                        if vec is None:
                            vec = param_vector(p, None, zero=self._zero(p.device), scratch=self._scratch)
                        gv = self._grads.get(id(p))
                        if gv is not None and scale is not None:
                            gv = list(gv) if not isinstance(gv, torch.Tensor) else gv.clone()
                            gv[GRAD["grad_sq"]] = gv[GRAD["grad_sq"]] / (scale * scale)  # the unscaled gradient's
                        parts.append(vec)
                        parts.append(gv if gv is not None else [0.0] * len(GRAD_LAYOUT))
                        params.append((n, p.numel(), e is not None, gv is not None))
            except Exception as err:
                self._params_failed = True
                parts, params = [], []
                self._warn_once("the parameters", err)
        acts = self._acts
        self._hists.finish()  # completes the CPU layer vectors
        parts = [a[4] for a in acts] + ([self._input[1]] if self._input is not None else []) + parts
        self._acts, self._stepped, self._grads = [], {}, {}
        self._detach_grads()
        if not parts:
            self._input = None
            return
        values = _gather(parts)
        pos = 0
        names, decoded = [], []
        for name, kind, numel, units, vec in acts:
            k = len(vec)
            decoded.append(decode_activation(values[pos:pos + k], kind, numel, units))
            names.append(name)
            pos += k
        if self._input is not None:
            numel, vec = self._input
            k = len(vec)
            self.mon.write_stats(KIND_INPUT, step, decode_input(values[pos:pos + k], numel))
            pos += k
            self._input = None
        self._update_meta()
        if decoded:
            self.mon.write_stats(KIND_ACTS, step, dict(zip(names, decoded)))
            self._report_no_activation(step)
        if params:
            pstats = []
            for name, numel, has_upd, has_grad in params:
                pstats.append(decode_param(values[pos:pos + len(PARAM_LAYOUT) + len(GRAD_LAYOUT)], numel, has_upd, has_grad))
                pos += len(PARAM_LAYOUT) + len(GRAD_LAYOUT)
            self.mon.write_stats(KIND_PARAMS, step, {p[0]: st for p, st in zip(params, pstats)})

    def _update_meta(self) -> None:
        if len(self._layer_info) != self._meta_layers_written:
            self._meta_layers_written = len(self._layer_info)
            self.mon.set_layers(list(self._layer_info.values()))

    # -- scalars ---------------------------------------------------------------------------

    def _end_iteration(self, step: int) -> dict[str, Any]:
        """Called by ``Monitor.log``: the iteration ends; its records are written with ``step``.

        Returns the scalars this watch adds to the record (learning rates, skipped steps).
        """
        extra: dict[str, Any] = {}
        for lrs in self._lr.values():  # the rates used by the latest step() of each optimizer
            extra.update(lrs)
        if self.removed:
            return extra
        step = int(step)
        self._ends = "log"
        if step == self._last_log:
            return extra  # a second record of the same step (validation metrics): the same iteration
        self._last_log = step
        skipped = self._opts and self._ever_stepped and self._steps_since_log == 0
        self._steps_since_log = 0
        if skipped:
            extra["skipped_step"] = 1.0
            if not self._skip_reported:
                self._skip_reported = True
                from core.schema import Finding

                self.mon.finding(Finding(
                    rule="skipped_step", severity="info", step=step, layers=(),
                    message=(f"No optimizer step at step {step} (and at every step with skipped_step = 1): a "
                             f"GradScaler skips the update when the gradients hold inf/NaN."),
                    fix="A few skipped steps while the loss scale settles are normal; many mean diverging gradients."))
        try:
            if self._due:
                if skipped and self.scaler is not None:
                    self._grads = {}  # the scaler discarded these (scaled) gradients: inf/NaN by design
                self._flush(step)
        except Exception as err:
            self._failed = True
            self._warn_once("this model", err)
        self.step = step + 1
        self._begin_iteration()
        return extra

    def on_scalars(self, step: int, scalars: Any) -> dict[str, Any] | None:
        """Called by ``Monitor.log``: ends the iteration, adds the learning rates; defers accelerator tensors.

        Returns the scalars to write now, or ``None`` when the record waits for the device.
        """
        due = self._due and step == self.step
        self.drain(block=False)
        out = dict(scalars)
        for k, v in self._end_iteration(step).items():
            out.setdefault(k, v)
        dev_keys = []
        for k, v in out.items():
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                if self.defer_scalars or (self.defer_scalars is None and v.device.type == "cuda"):
                    dev_keys.append(k)
                elif v.device.type == "cpu":
                    out[k] = float(v.detach())  # a CPU value is checked at once
        if not dev_keys:
            return out
        if due and self.defer_scalars is None:
            self.drain(block=True)  # a logged step reads the device anyway
            return out
        plain = {k: v for k, v in out.items() if k not in dev_keys}
        vals = torch.stack([out[k].detach().reshape(()).to(torch.float64) for k in dev_keys])
        event = None
        if vals.device.type == "cuda":
            host = torch.empty(vals.shape, dtype=vals.dtype, pin_memory=True)
            host.copy_(vals, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host = vals.cpu()
        self._pending.append(_Pending(int(step), plain, dev_keys, host, event))
        if len(self._pending) > 1000:
            self.drain(block=True)
        return None

    def drain(self, block: bool = False) -> None:
        """Write the deferred scalars records whose values have arrived (all of them with ``block``).

        Raises:
            TrainingDivergedError: with ``on_nan="raise"``, when one of them holds a NaN/Inf loss.
        """
        while self._pending and (block or self._pending[0].ready()):
            p = self._pending.popleft()
            self.mon.write_scalars(p.step, p.values())


def watch_model(monitor: Any, model: nn.Module, optimizer: Any = None, **kwargs: Any) -> TorchWatch:
    """Attach a :class:`TorchWatch` to ``monitor`` (what ``Monitor.watch`` calls).

    Watching a model this Monitor watches already adds the optimizer(s) to that watch.
    """
    for w in monitor.adapters:
        if isinstance(w, TorchWatch) and not w.removed and _unwrap(model)[0] is w.model:
            for o in ([] if optimizer is None else optimizer if isinstance(optimizer, (list, tuple)) else [optimizer]):
                w.add_optimizer(o)
            return w
    w = TorchWatch(model, optimizer, **kwargs)
    monitor.attach(w)
    return w
