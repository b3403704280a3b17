"""The Monitor's layer side: declared layers, the statistics cadence, and the layer records.

What the numpy path (``activation``, ``weights``, ``input``) and the framework adapters
(``Monitor.write_stats``, see ``monitor/_adapter.py``) share: one cadence (``stats_due``)
and one record builder (``layer_record``), which writes every statistic of a logged step as
one columnar record per kind (docs/format.md). ``LayerRecords`` is a part of
``monitor.Monitor`` and works on its state.
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

# The fields of each layer record kind, in the order they are written, and the key naming its columns.
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    KIND_ACTS: (*ACT_FIELDS, *ACT_HIST_FIELDS), KIND_PARAMS: PARAM_FIELDS, KIND_INPUT: INPUT_FIELDS,
}
_NAMES_KEY = {KIND_ACTS: "layers", KIND_PARAMS: "params"}


def stats_due(step: int, every: int, first: int | None) -> bool:
    """Whether layer statistics are recorded at ``step``: the first statistics step (``first``;
    ``None`` while there is none, so any step is due), then every ``every`` steps."""
    return first is None or step == first or step % every == 0


def layer_record(kind: str, step: int, stats: Mapping[str, Any]) -> dict[str, Any]:
    """One ``acts``, ``params`` or ``input`` record as docs/format.md has it: the one builder of both paths.

    Args:
        kind: ``acts`` or ``params``: ``stats`` maps each layer (parameter tensor) name, in
            order, to its statistics (the fields of ``core.stats.activation_stats`` or
            ``param_stats``), written as one column per field. ``input``: ``stats`` is the
            fields of ``core.stats.input_stats``.
        step: the step the statistics belong to.
        stats: as above; a field missing from a layer's statistics is written as ``null``.

    Raises:
        ConfigError: for another kind or a step out of range.
    """
    fields = RECORD_FIELDS.get(kind)
    if fields is None:
        raise ConfigError(f"a layer record's kind must be one of {sorted(RECORD_FIELDS)}, got {kind!r}")
    rec: dict[str, Any] = {"kind": kind, "step": valid_step(step), "time": time.time()}
    if kind == KIND_INPUT:
        rec.update({f: stats.get(f) for f in fields})
        return rec
    rows = list(stats.values())
    rec[_NAMES_KEY[kind]] = list(stats)
    rec.update({f: [row.get(f) for row in rows] for f in fields})
    return rec


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
        """True when layer statistics are recorded at ``step``: at the first step that records any
        (numpy path or adapter), then every ``every`` steps. The one cadence of every path."""
        return stats_due(step, self.every, self._first_stats_step)

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
                self.write_stats(KIND_INPUT, step, input_stats(np.asarray(x)))
            except Exception as err:
                log.warning("Babysitter: could not compute input statistics: %s", err)

    # -- records (shared by the numpy and framework paths) ---------------------------------

    def write_stats(self, kind: str, step: int, stats: Mapping[str, Any]) -> None:
        """Append one layer record at ``step``: how adapters write their statistics (``monitor/_adapter.py``).

        The first record sets the first statistics step of the cadence (``stats_due``) when
        no step has set it yet.

        Args:
            kind: ``acts``, ``params`` or ``input``.
            step: the step the statistics belong to.
            stats: per name, in order, the statistics of each layer or parameter tensor
                (``acts``, ``params``); the input's statistics (``input``). See ``layer_record``.

        Raises:
            ConfigError: for another kind or a step out of range.
        """
        rec = layer_record(kind, step, stats)
        with self._lock:
            if self._first_stats_step is None:
                self._first_stats_step = rec["step"]
            self._writer_for_event().append(STREAM_LAYERS, rec)

    def _flush_pending(self) -> None:
        step = self._pending_step
        if step is None or self._writer is None:
            return
        acts, params = self._pending_acts, self._pending_params
        self._pending_acts, self._pending_params, self._pending_step = {}, {}, None
        if acts:
            self.write_stats(KIND_ACTS, step, acts)
        if params:
            self.write_stats(KIND_PARAMS, step, params)

    def flush(self) -> None:
        """Write the statistics gathered for the current logged step now."""
        with self._lock:
            self._flush_pending()
