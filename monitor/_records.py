"""The Monitor's layer side: declared layers, the statistics cadence, and the layer records.

What the numpy path (``activation``, ``weights``, ``input``) and the framework adapters
(``write_acts``, ``write_params``, ``write_input``) share: every statistic of a logged step
is gathered and written as one columnar record per kind (docs/format.md). ``LayerRecords``
is a part of ``monitor.Monitor`` and works on its state.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Mapping

import numpy as np

from core.errors import ConfigError
from core.schema import (
    ACT_FIELDS, ACT_HIST_FIELDS, INPUT_FIELDS, KIND_ACTS, KIND_INPUT, KIND_PARAMS, LAYER_KINDS, PARAM_FIELDS,
    STREAM_LAYERS, LayerInfo,
)
from core.stats import activation_stats, input_stats, param_stats


from ._process import valid_step

log = logging.getLogger("monitor._monitor")  # the Monitor's one logger


class LayerRecords:
    """Layers, cadence and layer records of a :class:`~monitor.Monitor`."""

    # -- meta ------------------------------------------------------------------------------

    def set_layers(self, layers: Iterable[LayerInfo | Mapping[str, Any] | tuple[str, str]]) -> None:
        """Declare the model's layers in order (name and kind; shape and params optional).

        Layers first seen in ``activation`` are added on their own; declaring them gives the
        dashboard the depth order before the first logged step.
        """
        infos = []
        for item in layers:
            if isinstance(item, LayerInfo):
                info = item
            elif isinstance(item, tuple):
                info = LayerInfo(item[0], item[1])
            else:
                info = LayerInfo(str(item["name"]), str(item.get("kind", "other")),
                                 tuple(item["shape"]) if item.get("shape") is not None else None,
                                 tuple(item.get("params", ())))
            if info.kind not in LAYER_KINDS:
                raise ConfigError(f"layer {info.name!r}: kind must be one of {sorted(LAYER_KINDS)}, got {info.kind!r}")
            infos.append(info)
        with self._lock:
            self._meta.layers = infos
            self._layer_names = {i.name for i in infos}
            self._save_meta()

    @property
    def layers(self) -> list[str]:
        """Names of the layers declared or recorded so far, in depth order."""
        with self._lock:
            return [info.name for info in self._meta.layers]

    def _ensure_layer(self, name: str, kind: str, shape: tuple[int, ...] | None) -> None:
        if name in self._layer_names:
            return
        self._layer_names.add(name)
        self._meta.layers.append(LayerInfo(name, kind, shape))
        self._save_meta()

    # -- cadence ---------------------------------------------------------------------------

    def stats_due(self, step: int) -> bool:
        """True when layer statistics are recorded at ``step``: every ``every`` steps and at the first."""
        if self._first_stats_step is None:
            return True
        return step == self._first_stats_step or step % self.every == 0

    def _stats_step(self, step: int) -> bool:
        valid_step(step)
        if self._closed:
            return False
        if not self.stats_due(step):
            return False
        if self._first_stats_step is None:
            self._first_stats_step = step
        if self._pending_step is not None and step != self._pending_step:
            self._flush_pending()
        self._pending_step = step
        return not self._writer_for_event().failed

    # -- numpy path ------------------------------------------------------------------------

    def activation(self, step: int, name: str, a: Any, kind: str = "linear") -> None:
        """Record a layer's output for the batch at ``step`` (ignored on steps that are not logged).

        Args:
            step: the training step.
            name: the layer's name.
            a: its output, batch first (numpy array or anything ``np.asarray`` takes).
            kind: activation kind: ``relu``, ``leaky_relu``, ``elu``, ``tanh``, ``sigmoid``, ``linear``, ...
        """
        if kind not in LAYER_KINDS:
            raise ConfigError(f"layer {name!r}: kind must be one of {sorted(LAYER_KINDS)}, got {kind!r}")
        with self._lock:
            if not self._stats_step(step):
                return
            try:
                arr = np.asarray(a)
                self._ensure_layer(name, kind, tuple(arr.shape[1:]))
                self._pending_acts[name] = activation_stats(arr, kind, bins=self.bins)
            except Exception as err:  # a statistic must never stop training
                log.warning("Babysitter: could not compute statistics of layer %r: %s", name, err)

    def weights(self, step: int, name: str, weight: Any, update: Any = None, grad: Any = None) -> None:
        """Record a parameter tensor after its update at ``step`` (ignored on steps that are not logged).

        Args:
            step: the training step.
            name: the parameter's name (e.g. ``"W1"`` or ``"fc1.weight"``).
            weight: the parameter after the update.
            update: the change applied (``after - before``; for plain SGD ``-lr * grad``).
            grad: the gradient.
        """
        with self._lock:
            if not self._stats_step(step):
                return
            try:
                self._pending_params[name] = param_stats(weight, update, grad)
            except Exception as err:
                log.warning("Babysitter: could not compute statistics of parameter %r: %s", name, err)

    def input(self, step: int, x: Any) -> None:
        """Record the first layer's input batch at ``step`` (ignored on steps that are not logged)."""
        with self._lock:
            if not self._stats_step(step):
                return
            try:
                self.write_input(step, input_stats(np.asarray(x)))
            except Exception as err:
                log.warning("Babysitter: could not compute input statistics: %s", err)

    # -- records (shared by the numpy and framework paths) ---------------------------------

    def write_acts(self, step: int, names: list[str], columns: Mapping[str, list[Any]]) -> None:
        """Append one ``acts`` record: ``columns`` maps each field of ACT_FIELDS and hist fields to a list parallel to ``names``."""
        rec: dict[str, Any] = {"kind": KIND_ACTS, "step": valid_step(step), "time": time.time(),
                               "layers": list(names)}
        rec.update(columns)
        self._writer_for_event().append(STREAM_LAYERS, rec)

    def write_params(self, step: int, names: list[str], columns: Mapping[str, list[Any]]) -> None:
        """Append one ``params`` record: ``columns`` maps each field of PARAM_FIELDS to a list parallel to ``names``."""
        rec: dict[str, Any] = {"kind": KIND_PARAMS, "step": valid_step(step), "time": time.time(),
                               "params": list(names)}
        rec.update(columns)
        self._writer_for_event().append(STREAM_LAYERS, rec)

    def write_input(self, step: int, stats: Mapping[str, Any]) -> None:
        """Append one ``input`` record with the fields of INPUT_FIELDS."""
        rec = {"kind": KIND_INPUT, "step": valid_step(step), "time": time.time()}
        rec.update({k: stats.get(k) for k in INPUT_FIELDS})
        self._writer_for_event().append(STREAM_LAYERS, rec)

    def _flush_pending(self) -> None:
        step = self._pending_step
        if step is None or self._writer is None:
            return
        acts, params = self._pending_acts, self._pending_params
        self._pending_acts, self._pending_params, self._pending_step = {}, {}, None
        if acts:
            names = list(acts)
            cols = {f: [acts[n][f] for n in names] for f in (*ACT_FIELDS, *ACT_HIST_FIELDS)}
            self.write_acts(step, names, cols)
        if params:
            names = list(params)
            self.write_params(step, names, {f: [params[n][f] for n in names] for f in PARAM_FIELDS})

    def flush(self) -> None:
        """Write the statistics gathered for the current logged step now."""
        with self._lock:
            self._flush_pending()
