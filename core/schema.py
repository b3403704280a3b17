"""The run-folder format (docs/format.md), as constants and small frozen types.

A run is a folder holding ``meta.json`` (written atomically) and one or more append-only
JSON Lines files, one writer per file. Every line is one JSON object with at least
``kind`` and ``step``. Layer statistics are columnar inside a line: ``layers`` lists the
names and every statistic is an array parallel to it, so that a reader fills numpy
arrays with one assignment per field instead of building a dict per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

FORMAT_NAME = "babysitter"
FORMAT_VERSION = 1

META_FILE = "meta.json"
HEARTBEAT_FILE = "heartbeat"
DATA_SUFFIX = ".jsonl"
# Streams: one append-only file each per rank, "<stream>.r<rank>.jsonl".
STREAM_SCALARS = "scalars"  # scalars and findings: small lines, every logged step
STREAM_LAYERS = "layers"    # acts, params and input statistics: large lines, every `every` steps
# The Monitor's ``sanity=`` value (meta.json "sanity") for the overfit-a-tiny-subset check.
SANITY_OVERFIT = "overfit_small"
# Hyperparameter names read as the L2 regularization strength, in this order.
REG_KEYS = ("reg", "weight_decay", "l2", "lambda", "wd")
# Of those, the names of a penalty added to the loss. An optimizer's weight decay (torch's
# ``weight_decay``, AdamW's decoupled decay) shrinks the weights directly and is never part of
# the reported loss, so the loss-based checks (initial_loss, regularization_check) do not expect it.
LOSS_REG_KEYS = ("reg", "l2", "lambda")
# meta.json fields and the JSON types they must have; a field of another type is ignored (and reported).
META_TYPES: dict[str, Any] = {
    "format_version": int, "run": str, "status": str, "hparams": dict, "search_space": dict, "study": dict, "layers": list,
    "num_classes": int, "every": int, "pid": int, "host": str, "created": (int, float), "ended": (int, float),
}


def data_file(stream: str, rank: int = 0) -> str:
    """The file name of ``stream`` written by ``rank``: ``"scalars.r0.jsonl"``."""
    return f"{stream}.r{rank}{DATA_SUFFIX}"


def rank_of(filename: str) -> int:
    """The rank that wrote data file ``filename`` (``"layers.r3.jsonl"`` -> 3); other ``*.jsonl`` files are rank 0."""
    stem = filename[: -len(DATA_SUFFIX)] if filename.endswith(DATA_SUFFIX) else filename
    _, _, last = stem.rpartition(".")
    if len(last) > 1 and last[0] == "r" and last[1:].isdigit():
        return int(last[1:])
    return 0

# Record kinds.
KIND_SCALARS = "scalars"
KIND_ACTS = "acts"
KIND_PARAMS = "params"
KIND_INPUT = "input"
KIND_FINDING = "finding"
KINDS = (KIND_SCALARS, KIND_ACTS, KIND_PARAMS, KIND_INPUT, KIND_FINDING)

# Per-layer activation statistics: each an array parallel to ``layers`` in an "acts" line.
# ``unit_std`` (added in format version 1, optional: null or absent when not computed) is the
# std across units of each unit's batch mean; exactly 0 when every unit computes the same
# output (symmetric weights from a constant initialisation).
ACT_FIELDS = ("mean", "std", "min", "max", "zero_frac", "dead_frac", "sat_frac", "nan", "inf", "unit_std")
ACT_HIST_FIELDS = ("hist_lo", "hist_hi", "hist")
# Per-parameter-tensor statistics: arrays parallel to ``params`` in a "params" line.
PARAM_FIELDS = (
    "w_norm", "w_std", "upd_norm", "upd_ratio", "grad_norm", "w_nan", "w_inf", "grad_nan", "grad_inf",
)
INPUT_FIELDS = ("mean", "std", "min", "max", "nan", "inf")

DEFAULT_BINS = 64
# The metrics that rules, charts, summaries, reports and searches read, each with the scalar
# names training code logs it under, in order of preference (Lightning's ``val_accuracy``,
# Hugging Face's ``eval_loss``...). ``metric_key`` is the one lookup every reader uses.
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "loss": ("loss", "train_loss"),
    "val_loss": ("val_loss", "valid_loss", "validation_loss", "eval_loss"),
    "train_acc": ("train_acc", "train_accuracy", "acc", "accuracy"),
    "val_acc": ("val_acc", "val_accuracy", "valid_acc", "valid_accuracy", "validation_accuracy",
                "eval_acc", "eval_accuracy"),
}
LOSS_KEYS = METRIC_ALIASES["loss"]


def metric_key(names: Iterable[str], metric: str) -> str | None:
    """The scalar name under which a run logged ``metric``, or ``None`` when it did not.

    Args:
        names: the scalar names the run recorded.
        metric: a canonical metric (a key of ``METRIC_ALIASES``) or any other scalar name,
            which then only matches itself.

    Returns:
        The first alias of ``metric`` present in ``names`` (in ``METRIC_ALIASES`` order).
    """
    present = names if isinstance(names, (set, frozenset, dict)) else set(names)
    for key in METRIC_ALIASES.get(metric, (metric,)):
        if key in present:
            return key
    return None

STEP_LIMIT = 2**62     # every step is an integer with abs(step) < STEP_LIMIT
# Limits a reader enforces (what is beyond them is reported as a problem, never held):
MAX_NESTING = 24       # levels of nesting kept in meta.json (deeper hyperparameters are cut)
MAX_BINS = 1024        # histogram bins per layer
MAX_LAYERS = 4096      # layer names per run (an "acts" record that would add more is skipped)
MAX_PARAMS = 4096      # parameter names per run (likewise for "params" records)
MAX_SCALARS = 4096     # scalar names per run and rank (a "scalars" record that would add more is skipped)
# meta.json "status": "running" until the writer ends the run as "finished" (it ran to its end),
# "stopped" (ended early on purpose, e.g. Ctrl-C) or "crashed" (an exception).
RUN_STATUSES = ("running", "finished", "stopped", "crashed")
ENDED_STATUSES = RUN_STATUSES[1:]
SEVERITIES = ("error", "warning", "info")
# States of a hyperparameter-search trial, as recorded in meta.json's ``study`` object
# (the names of Optuna's trial states, lower case).
TRIAL_STATES = ("running", "complete", "pruned", "fail")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # most severe first


def recorded_error(error: object) -> str | None:
    """The error a run's ``meta.json`` recorded (why a crashed training stopped), or None when it records none."""
    return error if isinstance(error, str) and error.strip() else None


def severity_counts(findings: Iterable["Finding"]) -> dict[str, int]:
    """``{"error": n, "warning": n, "info": n}``."""
    out = dict.fromkeys(SEVERITIES, 0)
    for f in findings:
        out[f.severity] = out.get(f.severity, 0) + 1
    return out

# Activation kinds. The ReLU family has dead units; tanh/sigmoid saturate.
RELU_FAMILY = frozenset({"relu", "relu6", "leaky_relu", "prelu", "rrelu", "elu", "selu", "celu", "gelu", "silu",
                         "mish", "softplus", "hardswish"})
SATURATING = frozenset({"tanh", "sigmoid", "hardtanh", "hardsigmoid", "softsign"})
ACTIVATION_KINDS = RELU_FAMILY | SATURATING | frozenset({"linear", "identity"})
# Normalisation layers (BatchNorm/InstanceNorm as "batchnorm"; LayerNorm, GroupNorm, RMSNorm as "layernorm").
# Their outputs are centred per unit by construction, and their gains start constant by design.
NORM_KINDS = frozenset({"batchnorm", "layernorm"})
LAYER_KINDS = ACTIVATION_KINDS | NORM_KINDS | frozenset({"conv", "embedding", "input", "other"})


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One watched layer, as listed in ``meta.json``.

    Attributes:
        name: unique name, e.g. ``"fc1"`` or ``"features.0"``.
        kind: one of ``LAYER_KINDS`` (``"relu"``, ``"tanh"``, ``"linear"``, ``"conv"``, ...).
        shape: output shape without the batch dimension, when known.
        params: names of the parameter tensors this layer owns (``"fc1.weight"``, ...).
        type: the class name of the module (``"Conv2d"``, ``"TransformerEncoderLayer"``), or the
            function (``"relu()"``) for an activation called as a function, when known.
    """

    name: str
    kind: str
    shape: tuple[int, ...] | None = None
    params: tuple[str, ...] = ()
    type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.shape is not None:
            out["shape"] = list(self.shape)
        if self.params:
            out["params"] = list(self.params)
        if self.type:
            out["type"] = self.type
        return out

    @classmethod
    def from_json(cls, obj: Any) -> "LayerInfo | None":
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return None
        kind = obj.get("kind") if isinstance(obj.get("kind"), str) else "other"
        shape = obj.get("shape")
        shape_t = tuple(int(s) for s in shape if isinstance(s, int)) if isinstance(shape, list) else None
        params = obj.get("params")
        params_t = tuple(p for p in params if isinstance(p, str)) if isinstance(params, list) else ()
        type_ = obj.get("type") if isinstance(obj.get("type"), str) else None
        return cls(obj["name"], kind, shape_t, params_t, type_)


@dataclass(frozen=True, slots=True)
class Finding:
    """One diagnosis: what is wrong, where, since when, and what to do.

    Attributes:
        rule: stable rule id users script against, e.g. ``"dead_relu"``.
        severity: ``"error"``, ``"warning"`` or ``"info"``.
        step: the first logged step at which the rule held.
        layers: the layers involved (empty for run-level findings such as the loss).
        message: one sentence with the measured value and the threshold.
        fix: a concrete change to try.
        value: the measured value, when there is one number.
        threshold: the threshold it was compared with.
    """

    rule: str
    severity: str
    step: int
    layers: tuple[str, ...] = ()
    message: str = ""
    fix: str = ""
    value: float | None = None
    threshold: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "severity": self.severity, "step": self.step, "layers": list(self.layers),
            "message": self.message, "fix": self.fix,
            "value": finite_or_none(self.value), "threshold": finite_or_none(self.threshold),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Finding | None":
        rule, sev, step = obj.get("rule"), obj.get("severity"), obj.get("step")
        if not isinstance(rule, str) or sev not in SEVERITIES or not _is_int(step):
            return None
        layers = obj.get("layers") or []
        return cls(
            rule=rule, severity=sev, step=int(step),
            layers=tuple(str(x) for x in layers) if isinstance(layers, list) else (),
            message=str(obj.get("message", "")), fix=str(obj.get("fix", "")),
            value=_num(obj.get("value")), threshold=_num(obj.get("threshold")),
        )


def finite_or_none(x: Any) -> float | None:
    """A float for JSON: ``None`` for missing and non-finite values (RFC 8259 has no NaN)."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def nonfinite_tag(x: float) -> str | None:
    """``"nan"``, ``"inf"`` or ``"-inf"`` for a non-finite float, else ``None``."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


@dataclass(frozen=True, slots=True)
class Problem:
    """A line or file the reader could not use. Reported, never raised.

    Attributes:
        file: path of the file, relative to the run folder.
        line: 1-based line number, or 0 for a whole-file problem.
        message: what was wrong.
    """

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


@dataclass(slots=True)
class Meta:
    """The contents of ``meta.json``, checked field by field (unknown fields are kept in ``extra``)."""

    run: str = ""
    format_version: int = FORMAT_VERSION
    created: float | None = None
    status: str = "running"
    ended: float | None = None
    error: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, Any] = field(default_factory=dict)
    layers: list[LayerInfo] = field(default_factory=list)
    num_classes: int | None = None
    framework: str | None = None
    every: int | None = None
    pid: int | None = None
    host: str | None = None
    sanity: str | None = None
    study: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()  # fields read from the file with a type other than META_TYPES says (not written)

    def to_json(self) -> dict[str, Any]:
        out = {
            "format": FORMAT_NAME, "format_version": self.format_version, "run": self.run,
            "created": self.created, "status": self.status, "ended": self.ended, "error": self.error,
            "hparams": self.hparams, "search_space": self.search_space,
            "layers": [layer.to_json() for layer in self.layers], "num_classes": self.num_classes,
            "framework": self.framework, "every": self.every, "pid": self.pid, "host": self.host,
            "sanity": self.sanity, "study": self.study,
        }
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Meta":
        m = cls()
        known = set(m.to_json())
        m.run = str(obj.get("run", ""))
        fv = obj.get("format_version")
        m.format_version = int(fv) if _is_int(fv) else FORMAT_VERSION
        m.created = _num(obj.get("created"))
        status = obj.get("status")
        m.status = status if status in RUN_STATUSES else "running"
        m.ended = _num(obj.get("ended"))
        m.error = str(obj["error"]) if obj.get("error") is not None else None
        m.hparams = obj["hparams"] if isinstance(obj.get("hparams"), dict) else {}
        m.search_space = obj["search_space"] if isinstance(obj.get("search_space"), dict) else {}
        layers = obj.get("layers") if isinstance(obj.get("layers"), list) else []
        m.layers = [li for li in (LayerInfo.from_json(x) for x in layers) if li is not None]
        nc = obj.get("num_classes")
        m.num_classes = int(nc) if _is_int(nc) and nc > 0 else None
        m.framework = str(obj["framework"]) if isinstance(obj.get("framework"), str) else None
        ev = obj.get("every")
        m.every = int(ev) if _is_int(ev) and ev > 0 else None
        m.pid = int(obj["pid"]) if _is_int(obj.get("pid")) else None
        m.host = str(obj["host"]) if isinstance(obj.get("host"), str) else None
        m.sanity = str(obj["sanity"]) if isinstance(obj.get("sanity"), str) else None
        m.study = obj["study"] if isinstance(obj.get("study"), dict) else {}
        m.extra = {k: v for k, v in obj.items() if k not in known and k != "format"}
        m.ignored = tuple(k for k, t in META_TYPES.items()
                          if obj.get(k) is not None and (not isinstance(obj[k], t) or isinstance(obj[k], bool)))
        return m


@dataclass(frozen=True, slots=True)
class StudyTrial:
    """The ``study`` object of a run that is one trial of a hyperparameter search (Optuna study).

    Attributes:
        name: the study name (runs of one study share it; the run is ``<name>-t<trial>``).
        trial: the trial number in the study.
        state: one of ``TRIAL_STATES``.
        storage: where the study lives (journal file path or database URL, password removed).
        direction: ``"maximize"`` or ``"minimize"``.
        metric: the scalar the objective is read from.
        value: the objective, for a ``complete`` trial.
        steps: the last step trained (a pruned trial stops early).
        pruned_by: the finding that pruned the trial.
    """

    name: str
    trial: int
    state: str = "running"
    storage: str | None = None
    direction: str = "maximize"
    metric: str | None = None
    value: float | None = None
    steps: int | None = None
    pruned_by: Finding | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "trial": self.trial, "state": self.state, "storage": self.storage,
            "direction": self.direction, "metric": self.metric, "value": finite_or_none(self.value),
            "steps": self.steps, "pruned_by": self.pruned_by.to_json() if self.pruned_by else None,
        }

    @classmethod
    def from_json(cls, obj: Any) -> "StudyTrial | None":
        """The trial described by ``obj`` (a ``meta.json`` ``study`` object); None when it names no trial."""
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"] \
                or not _is_int(obj.get("trial")):
            return None
        state = obj.get("state") if obj.get("state") in TRIAL_STATES else "running"
        direction = obj.get("direction") if obj.get("direction") in ("maximize", "minimize") else "maximize"
        pruned = obj.get("pruned_by")
        return cls(
            name=obj["name"], trial=int(obj["trial"]), state=state,
            storage=str(obj["storage"]) if isinstance(obj.get("storage"), str) else None,
            direction=direction, metric=str(obj["metric"]) if isinstance(obj.get("metric"), str) else None,
            value=finite_or_none(_num(obj.get("value"))),
            steps=int(obj["steps"]) if _is_int(obj.get("steps")) else None,
            pruned_by=Finding.from_json(pruned) if isinstance(pruned, dict) else None,
        )
