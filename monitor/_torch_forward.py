"""The forward side of the PyTorch adapter: which modules are layers, and their outputs on logged steps.

Forward hooks on the watched modules (attached for logged steps only), activation functions
seen through a ``TorchFunctionMode`` during a logged forward, the model's input, and the eager
pass that gives a compiled model's layer statistics. ``ForwardSide`` is a part of
``monitor._torch.TorchWatch`` and works on its state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from core.schema import RELU_FAMILY, SATURATING, LayerInfo

from ._torch_stats import OneThread, activation_vector, input_vector, one_thread

if TYPE_CHECKING:
    from ._torch import TorchWatch

log = logging.getLogger("monitor._torch")  # one logger for the whole adapter

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


def unit_rule(module: nn.Module, kind: str) -> str:
    if isinstance(module, (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)):
        return _CHANNELS
    if kind in RELU_FAMILY or kind in SATURATING or kind == "identity":
        return _FOLLOW
    return _LAST


def sequence_kind(module: nn.Module) -> str | None:
    """The kind of the modules whose output is a tuple: the RNN family and attention."""
    if isinstance(module, nn.RNN):
        return "relu" if getattr(module, "nonlinearity", "tanh") == "relu" else "tanh"
    if isinstance(module, (nn.LSTM, nn.GRU)):
        return "tanh"  # h = o * tanh(c) (LSTM), a tanh/state mix (GRU): bounded by 1, saturates at +-1
    if isinstance(module, nn.MultiheadAttention):
        return "linear"  # the output projection's output
    return None


def batch_first(module: nn.Module) -> bool | None:
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


# torch's own modules whose forward calls no activation function (so none is named after them).
_NO_ACTIVATION_CALLS: tuple[type, ...] = (
    nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm,
    nn.RMSNorm, nn.Embedding, nn.Flatten, nn.Unflatten, nn.Identity, nn.modules.dropout._DropoutNd,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


def _calls_no_activation(module: nn.Module) -> bool:
    """Whether ``module`` is one of torch's own modules that call no activation (not a subclass
    defined elsewhere, nor one whose ``forward`` was replaced on the instance)."""
    return (isinstance(module, _NO_ACTIVATION_CALLS) and type(module).__module__.startswith("torch.nn.modules")
            and "forward" not in module.__dict__)


class Layer:
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


class ActivationMode(TorchFunctionMode):
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


class ForwardSide:
    """Forward hooks, functional activations and the input of a :class:`~monitor._torch.TorchWatch`."""

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
        # The module stack names the functional activations after their caller: modules whose
        # own forward calls none need no place on it (two hooks fewer each, per logged step).
        callers = [mod for mod in self._mod_names if not _calls_no_activation(mod)] if self.functional else []
        for mod in callers:
            hs.append(mod.register_forward_pre_hook(self._push))
        for mod, lay in self._layers.items():
            if not lay.failed:
                hs.append(mod.register_forward_hook(self._make_hook(lay)))
        for mod in callers:
            hs.append(mod.register_forward_hook(self._pop))
        self._fwd_handles = hs

    def _detach_forward(self) -> None:
        for h in self._fwd_handles:
            h.remove()
        self._fwd_handles = []
        self._exit_mode()

    def _exit_mode(self) -> None:
        if self._mode is not None:
            mode, self._mode = self._mode, None
            try:
                mode.__exit__(None, None, None)
            except Exception as err:
                self._warn_once("functional activations", err)

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
            self._mode = ActivationMode(self)
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
                    self._mode = ActivationMode(self)
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
        # The statistics' own ops do not go through the activation mode (nor any __torch_function__),
        # and record no autograd graph: they read a detached tensor (activation_vector's as_float).
        with torch._C.DisableTorchFunction():
            saved = one_thread(out.device, out.numel())
            try:
                vec = activation_vector(out, kind, bins=self.mon.bins, hist_sample=self.hist_sample,
                                        zero=self._zero(out.device), scratch=self._scratch,
                                        unit_axis=unit_axis, batch_axis=batch_axis, hists=self._hists)
            finally:
                if saved:
                    torch.set_num_threads(saved)
        units = out.shape[unit_axis] if out.ndim >= 2 else 1
        self._acts.append((name, kind, out.numel(), units, vec))
        if name not in self._layer_info:
            own: tuple[str, ...] = ()
            if module is not None:
                own = tuple(self._names.get(id(p), n) for n, p in module.named_parameters(recurse=False))
            shape = tuple(d for i, d in enumerate(out.shape) if i != batch_axis) if out.ndim else ()
            self._layer_info[name] = LayerInfo(name, kind, shape, own, type_name)

    def _make_hook(self, lay: Layer) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not self._recording or lay.failed:
                return
            # Nothing here goes through the activation mode: each tensor attribute read would
            # be one more Python call into it (a hundred per forward of a small CNN).
            with torch._C.DisableTorchFunction():
                out = _first_tensor(output)
                if out is None or not out.is_floating_point():
                    return
                try:
                    self._record(lay.name, lay.kind, module, args[0] if args else None, out, lay.units,
                                 lay.seq_first, lay.type)
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
