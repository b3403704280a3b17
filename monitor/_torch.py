"""PyTorch adapter: ``Monitor.watch(model, optimizer)`` records every layer with hooks.

The only module of the project that imports torch. Usage (three lines in a training loop)::

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
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import optimizer as _optim
from torch.overrides import TorchFunctionMode

from core.schema import PARAM_FIELDS, RELU_FAMILY, SATURATING, LayerInfo

# The statistic kernels, re-exported: ``monitor._torch`` is the adapter's one import.
from ._torch_stats import (  # noqa: F401
    GRAD, GRAD_LAYOUT, HIST_SAMPLE, PARAM, PARAM_LAYOUT, OneThread, Scratch, activation_vector,
    as_float, cpu_grad_lists, cpu_param_lists, decode_activation, decode_input, decode_param, grad_vector,
    hist_sample_of, input_vector, param_vector, plain_sgd_lrs, sq_and_bad,
)

log = logging.getLogger(__name__)

__all__ = ["TorchWatch", "HIST_SAMPLE", "Scratch", "layer_kind", "activation_vector", "decode_activation",
           "input_vector", "decode_input", "param_vector", "grad_vector", "cpu_param_lists", "cpu_grad_lists",
           "decode_param", "hist_sample_of", "watch_model"]

# Weight copies taken before optimizer.step() (for the update) are kept between logged steps
# when all of them together take at most this many bytes; above it they are made afresh on
# each logged step, so a large model does not carry a second copy of its weights.
KEEP_SNAPSHOT_BYTES = 256 * 2**20

# Module classes and their layer kind (core.schema.LAYER_KINDS). Subclasses first.
_KIND_TABLE: tuple[tuple[type, str], ...] = (
    (nn.ReLU6, "relu6"), (nn.ReLU, "relu"), (nn.LeakyReLU, "leaky_relu"), (nn.PReLU, "prelu"),
    (nn.RReLU, "rrelu"), (nn.ELU, "elu"), (nn.SELU, "selu"), (nn.CELU, "celu"), (nn.GELU, "gelu"),
    (nn.SiLU, "silu"), (nn.Mish, "mish"), (nn.Softplus, "softplus"), (nn.Hardswish, "hardswish"),
    (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"), (nn.Hardtanh, "hardtanh"), (nn.Hardsigmoid, "hardsigmoid"),
    (nn.Softsign, "softsign"),
    (nn.Linear, "linear"), (nn.Bilinear, "linear"),
    (nn.modules.conv._ConvNd, "conv"),
    (nn.modules.batchnorm._NormBase, "batchnorm"),
    (nn.LayerNorm, "layernorm"), (nn.GroupNorm, "layernorm"), (nn.RMSNorm, "layernorm"),
    (nn.Embedding, "embedding"),
)



def layer_kind(module: nn.Module) -> str | None:
    """The layer kind recorded for ``module``, or ``None`` when it is not watched."""
    for cls, kind in _KIND_TABLE:
        if isinstance(module, cls):
            return kind
    return None



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


def _functional_kinds() -> dict[Any, str]:
    """Activation functions recorded when called inside a watched model's forward, and their kinds."""
    table: dict[Any, str] = {}
    for names, kind in (
        (("relu", "relu_"), "relu"), (("relu6",), "relu6"), (("leaky_relu", "leaky_relu_"), "leaky_relu"),
        (("prelu",), "prelu"), (("rrelu", "rrelu_"), "rrelu"), (("elu", "elu_"), "elu"), (("selu", "selu_"), "selu"),
        (("celu", "celu_"), "celu"), (("gelu",), "gelu"), (("silu",), "silu"), (("mish",), "mish"),
        (("softplus",), "softplus"), (("hardswish",), "hardswish"), (("tanh", "tanh_"), "tanh"),
        (("sigmoid", "sigmoid_"), "sigmoid"), (("hardtanh", "hardtanh_"), "hardtanh"),
        (("hardsigmoid",), "hardsigmoid"), (("softsign",), "softsign"),
    ):
        for n in names:
            for owner in (F, torch, torch.Tensor, torch.special):
                fn = getattr(owner, n, None)
                if fn is not None:
                    table.setdefault(fn, kind)
    return table


_FUNCTIONAL = _functional_kinds()
# How a module's output is laid out: units along axis 1 (channels first), along the last axis
# (features of (N, ..., D)), or like the tensor it was given (activations).
_CHANNELS, _LAST, _FOLLOW = "channels", "last", "follow"


def _unit_rule(module: nn.Module, kind: str) -> str:
    if isinstance(module, (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)):
        return _CHANNELS
    if kind in RELU_FAMILY or kind in SATURATING or kind == "identity":
        return _FOLLOW
    return _LAST


def _sequence_kind(module: nn.Module) -> str | None:
    """The kind of the modules whose output is a tuple: the RNN family and attention."""
    if isinstance(module, nn.RNN):
        return "relu" if getattr(module, "nonlinearity", "tanh") == "relu" else "tanh"
    if isinstance(module, (nn.LSTM, nn.GRU)):
        return "tanh"  # h = o * tanh(c) (LSTM), a tanh/state mix (GRU): bounded by 1, saturates at +-1
    if isinstance(module, nn.MultiheadAttention):
        return "linear"  # the output projection's output
    return None


def _batch_first(module: nn.Module) -> bool | None:
    bf = getattr(module, "batch_first", None)
    if isinstance(bf, bool):
        return bf
    attn = getattr(module, "self_attn", None)  # Transformer{Encoder,Decoder}Layer keep it in their attention
    bf = getattr(attn, "batch_first", None)
    return bf if isinstance(bf, bool) else None


def _first_tensor(out: Any) -> torch.Tensor | None:
    """The tensor a layer's output stands for: itself, or the first element of a tuple (RNN, attention)."""
    for _ in range(3):  # (output, h_n), PackedSequence(data, ...), ((out, w), ...)
        if isinstance(out, torch.Tensor):
            return out
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        else:
            return None
    return out if isinstance(out, torch.Tensor) else None


class _Layer:
    """One watched module: its name, kind, class name, output layout and whether monitoring it still works."""

    __slots__ = ("module", "name", "kind", "type", "units", "seq_first", "failed")

    def __init__(self, module: nn.Module, name: str, kind: str, units: str, seq_first: bool) -> None:
        self.module = module
        self.name = name
        self.kind = kind
        self.type = type(module).__name__
        self.units = units
        self.seq_first = seq_first  # inside a batch_first=False module: (T, N, ...) outputs
        self.failed = False


class _Opt:
    """A watched optimizer: its index (names its lr series), weak reference and parameters."""

    __slots__ = ("index", "ref", "ids")

    def __init__(self, index: int, optimizer: torch.optim.Optimizer) -> None:
        self.index = index
        self.ref = weakref.ref(optimizer)
        self.ids = {id(p) for g in optimizer.param_groups for p in g["params"]}

    def lr_key(self, group: int) -> str:
        base = "lr" if self.index == 0 else f"lr/opt{self.index}"
        return base if group == 0 else f"{base}/{group}"


class _ActMode(TorchFunctionMode):
    """Records the outputs of activation functions (``F.relu``, ``torch.tanh``, ...) during a logged forward."""

    def __init__(self, watch: "TorchWatch") -> None:
        super().__init__()
        self.watch = watch

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        kind = _FUNCTIONAL.get(func)
        if kind is not None:
            try:
                self.watch._functional_output(func, kind, args, out)
            except Exception as err:  # monitoring never stops training
                self.watch._warn_once("functional activations", err)
        return out


class _PreStep:
    """What the pass before ``optimizer.step()`` took of one parameter, for the pass after it."""

    __slots__ = ("name", "param", "snapshot", "lr_plain", "step_sq", "w_before_sq")

    def __init__(self, name: str, param: torch.Tensor, snapshot: torch.Tensor | None, lr_plain: float | None,
                 step_sq: Any, w_before_sq: Any) -> None:
        self.name, self.param, self.snapshot = name, param, snapshot  # snapshot: weights before (None: plain SGD)
        self.lr_plain, self.step_sq = lr_plain, step_sq  # plain SGD: its lr and the gradient's sum of squares
        self.w_before_sq = w_before_sq  # plain SGD: the weights' sum of squares before the step


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


class TorchWatch:
    """Hooks on a model and its optimizers that feed a :class:`~monitor.Monitor`.

    Made by :meth:`Monitor.watch`; removed by :meth:`remove` (safe to call twice), by
    leaving a ``with`` block, or when the Monitor closes.

    Steps. An iteration (forward, backward, the ``step()`` of each optimizer) ends with
    ``mon.log(step, ...)``, and every record of that iteration carries that ``step``. The
    next iteration is numbered ``step + 1`` to decide whether it is logged. Until the first
    ``mon.log`` call (and in a loop that never calls it), iterations are counted by the
    ``step()`` calls of the first optimizer, from ``start_step``.

    Args:
        monitor: the Monitor that owns the run.
        model: the model (a ``torch.compile``'d, DataParallel or DDP model is unwrapped for
            names; the layers recorded are those of the module inside).
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

    def __init__(self, monitor: Any, model: nn.Module, optimizer: Any = None, *,
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
        self.mon = monitor
        self.root = model
        self.model, self.compiled = _unwrap(model)
        self.step = start_step
        self.first_step = start_step
        self.log_input = log_input
        self.hist_sample = hist_sample
        self.defer_scalars = defer_scalars
        self.functional = functional
        self.scaler = scaler
        self.removed = False

        self._layers: dict[nn.Module, _Layer] = {}
        self._mod_names: dict[nn.Module, str] = {}
        skip = {id(m.out_proj) for m in self.model.modules() if isinstance(m, nn.MultiheadAttention)}
        seq_first: dict[str, bool] = {}
        for name, mod in self.model.named_modules():
            self._mod_names[mod] = name
            bf = _batch_first(mod)
            parent = name.rpartition(".")[0] if name else None
            inherited = seq_first.get(parent, False) if parent is not None else False
            seq_first[name] = (not bf) if bf is not None else inherited
            if id(mod) in skip:  # MultiheadAttention applies its out_proj itself: its output is the attention's
                continue
            kind = (user_kinds.get(name) or user_kinds.get(type(mod)) or user_kinds.get(type(mod).__name__)
                    or _sequence_kind(mod) or layer_kind(mod))
            if kind is not None:
                self._layers[mod] = _Layer(mod, name or type(mod).__name__.lower(), kind, _unit_rule(mod, kind),
                                           seq_first[name])
        self._names: dict[int, str] = {}
        for name, p in self.model.named_parameters():  # deduplicated: a shared Parameter keeps its first name
            self._names.setdefault(id(p), name)
        self._params: list[tuple[str, torch.Tensor]] = [(n, p) for n, p in self.model.named_parameters()]
        self._param_ids = {id(p) for _, p in self._params}

        self._opts: dict[int, _Opt] = {}  # id(optimizer) -> watched optimizer
        self._not_ours: weakref.WeakSet[Any] = weakref.WeakSet()  # optimizers seen that hold none of its parameters
        for o in opts:
            self.add_optimizer(o)
        self._opt_handles = [_optim.register_optimizer_step_pre_hook(self._pre_step),
                             _optim.register_optimizer_step_post_hook(self._post_step)]

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
        self._mode: _ActMode | None = None
        self._acts: list[tuple[str, str, int, int, Any]] = []
        self._input: tuple[int, Any] | None = None
        self._grads: dict[int, Any] = {}  # id(param) -> grad stats taken when backward accumulated them
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
        self._snaps: dict[int, torch.Tensor] = {}
        opt_bytes = sum(p.numel() * p.element_size() for _, p in self._params)
        self._keep_snaps = opt_bytes <= KEEP_SNAPSHOT_BYTES

        self.mon.set_meta(framework="torch", optimizer=", ".join(type(o).__name__ for o in opts) or None)
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

    def add_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Watch one more optimizer (done by itself for optimizers stepping the model's parameters)."""
        if id(optimizer) in self._opts and self._opts[id(optimizer)].ref() is optimizer:
            return
        # An optimizer that replaces a discarded one (re-created to unfreeze layers) takes its lr series.
        dead = sorted(w.index for k, w in self._opts.items() if w.ref() is None)
        for k in [k for k, w in self._opts.items() if w.ref() is None]:
            del self._opts[k]
        used = {w.index for w in self._opts.values()}
        index = dead[0] if dead else next(i for i in range(len(used) + 1) if i not in used)
        self._opts[id(optimizer)] = _Opt(index, optimizer)
        self._not_ours.discard(optimizer)
        for gi, group in enumerate(optimizer.param_groups):
            for pi, p in enumerate(group["params"]):
                if id(p) not in self._param_ids:  # a tensor outside the model: named by its group
                    self._param_ids.add(id(p))
                    self._names.setdefault(id(p), f"param_group{gi}.{pi}" if index == 0 else
                                           f"opt{index}.param_group{gi}.{pi}")
                    self._params.append((self._names[id(p)], p))

    def remove(self) -> None:
        """Remove every hook and write what is still on its way. Safe to call twice."""
        if self.removed:
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
            mon_filters = getattr(self.mon, "_scalar_filters", None)
            if isinstance(mon_filters, list) and self._filter_scalars in mon_filters:
                mon_filters.remove(self._filter_scalars)

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

    def _is_due(self, step: int) -> bool:
        return step == self.first_step or step % self.mon.every == 0

    def _rec_step(self) -> int:
        return self.step

    def _begin_iteration(self) -> None:
        self._due = not self._failed and not self.removed and self._is_due(self.step)
        self._forward_done = False
        self._acts, self._input, self._grads, self._stepped, self._pre = [], None, {}, {}, {}
        self._grad_scale = None
        self._detach_forward()
        self._detach_grads()
        if self._due:
            self._attach_root()
        else:
            self._detach_root()

    def _attach_root(self) -> None:
        if self._root_handles:
            return
        self._root_handles = [self.root.register_forward_pre_hook(self._root_pre, with_kwargs=True),
                              self.root.register_forward_hook(self._root_post, with_kwargs=True)]

    def _detach_root(self) -> None:
        for h in self._root_handles:
            h.remove()
        self._root_handles = []

    def _attach_forward(self) -> None:
        if self._fwd_handles:
            return
        hs = []
        if self.functional:  # the module stack names the functional activations after their caller
            for mod in self._mod_names:
                hs.append(mod.register_forward_pre_hook(self._push))
        for mod, lay in self._layers.items():
            if not lay.failed:
                hs.append(mod.register_forward_hook(self._make_hook(lay)))
        if self.functional:
            for mod in self._mod_names:
                hs.append(mod.register_forward_hook(self._pop))
        self._fwd_handles = hs

    def _detach_forward(self) -> None:
        for h in self._fwd_handles:
            h.remove()
        self._fwd_handles = []
        self._exit_mode()

    def _attach_grads(self) -> None:
        if self._grad_handles:
            return
        hs = []
        seen: set[int] = set()
        for _, p in self._params:
            if p.requires_grad and id(p) not in seen and hasattr(p, "register_post_accumulate_grad_hook"):
                seen.add(id(p))
                hs.append(p.register_post_accumulate_grad_hook(self._grad_hook))
        self._grad_handles = hs

    def _detach_grads(self) -> None:
        for h in self._grad_handles:
            h.remove()
        self._grad_handles = []

    def _exit_mode(self) -> None:
        if self._mode is not None:
            mode, self._mode = self._mode, None
            try:
                mode.__exit__(None, None, None)
            except Exception as err:
                self._warn_once("functional activations", err)

    def _warn_once(self, what: str, err: BaseException) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("Babysitter: monitoring of %s stopped after an error: %s: %s",
                        what, type(err).__name__, err, exc_info=err)

    def _snapshot(self, p: torch.Tensor) -> torch.Tensor:
        """A copy of ``p`` before the update (into a kept buffer when the model is small enough)."""
        if not self._keep_snaps:
            return p.detach().clone()
        buf = self._snaps.get(id(p))
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = self._snaps[id(p)] = torch.empty(p.shape, dtype=p.dtype, device=p.device)
        return buf.copy_(p.detach())

    def _zero(self, device: torch.device) -> torch.Tensor:
        z = self._zeros.get(device)
        if z is None:
            z = self._zeros[device] = torch.zeros((), dtype=torch.float64, device=device)
        return z

    # -- forward ---------------------------------------------------------------------------

    def _root_pre(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if torch.compiler.is_compiling():  # traced by torch.compile (compiled after watch): record nothing
            self._traced = True
            return
        # Record only the first forward of a logged step; with an optimizer, only in training
        # mode (not validation, not the later micro-batches of gradient accumulation).
        self._recording = (self._due and not self._forward_done and not self._failed
                           and (module.training or not self._opts))
        if not self._recording:
            return
        self._calls, self._stack, self._chan = {}, [], {}
        self._attach_grads()
        if self.log_input:
            # A batch has a batch axis: a 0-d tensor is a count or a scale (the Hugging Face
            # Trainer passes num_items_in_batch to the model), not an input to judge.
            x = next((a for a in (*args, *kwargs.values())
                      if isinstance(a, torch.Tensor) and a.is_floating_point() and a.ndim > 0), None)
            if x is not None:  # integer token ids are no input to judge for centring
                try:
                    with torch.no_grad(), OneThread(x.device, x.numel()):
                        self._input = (x.numel(), input_vector(x))
                except Exception as err:  # monitoring never stops training
                    self.log_input = False
                    self._warn_once("the model input", err)
        if self.compiled:
            return  # recorded by an eager forward after the compiled one (_root_post)
        self._attach_forward()
        if self.functional:
            self._mode = _ActMode(self)
            self._mode.__enter__()

    def _root_post(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if torch.compiler.is_compiling():
            return
        if not self._recording:
            return
        self._recording = False
        self._forward_done = True
        self._exit_mode()
        try:
            if self.compiled:
                self._eager_forward(args, kwargs)
        finally:
            self._detach_forward()
            self._chan, self._stack = {}, []

    def _eager_forward(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """The layer statistics of a compiled model: the same batch again through the module inside, eagerly.

        The compiled graph trains as it would without the monitor (hooks inside it would be
        traced and recompile it); this forward runs without gradients, on a copy of the random
        number generators' state and with the buffers (BatchNorm running statistics) restored,
        so it changes nothing the training sees.
        """
        buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        devices = sorted({p.device.index for p in self.model.parameters() if p.device.type == "cuda"} - {None})
        self._recording = True
        self._attach_forward()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices), torch.compiler.set_stance("force_eager"):
                if self.functional:
                    self._mode = _ActMode(self)
                    self._mode.__enter__()
                self.model(*args, **kwargs)
        finally:
            self._exit_mode()
            self._recording = False
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)

    def _push(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._recording:
            self._stack.append(module)

    def _pop(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if self._recording and self._stack and self._stack[-1] is module:
            self._stack.pop()

    def _layout(self, rule: str, inp: Any, out: torch.Tensor, seq_first: bool) -> tuple[int, int]:
        """``(unit axis, batch axis)`` of one output."""
        if out.ndim <= 2:
            return 1, 0
        batch = 1 if seq_first and out.ndim == 3 else 0
        if rule == _CHANNELS:
            return 1, 0
        if rule == _FOLLOW:
            src = inp if isinstance(inp, torch.Tensor) else None
            if (src is not None and id(src) in self._chan) or (src is None or src.ndim >= 4) and out.ndim >= 4:
                return 1, 0
        return out.ndim - 1, batch

    def _record(self, name: str, kind: str, module: nn.Module | None, inp: Any, out: torch.Tensor, rule: str,
                seq_first: bool, type_name: str) -> None:
        # A module called twice in one forward (one ReLU object reused) gives two layers.
        k = self._calls.get(name, 0) + 1
        self._calls[name] = k
        if k > 1:
            name = f"{name}#{k}"
        unit_axis, batch_axis = self._layout(rule, inp, out, seq_first)
        if unit_axis == 1 and out.ndim >= 3:
            self._chan[id(out)] = out  # an activation of this output keeps its channels
        # The statistics' own ops do not go through the activation mode (nor any __torch_function__).
        with torch.no_grad(), torch._C.DisableTorchFunction(), OneThread(out.device, out.numel()):
            vec = activation_vector(out, kind, bins=self.mon.bins, hist_sample=self.hist_sample,
                                    zero=self._zero(out.device), scratch=self._scratch,
                                    unit_axis=unit_axis, batch_axis=batch_axis)
        units = out.shape[unit_axis] if out.ndim >= 2 else 1
        self._acts.append((name, kind, out.numel(), units, vec))
        if name not in self._layer_info:
            own: tuple[str, ...] = ()
            if module is not None:
                own = tuple(self._names.get(id(p), n) for n, p in module.named_parameters(recurse=False))
            shape = tuple(d for i, d in enumerate(out.shape) if i != batch_axis) if out.ndim else ()
            self._layer_info[name] = LayerInfo(name, kind, shape, own, type_name)

    def _make_hook(self, lay: _Layer) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not self._recording or lay.failed:
                return
            out = _first_tensor(output)
            if out is None or not (out.is_floating_point() or out.is_complex()) or out.is_complex():
                return
            try:
                self._record(lay.name, lay.kind, module, args[0] if args else None, out, lay.units, lay.seq_first,
                             lay.type)
            except Exception as err:
                lay.failed = True
                self._warn_once(f"layer {lay.name!r}", err)
        return hook

    def _functional_output(self, func: Any, kind: str, args: tuple[Any, ...], out: Any) -> None:
        if not self._recording or not isinstance(out, torch.Tensor) or not out.is_floating_point():
            return
        caller = self._stack[-1] if self._stack else self.model
        lay = self._layers.get(caller)
        if lay is not None and lay.kind not in ("linear", "conv", "other", "embedding"):
            return  # an activation module's own function call: recorded as the module
        fname = getattr(func, "__name__", "act").rstrip("_")
        base = self._mod_names.get(caller, "")
        name = f"{base}.{fname}()" if base else f"{fname}()"
        seq_first = lay.seq_first if lay is not None else False
        self._record(name, kind, None, args[0] if args else None, out, _FOLLOW, seq_first, f"{fname}()")

    # -- backward --------------------------------------------------------------------------

    def _grad_hook(self, p: torch.Tensor) -> None:
        """Gradient statistics as backward leaves them: before clipping (and unscaling) touches them."""
        g = p.grad
        if g is None or not self._due:
            return
        try:
            with torch.no_grad():
                if self.scaler is not None and self._grad_scale is None:
                    # The scale the loss was multiplied by (update() changes it before the step ends).
                    scale = getattr(self.scaler, "_scale", None)
                    if g.device.type == "cpu" or not isinstance(scale, torch.Tensor):
                        self._grad_scale = float(self.scaler.get_scale())
                    else:  # a copy on the device: reading it would wait for the device
                        self._grad_scale = scale.detach().to(torch.float64).reshape(()).clone()
                if g.device.type == "cpu" and not g.is_sparse and g.dtype in (torch.float32, torch.float64):
                    self._grads[id(p)] = cpu_grad_lists([g])[0]
                else:
                    self._grads[id(p)] = grad_vector(g, zero=self._zero(g.device))
        except Exception as err:
            self._params_failed = True
            self._warn_once("the gradients", err)

    # -- optimizer -------------------------------------------------------------------------

    def _watched(self, optimizer: torch.optim.Optimizer) -> _Opt | None:
        w = self._opts.get(id(optimizer))
        if w is not None and w.ref() is optimizer:
            return w
        if optimizer in self._not_ours:
            return None
        if any(id(p) in self._param_ids and id(p) in self._names
               for g in optimizer.param_groups for p in g["params"]):
            self.add_optimizer(optimizer)  # created after watch(), e.g. re-created to unfreeze layers
            return self._opts[id(optimizer)]
        self._not_ours.add(optimizer)
        return None

    def _capture_lr(self, w: _Opt, optimizer: torch.optim.Optimizer) -> None:
        lrs: dict[str, float] = {}
        for i, group in enumerate(optimizer.param_groups):
            lr = group.get("lr")
            if isinstance(lr, torch.Tensor):
                if lr.device.type != "cpu":
                    continue  # reading it would wait for the device
                lr = float(lr)
            if isinstance(lr, (int, float)):
                lrs[w.lr_key(i)] = float(lr)
        self._lr[w.index] = lrs

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.removed:
            return
        w = self._watched(optimizer)
        if w is None:
            return
        if self._ends == "?" and self._steps_since_log and self._is_first(w):
            # A second iteration began without mon.log: count iterations by this optimizer's steps.
            self._ends = "count"
            self._steps_since_log = 0
            self._next_counted()
        try:
            self._capture_lr(w, optimizer)
        except Exception as err:
            self._warn_once("the learning rate", err)
        if not self._due or self._params_failed:
            return
        pre: list[_PreStep] = []
        try:
            plain = plain_sgd_lrs(optimizer)
            with torch.no_grad():  # large memory-bound passes: all threads
                cpu_w: list[int] = []
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        g = p.grad
                        if g is None or id(p) not in self._names:
                            continue
                        lr_plain = plain.get(id(p)) if not g.is_sparse else None
                        snap = self._snapshot(p) if lr_plain is None else None
                        step_sq: Any = None
                        wb: Any = None
                        if lr_plain is not None:
                            # Plain SGD moves the weight by exactly -lr * (the gradient now, after clipping).
                            step_sq = (cpu_grad_lists([g])[0][GRAD["grad_sq"]] if g.device.type == "cpu" and
                                       g.dtype in (torch.float32, torch.float64)
                                       else sq_and_bad(as_float(g).reshape(-1), None, self._zero(g.device))[0])  # its sum of squares
                            if p.device.type == "cpu":
                                cpu_w.append(len(pre))
                            else:
                                wb = sq_and_bad(as_float(p).reshape(-1), None, self._zero(p.device))[0]
                        if id(p) not in self._grads:  # gradients set without backward: take them now
                            self._grads[id(p)] = (cpu_grad_lists([g])[0] if g.device.type == "cpu" and not g.is_sparse
                                                  and g.dtype in (torch.float32, torch.float64)
                                                  else grad_vector(g, zero=self._zero(g.device)))
                        pre.append(_PreStep(self._names[id(p)], p, snap, lr_plain, step_sq, wb))
                if cpu_w:
                    for i, lst in zip(cpu_w, cpu_param_lists([pre[i].param for i in cpu_w], [None] * len(cpu_w))):
                        pre[i].w_before_sq = lst[PARAM["w_sq"]]
            self._pre[id(optimizer)] = pre
        except Exception as err:
            self._params_failed = True
            self._warn_once("the parameters", err)

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.removed:
            return
        w = self._watched(optimizer)
        if w is None:
            return
        self._ever_stepped = True
        self._steps_since_log += 1
        try:
            pre = self._pre.pop(id(optimizer), None)
            if self._due and pre and not self._params_failed:
                self._param_stats(pre)
        except Exception as err:
            self._params_failed = True
            self._warn_once("the parameters", err)
        if self._ends == "count" and self._is_first(w):
            self._next_counted()

    def _is_first(self, w: _Opt) -> bool:
        return w.index == min(x.index for x in self._opts.values())

    def _next_counted(self) -> None:
        """End the iteration in a loop without mon.log: written with the counted step number."""
        try:
            if self._due:
                self._flush(self.step)
        except Exception as err:
            self._failed = True
            self._warn_once("this model", err)
        self.step += 1
        self._begin_iteration()

    def _param_stats(self, pre: list[_PreStep]) -> None:
        """Weight and update statistics of the parameters one optimizer just stepped."""
        with torch.no_grad():
            on_cpu = [i for i, e in enumerate(pre) if e.param.device.type == "cpu" and e.param.dtype in (torch.float32,
                                                                                                       torch.float64)]
            cpu_vecs = dict(zip(on_cpu, cpu_param_lists([pre[i].param for i in on_cpu], [pre[i].snapshot for i in on_cpu],
                                                        self._scratch)))
            for i, e in enumerate(pre):
                p = e.param
                vec = cpu_vecs.get(i)
                if vec is None:
                    vec = param_vector(p, e.snapshot, zero=self._zero(p.device), scratch=self._scratch)
                if e.lr_plain is not None:
                    # ||-lr * grad||^2; vec is this parameter's own
                    vec[PARAM["upd_sq"]] = e.lr_plain * e.lr_plain * e.step_sq
                    vec[PARAM["w_before_sq"]] = e.w_before_sq
                self._stepped[id(p)] = [e.name, p, vec]

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
            self.mon.write_input(step, decode_input(values[pos:pos + k], numel))
            pos += k
            self._input = None
        self._update_meta()
        if decoded:
            self.mon.write_acts(step, names, {f: [d[f] for d in decoded] for f in decoded[0]})
            self._report_no_activation(step)
        if params:
            pstats = []
            for name, numel, has_upd, has_grad in params:
                pstats.append(decode_param(values[pos:pos + len(PARAM_LAYOUT) + len(GRAD_LAYOUT)], numel, has_upd, has_grad))
                pos += len(PARAM_LAYOUT) + len(GRAD_LAYOUT)
            self.mon.write_params(step, [p[0] for p in params], {f: [s[f] for s in pstats] for f in PARAM_FIELDS})

    def _report_no_activation(self, step: int) -> None:
        """Say once that no layer of the model is an activation the dead/saturation checks know."""
        if self._no_act_reported:
            return
        self._no_act_reported = True
        if any(info.kind in RELU_FAMILY or info.kind in SATURATING for info in self._layer_info.values()):
            return
        from core.schema import Finding

        what = type(self.model).__name__
        msg = (f"No activation function recognised in {what}: its layers get no dead-unit or saturation check. "
               f"Declare custom activation modules with watch(..., kinds={{MyAct: 'relu'}}).")
        log.warning("Babysitter: %s", msg)
        self.mon.finding(Finding(rule="no_activation", severity="info", step=step, layers=(), message=msg,
                                 fix="Pass kinds={ModuleClass: kind} to watch() for custom activation modules."))

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
        if self._traced and "compiled after watch" not in self._warned:
            self._warned.add("compiled after watch")
            log.warning("Babysitter: %s runs through torch.compile after watch(): its layers are not recorded. "
                        "Watch the compiled model instead: mon.watch(torch.compile(model), optimizer)",
                        type(self.model).__name__)
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

    def _filter_scalars(self, step: int, scalars: dict[str, Any]) -> dict[str, Any] | None:
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
            self.mon._log_values(p.step, p.values())


def watch_model(monitor: Any, model: nn.Module, optimizer: Any = None, **kwargs: Any) -> TorchWatch:
    """Attach a :class:`TorchWatch` to ``monitor`` (what ``Monitor.watch`` calls).

    Watching a model this Monitor watches already adds the optimizer(s) to that watch.
    """
    for w in getattr(monitor, "_watches", []):
        if isinstance(w, TorchWatch) and not w.removed and _unwrap(model)[0] is w.model:
            for o in ([] if optimizer is None else optimizer if isinstance(optimizer, (list, tuple)) else [optimizer]):
                w.add_optimizer(o)
            return w
    w = TorchWatch(monitor, model, optimizer, **kwargs)
    filters = getattr(monitor, "_scalar_filters", None)
    if isinstance(filters, list):
        filters.append(w._filter_scalars)
    return w
