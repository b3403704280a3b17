"""The optimizer side of the PyTorch adapter: gradients, learning rates and weight updates.

Gradient hooks (logged steps only, so the norms are taken before clipping), torch's global
optimizer step hooks (the watched optimizers and those created later for the model's
parameters), learning-rate capture, and the passes before and after ``step()`` that give the
weight and update statistics. ``OptimizerSide`` is a part of ``monitor._torch.TorchWatch``.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import torch
from torch.autograd import Variable

from ._torch_param_stats import (
    GRAD, PARAM, cpu_grad_lists, cpu_param_lists, grad_vector, param_vector, plain_sgd_lrs, sq_and_bad,
)
from ._torch_stats import as_float

log = logging.getLogger("monitor._torch")  # one logger for the whole adapter

# Weight copies taken before optimizer.step() (for the update) are kept between logged steps
# when all of them together take at most this many bytes; above it they are made afresh on
# each logged step, so a large model does not carry a second copy of its weights.
KEEP_SNAPSHOT_BYTES = 256 * 2**20
# Plain SGD moves a weight by -lr * (the gradient at step()). When that gradient is still the
# one backward left, the sum of squares taken then is reused instead of reading it again:
# same tensor, same version counter (clipping, in-place edits), and the same values at a
# strided sample (GradScaler's unscale_ and edits through .data bump no version; a
# scaled or clipped gradient changes every non-zero value). A sample without a non-zero
# value cannot tell, and the gradient is read again. Only CPU gradients of at least
# REUSE_GRAD_NUMEL values: on an accelerator comparing would synchronise, and for a small
# tensor the check costs what reading it does.
REUSE_GRAD_NUMEL = 2**16
_SAMPLE = 256


class WatchedOpt:
    """A watched optimizer: its index (names its lr series), weak reference and parameters."""

    __slots__ = ("index", "ref", "ids")

    def __init__(self, index: int, optimizer: torch.optim.Optimizer) -> None:
        self.index = index
        self.ref = weakref.ref(optimizer)
        self.ids = {id(p) for g in optimizer.param_groups for p in g["params"]}

    def lr_key(self, group: int) -> str:
        base = "lr" if self.index == 0 else f"lr/opt{self.index}"
        return base if group == 0 else f"{base}/{group}"


class PreStep:
    """What the pass before ``optimizer.step()`` took of one parameter, for the pass after it."""

    __slots__ = ("name", "param", "snapshot", "lr_plain", "step_sq", "w_before_sq")

    def __init__(self, name: str, param: torch.Tensor, snapshot: torch.Tensor | None, lr_plain: float | None,
                 step_sq: Any, w_before_sq: Any) -> None:
        self.name, self.param, self.snapshot = name, param, snapshot  # snapshot: weights before (None: plain SGD)
        self.lr_plain, self.step_sq = lr_plain, step_sq  # plain SGD: its lr and the gradient's sum of squares
        self.w_before_sq = w_before_sq  # plain SGD: the weights' sum of squares before the step


def _grad_sample(g: torch.Tensor) -> torch.Tensor:
    """A strided sample of a contiguous gradient's values (a copy)."""
    flat = g.detach().reshape(-1)
    return flat[::max(1, flat.numel() // _SAMPLE)][:_SAMPLE].clone()


class OptimizerSide:
    """Gradient and optimizer hooks of a :class:`~monitor._torch.TorchWatch`."""

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
        self._opts[id(optimizer)] = WatchedOpt(index, optimizer)
        self._not_ours.discard(optimizer)
        for gi, group in enumerate(optimizer.param_groups):
            for pi, p in enumerate(group["params"]):
                if id(p) not in self._param_ids:  # a tensor outside the model: named by its group
                    self._param_ids.add(id(p))
                    self._names.setdefault(id(p), f"param_group{gi}.{pi}" if index == 0 else
                                           f"opt{index}.param_group{gi}.{pi}")
                    self._params.append((self._names[id(p)], p))

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

    def _snapshot(self, p: torch.Tensor) -> torch.Tensor:
        """A copy of ``p`` before the update (into a kept buffer when the model is small enough)."""
        if not self._keep_snaps:
            return p.detach().clone()
        buf = self._snaps.get(id(p))
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = self._snaps[id(p)] = torch.empty(p.shape, dtype=p.dtype, device=p.device)
        return buf.copy_(p.detach())

    # -- backward --------------------------------------------------------------------------

    def _grad_hook(self, p: torch.Tensor) -> None:
        """Gradient statistics as backward leaves them: before clipping (and unscaling) touches them.

        The hook only notes the parameter; the statistics of every gradient of one backward
        are taken together when that backward ends (an autograd engine callback, before
        ``backward()`` returns), one batched pass instead of a few small ops per parameter.
        """
        g = p.grad
        if g is None or not self._due:
            return
        try:
            if self.scaler is not None and self._grad_scale is None:
                # The scale the loss was multiplied by (update() changes it before the step ends).
                scale = getattr(self.scaler, "_scale", None)
                if g.device.type == "cpu" or not isinstance(scale, torch.Tensor):
                    self._grad_scale = float(self.scaler.get_scale())
                else:  # a copy on the device: reading it would wait for the device
                    self._grad_scale = scale.detach().to(torch.float64).reshape(()).clone()
            first = not self._grad_queue
            self._grad_queue.append(p)
            if first:
                try:
                    Variable._execution_engine.queue_callback(self._backward_done)
                except RuntimeError:  # not inside an autograd engine run: take it now
                    self._backward_done()
        except Exception as err:
            self._params_failed = True
            self._warn_once("the gradients", err)

    def _backward_done(self) -> None:
        """The statistics of the gradients accumulated by the backward that just ended."""
        queue, self._grad_queue = self._grad_queue, []
        if not self._due or self._params_failed:
            return
        try:
            with torch.no_grad():
                host: list[tuple[torch.Tensor, torch.Tensor]] = []
                for p in queue:
                    g = p.grad
                    if g is None:
                        continue
                    if g.device.type == "cpu" and not g.is_sparse and g.dtype in (torch.float32, torch.float64):
                        host.append((p, g))
                    else:
                        self._grads[id(p)] = grad_vector(g, zero=self._zero(g.device))
                for (p, g), vec in zip(host, cpu_grad_lists([g for _, g in host])):
                    self._grads[id(p)] = vec
                    if g.numel() >= REUSE_GRAD_NUMEL and g.is_contiguous():
                        self._grad_seen[id(p)] = (weakref.ref(g), g._version, _grad_sample(g))
        except Exception as err:  # an exception here would end the user's backward()
            self._params_failed = True
            self._warn_once("the gradients", err)

    # -- optimizer -------------------------------------------------------------------------

    def _watched(self, optimizer: torch.optim.Optimizer) -> WatchedOpt | None:
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

    def _capture_lr(self, w: WatchedOpt, optimizer: torch.optim.Optimizer) -> None:
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
        pre: list[PreStep] = []
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
                        host_g = g.device.type == "cpu" and not g.is_sparse and g.dtype in (torch.float32, torch.float64)
                        fresh = id(p) not in self._grads
                        if fresh:  # gradients set without backward: take them now
                            self._grads[id(p)] = (cpu_grad_lists([g])[0] if host_g
                                                  else grad_vector(g, zero=self._zero(g.device)))
                        if lr_plain is not None:
                            # Plain SGD moves the weight by exactly -lr * (the gradient now, after clipping).
                            if host_g and (fresh or self._unchanged_since_backward(p, g)):
                                step_sq = self._grads[id(p)][GRAD["grad_sq"]]
                            elif host_g:
                                step_sq = cpu_grad_lists([g])[0][GRAD["grad_sq"]]
                            else:
                                step_sq = sq_and_bad(as_float(g).reshape(-1), None, self._zero(g.device))[0]
                            if p.device.type == "cpu":
                                cpu_w.append(len(pre))
                            else:
                                wb = sq_and_bad(as_float(p).reshape(-1), None, self._zero(p.device))[0]
                        pre.append(PreStep(self._names[id(p)], p, snap, lr_plain, step_sq, wb))
                if cpu_w:
                    for i, lst in zip(cpu_w, cpu_param_lists([pre[i].param for i in cpu_w], [None] * len(cpu_w))):
                        pre[i].w_before_sq = lst[PARAM["w_sq"]]
            self._pre[id(optimizer)] = pre
        except Exception as err:
            self._params_failed = True
            self._warn_once("the parameters", err)

    def _unchanged_since_backward(self, p: torch.Tensor, g: torch.Tensor) -> bool:
        """Whether ``g`` is the gradient backward left for ``p``, unchanged (see REUSE_GRAD_NUMEL)."""
        seen = self._grad_seen.get(id(p))
        if seen is None or not isinstance(self._grads.get(id(p)), list):
            return False
        ref, version, sample = seen
        if ref() is not g or g._version != version or not g.is_contiguous():
            return False
        return bool(sample.any()) and torch.equal(_grad_sample(g), sample)

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

    def _is_first(self, w: WatchedOpt) -> bool:
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

    def _param_stats(self, pre: list[PreStep]) -> None:
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
