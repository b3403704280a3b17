"""The Monitor: what training code holds. Opens a run folder, takes scalars and layer statistics.

Usage with a hand-written numpy network::

    with Monitor("runs", hparams={"lr": 1e-3}, num_classes=10) as mon:
        for step in range(steps):
            h = np.maximum(0, X @ W1)                     # forward
            mon.activation(step, "fc1", h, kind="relu")   # ignored on steps that are not logged
            ...
            mon.weights(step, "W1", W1, update=-lr * dW1, grad=dW1)
            mon.log(step, loss=loss, lr=lr)               # scalars: every step

Statistics are computed only on logged steps (``every`` steps, and the first step), so the
calls above cost one integer check on the others.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping


from core.diagnose import DiagnosisConfig, loss_explosion_finding, nan_loss_finding
from core.errors import ConfigError, RunExistsError
from core.schema import (
    DEFAULT_BINS, HEARTBEAT_FILE, KIND_FINDING, KIND_SCALARS, LOSS_KEYS, STREAM_SCALARS, Finding, Meta, data_file,
    finite_or_none, nonfinite_tag,
)

from ._adapter import Adapter
from ._process import (
    OPEN_MONITORS, distributed_context, generated_name, scalar_value, started_by_other_ranks, valid_step,
    validate_run_name,
)
from ._records import LayerRecords
from ._writer import RunWriter

log = logging.getLogger(__name__)

__all__ = ["Monitor", "TrainingDivergedError", "validate_run_name"]

_ON_NAN = ("warn", "raise", "ignore")
_ON_EXISTS = ("suffix", "error")


class TrainingDivergedError(RuntimeError):
    """Raised from ``Monitor.log`` when the loss is NaN/Inf and the Monitor was made with ``on_nan="raise"``,
    or when the loss blew up (above ``explode_factor`` x its first value) with ``on_explode="raise"``.

    Attributes:
        step: the step of the loss that stopped the training.
        reason: ``"nan"``/``"inf"``/``"-inf"`` for a non-finite loss, ``"explosion"`` for a blow-up.
    """

    def __init__(self, message: str, *, step: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.reason = reason


class Monitor(LayerRecords):
    """Records one training run into ``<logdir>/<name>/``.

    Args:
        logdir: the log directory; created when needed.
        name: the run's folder name. ``None`` generates ``YYYYmmdd-HHMMSS-xxxxxx``.
        hparams: hyperparameters, stored in ``meta.json`` (any JSON-able values).
        num_classes: number of classes, for the initial-loss check (log C).
        every: compute layer statistics every ``every`` steps (and at the first step).
        rank: data-parallel rank. ``None`` (default): the rank of the initialised
            ``torch.distributed`` process group (``torchrun``, Lightning's and the Hugging Face
            Trainer's DDP), else 0. With a process group of several processes, every rank must
            make its Monitor (a collective call): rank 0 creates the run folder and broadcasts
            its name, every rank writes its own files into it and rank 0 alone writes
            ``meta.json``. Given explicitly, no process group is used: rank 0 creates the run
            and other ranks must be given the same ``name``.
        bins: histogram bins per layer.
        on_nan: what a NaN/Inf loss does: ``"warn"`` (log a warning, default),
            ``"raise"`` (raise ``TrainingDivergedError`` to stop training) or ``"ignore"``.
            The ``nan_loss`` finding is written in every case.
        on_explode: what a finite loss above ``explode_factor`` x the first finite loss does,
            with the same choices (default ``"warn"``). The ``loss_explosion`` finding is written
            in every case, so a run that blew up before it became NaN names both steps.
        explode_factor: the blow-up threshold; ``None`` takes the ``loss_explosion`` rule's default (10).
        on_exists: when ``name`` exists already: ``"suffix"`` (use ``name-2``, ``name-3``, ...;
            default) or ``"error"`` (raise ``RunExistsError``). A run is never overwritten.
        search_space: for hyperparameter searches, each sampled parameter's range,
            e.g. ``{"lr": {"low": 1e-6, "high": 1e-3, "log": True}}``.
        sanity: ``"overfit_small"`` marks a run as the overfit-a-tiny-subset check.
        heartbeat: seconds between heartbeat touches; a live run whose heartbeat is older
            than the reader's ``stale_after`` is shown as crashed. ``0`` disables the thread.
        study: for a trial of a hyperparameter search run as a study, the ``study`` object of
            ``meta.json`` (``core.schema.StudyTrial.to_json()``: study name, trial number, state).
        on_log: callables called as ``fn(monitor, step, values)`` after each ``log`` record
            is written (``values``: the scalars as floats, None for NaN/Inf). An exception one
            raises reaches the training code: that is how a search prunes a trial.

    Raises:
        ConfigError: for any option out of range, naming the allowed values.
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str] = "runs",
        name: str | None = None,
        *,
        hparams: Mapping[str, Any] | None = None,
        num_classes: int | None = None,
        every: int = 10,
        rank: int | None = None,
        bins: int = DEFAULT_BINS,
        on_nan: str = "warn",
        on_explode: str = "warn",
        explode_factor: float | None = None,
        on_exists: str = "suffix",
        search_space: Mapping[str, Any] | None = None,
        sanity: str | None = None,
        heartbeat: float = 5.0,
        study: Mapping[str, Any] | None = None,
        on_log: Iterable[Callable[["Monitor", int, Mapping[str, float | None]], None]] = (),
    ) -> None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(f"every must be a positive integer (steps between statistics), got {every!r}")
        dist_ctx = distributed_context() if rank is None else None
        if rank is None:
            rank = dist_ctx[0] if dist_ctx is not None else 0
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
            raise ConfigError(f"rank must be a non-negative integer, got {rank!r}")
        if not isinstance(bins, int) or not 2 <= bins <= 1024:
            raise ConfigError(f"bins must be an integer in 2..1024, got {bins!r}")
        if on_nan not in _ON_NAN:
            raise ConfigError(f"on_nan must be one of {_ON_NAN}, got {on_nan!r}")
        if on_explode not in _ON_NAN:
            raise ConfigError(f"on_explode must be one of {_ON_NAN}, got {on_explode!r}")
        if explode_factor is None:
            explode_factor = DiagnosisConfig().thresholds("loss_explosion").explode_factor
        else:  # validated against the rule's range
            explode_factor = DiagnosisConfig(
                overrides={"loss_explosion.explode_factor": explode_factor}).thresholds("loss_explosion").explode_factor
        if on_exists not in _ON_EXISTS:
            raise ConfigError(f"on_exists must be one of {_ON_EXISTS}, got {on_exists!r}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(f"num_classes must be a positive integer or None, got {num_classes!r}")
        if not isinstance(heartbeat, (int, float)) or isinstance(heartbeat, bool) or not 0 <= heartbeat < math.inf:
            raise ConfigError(f"heartbeat must be >= 0 seconds, got {heartbeat!r}")
        if rank > 0 and name is None and dist_ctx is None:
            raise ConfigError("a rank > 0 must be given the run name that rank 0 uses (name=...)")
        self.logdir = Path(logdir)
        self.name = validate_run_name(name) if name is not None else None
        self.every = every
        self.rank = rank
        self.bins = bins
        self.on_nan = on_nan
        self.on_explode = on_explode
        self.explode_factor = float(explode_factor)
        self._loss0: float | None = None
        self._explode_reported = False
        self.on_exists = on_exists
        self.heartbeat = heartbeat
        self._meta = Meta(
            hparams=dict(hparams or {}), num_classes=num_classes, every=every,
            search_space=dict(search_space or {}), sanity=sanity, framework="numpy", study=dict(study or {}),
        )
        self._on_log = list(on_log)
        if not all(callable(fn) for fn in self._on_log):
            raise ConfigError("on_log must be a list of callables fn(monitor, step, values)")
        self._writer: RunWriter | None = None
        self._owner_pid = os.getpid()  # the process that opened the run (a forked child never finishes it)
        self._closed = False
        self._first_stats_step: int | None = None
        self._pending_step: int | None = None
        self._pending_acts: dict[str, dict[str, Any]] = {}
        self._pending_params: dict[str, dict[str, Any]] = {}
        self._layer_names: set[str] = set()
        self._nan_reported = False
        self._warned_nan = False
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._not_numbers: dict[str, int] = {}  # scalar key -> values skipped as not numbers (scalar_value)
        self.last_step: int | None = None
        self._adapters: list[Adapter] = []  # framework adapters (monitor/_adapter.py), in attach order
        self.world_size = 1
        if dist_ctx is not None and dist_ctx[1] > 1:
            self.world_size = dist_ctx[1]
            self._meta.extra["world_size"] = self.world_size
            self._agree_on_name(dist_ctx[2])

    def _agree_on_name(self, dist: Any) -> None:
        """Rank 0 creates the run folder and broadcasts its name; the other ranks join it.

        Every rank calls this (it is a collective). Rank 0 broadcasts even when it could not
        create the folder, so that no rank waits forever; then every rank raises.
        """
        msg: list[Any] = [None]
        err: BaseException | None = None
        if self.rank == 0:
            try:
                self.open()
                msg = [self._writer.run_dir.name]  # type: ignore[union-attr]
            except (ConfigError, RunExistsError) as e:
                err, msg = e, [{"error": f"{type(e).__name__}: {e}"}]
        try:
            dist.broadcast_object_list(msg, src=0)
        except Exception as e:
            raise ConfigError(f"rank {self.rank}: could not agree on the run folder with rank 0 "
                              f"(torch.distributed broadcast failed: {e})") from e
        if err is not None:
            raise err
        got = msg[0]
        if not isinstance(got, str):
            why = got.get("error") if isinstance(got, dict) else repr(got)
            raise ConfigError(f"rank {self.rank}: rank 0 could not create the run folder ({why})")
        if self.rank > 0:
            self.name = validate_run_name(got)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        """The run folder (opens the run if it is not open yet)."""
        self.open()
        assert self._writer is not None
        return self._writer.run_dir

    @property
    def closed(self) -> bool:
        """True once ``close`` was called (the run is finished or crashed)."""
        return self._closed

    @property
    def failed(self) -> bool:
        """True once writing failed and monitoring stopped."""
        return self._writer is not None and self._writer.failed

    def open(self) -> "Monitor":
        """Create the run folder and write ``meta.json``. Called by the first event; safe to call twice.

        Raises:
            RunExistsError: when ``on_exists="error"`` and the folder exists.
            ConfigError: when the log directory or the run folder cannot be created. When the
                run is opened by a training call (``log``, ``activation``, ...) instead, the
                failure does not reach the training: one ``MonitoringWarning``, and the
                Monitor records nothing.
        """
        if self._writer is not None:
            return self
        try:
            run_dir = self._create_run_dir()
        except RunExistsError:
            raise
        except OSError as err:  # read-only or full log directory: say so before training starts
            raise ConfigError(f"cannot create a run folder in {self.logdir}: {err}. "
                              "Point the Monitor at a writable log directory.") from err
        self._writer = RunWriter(run_dir, self.rank)
        self._owner_pid = os.getpid()
        self._meta.run = run_dir.name
        self._meta.created = time.time()
        self._meta.pid = os.getpid()
        self._meta.host = socket.gethostname()
        if self.rank == 0:
            self._writer.write_meta(self._meta.to_json())
        if self.heartbeat > 0:
            self._writer.touch(HEARTBEAT_FILE)
            self._hb_thread = threading.Thread(target=self._beat, name="babysitter-heartbeat", daemon=True)
            self._hb_thread.start()
        OPEN_MONITORS.add(self)
        log.info("Babysitter run: %s", run_dir)
        return self

    def _writer_for_event(self) -> RunWriter:
        """The writer, opening the run on the first training call; an I/O failure never reaches the training."""
        if self._writer is None:
            try:
                self.open()
            except ConfigError as err:
                if not isinstance(err.__cause__, OSError):
                    raise
                self._writer = RunWriter(self.logdir / (self.name or "<new run>"), self.rank)
                self._writer.fail("create the run folder", err.__cause__)
        assert self._writer is not None
        return self._writer

    def _create_run_dir(self) -> Path:
        try:
            self.logdir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create log directory {self.logdir}: {err}") from err
        if self.rank > 0:
            run_dir = self.logdir / self.name  # type: ignore[operator]
            run_dir.mkdir(exist_ok=True)
            # Claim the folder for this data-parallel run at once, so that a rank 0 starting
            # later joins it instead of taking it for someone else's run.
            os.close(os.open(run_dir / data_file(STREAM_SCALARS, self.rank), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                             0o644))
            return run_dir
        base = self.name or generated_name()
        for i in range(1, 10_000):
            candidate = base if i == 1 else f"{base}-{i}"
            run_dir = self.logdir / candidate
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:
                if i == 1 and self.name is not None and started_by_other_ranks(run_dir):
                    return run_dir  # ranks > 0 got here first: this is the same data-parallel run
                if self.on_exists == "error" and self.name is not None:
                    raise RunExistsError(
                        f"run folder {run_dir} exists already; pick another name, pass name=None "
                        f"for a generated one, or on_exists='suffix'") from None
                if self.name is None:
                    base = generated_name()
        raise RunExistsError(f"could not find a free run name near {base!r} in {self.logdir}")

    def _beat(self) -> None:
        while not self._hb_stop.wait(self.heartbeat):
            w = self._writer
            if w is None or w.failed:
                return
            w.touch(HEARTBEAT_FILE)

    def close(self, error: BaseException | None = None, *, stopped: bool = False) -> None:
        """Flush, mark the run ``finished`` (``crashed`` when ``error`` is given, ``stopped`` when
        ``stopped``: it ended early on purpose), stop the heartbeat.

        A ``KeyboardInterrupt`` as the error (Ctrl-C inside ``with Monitor(...)``, or in a framework
        whose callback closes the run with it) is no crash: the run is ``stopped``, with
        ``stop_reason: "interrupted"`` in ``meta.json``.

        Safe to call twice (the first call decides the status). Never raises. The adapters
        (the hooks of ``watch``) are closed first, writing what is still on its way (loss
        values coming from the device).
        """
        with self._lock:
            adapters, self._adapters = self._adapters, []
        for a in adapters:
            try:
                a.close()
            except Exception as err:  # closing never raises
                log.warning("Babysitter: while closing %r: %s", a, err)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            OPEN_MONITORS.discard(self)
            self._hb_stop.set()
            if self._writer is None:
                return
            if self._owner_pid != os.getpid():
                # A forked child closing the parent's Monitor (its `with` block unwinding on exit):
                # the run is the parent's to finish; only the child's copies of the files close.
                self._writer.close()
                return
            many = {k: n for k, n in self._not_numbers.items() if n > 1}
            if many:
                log.warning("Babysitter: values skipped as not numbers in run %s: %s", self._writer.run_dir.name,
                            ", ".join(f"{k!r} {n} times" for k, n in sorted(many.items())))
            if isinstance(error, KeyboardInterrupt):
                error, stopped = None, True
                self._meta.extra["stop_reason"] = "interrupted"
            try:
                self._flush_pending()
                if self.rank == 0:
                    self._meta.status = "crashed" if error is not None else "stopped" if stopped else "finished"
                    self._meta.ended = time.time()
                    if error is not None:
                        self._meta.error = f"{type(error).__name__}: {error}"[:2000]
                    self._writer.write_meta(self._meta.to_json())
            finally:
                self._writer.close()

    def __enter__(self) -> "Monitor":
        return self.open()

    def __exit__(self, tp, value, tb) -> bool:
        self.close(error=value)
        return False

    # -- meta ------------------------------------------------------------------------------

    def set_meta(self, **fields: Any) -> None:
        """Update ``meta.json`` fields: ``hparams``, ``num_classes``, ``framework``, ``study`` or extra keys.

        Also after ``close``: the run's ``meta.json`` is rewritten (a search records a trial's
        outcome this way once the training code has closed its run).
        """
        with self._lock:
            for k, v in fields.items():
                if k == "hparams":
                    self._meta.hparams.update(v)
                elif hasattr(self._meta, k) and k not in ("extra", "layers"):
                    setattr(self._meta, k, v)
                else:
                    self._meta.extra[k] = v
            self._save_meta()

    def _save_meta(self) -> None:
        if self._writer is not None and self.rank == 0:
            self._writer.write_meta(self._meta.to_json())

    def finding(self, finding: Finding) -> None:
        """Write a finding into the run at once (the dashboard shows it without recomputing)."""
        rec = {"kind": KIND_FINDING, "time": time.time()}
        rec.update(finding.to_json())
        with self._lock:
            if not self._closed:
                self._writer_for_event().append(STREAM_SCALARS, rec)

    # -- scalars ---------------------------------------------------------------------------

    def log(self, step: int, **scalars: Any) -> None:
        """Record scalars at ``step``: ``loss``, ``lr``, ``train_acc``, ``val_acc``, ``val_loss``, ...

        Values may be Python or numpy numbers (or 0-d arrays). Non-finite values are written
        as ``null`` with their kind in ``nonfinite``. A NaN/Inf ``loss`` writes the
        ``nan_loss`` finding at once and, with ``on_nan="raise"``, raises
        ``TrainingDivergedError``; a finite loss above ``explode_factor`` x the first one writes
        ``loss_explosion`` and, with ``on_explode="raise"``, raises it too.

        With a watched PyTorch model, values may be 0-d tensors: on an accelerator the
        record is written when the values arrive on the host, without waiting for the device.

        Raises:
            TrainingDivergedError: with ``on_nan="raise"`` when the loss is NaN/Inf, with
                ``on_explode="raise"`` when it blew up (its ``step`` is the loss's step, which on
                an accelerator may be an earlier step than this call's).
            ConfigError: when ``step`` is not an integer or is out of range (``abs(step) >= 2**62``).
        """
        step = valid_step(step)
        values: Mapping[str, Any] | None = scalars
        if not self._closed:
            for a in list(self._adapters):
                values = a.on_scalars(step, values)
                if values is None:
                    return  # held back by the adapter: it calls write_scalars when the values arrive
        self.write_scalars(step, values)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Write one scalars record as ``log`` does, without handing it to the adapters first.

        How an adapter writes a record it held back (``Adapter.on_scalars`` returned ``None``).

        Raises:
            TrainingDivergedError: as ``log``.
            ConfigError: as ``log``.
        """
        step = valid_step(step)
        bad_loss: str | None = None
        blown: Finding | None = None
        with self._lock:
            if self._closed:
                return
            if self._pending_step is not None and step >= self._pending_step:
                self._flush_pending()
            writer = self._writer_for_event()
            values: dict[str, float | None] = {}
            nonfinite: dict[str, str] = {}
            loss: float | None = None
            for key, v in scalars.items():
                f = scalar_value(key, v, self._not_numbers)
                if f is None:
                    continue
                tag = nonfinite_tag(f)
                values[key] = finite_or_none(f)
                if tag:
                    nonfinite[key] = tag
                    if key in LOSS_KEYS and bad_loss is None:
                        bad_loss = tag
                elif key in LOSS_KEYS and loss is None:
                    loss = f
            rec: dict[str, Any] = {"kind": KIND_SCALARS, "step": int(step), "time": time.time(), "values": values}
            if nonfinite:
                rec["nonfinite"] = nonfinite
            writer.append(STREAM_SCALARS, rec)
            self.last_step = int(step)
            if loss is not None:
                if self._loss0 is None:
                    self._loss0 = loss
                elif (not self._explode_reported and not self._nan_reported and self._loss0 > 0
                      and loss > self.explode_factor * self._loss0):  # after a NaN a blow-up adds nothing
                    self._explode_reported = True
                    blown = loss_explosion_finding(int(step), loss, self._loss0, self.explode_factor)
                    self.finding(blown)
            if bad_loss is not None and not self._nan_reported:
                self._nan_reported = True
                self.finding(nan_loss_finding(int(step), bad_loss, first=self._loss0))
        for fn in self._on_log:  # outside the lock: a callback may read the run or close this Monitor
            fn(self, int(step), values)
        if blown is not None:
            if self.on_explode == "raise":
                raise TrainingDivergedError(
                    f"{blown.message} Lower the learning rate (often 10x). Run: {self.run_dir}",
                    step=int(step), reason="explosion")
            if self.on_explode == "warn":
                log.warning("Babysitter: %s (run %s)", blown.message, self.run_dir)
        if bad_loss is not None:
            if self.on_nan == "raise":
                raise TrainingDivergedError(
                    f"loss is {bad_loss} at step {step}: training diverged. Lower the learning rate "
                    f"(often 10x). Run: {self.run_dir}", step=int(step), reason=bad_loss)
            if self.on_nan == "warn" and not self._warned_nan:
                self._warned_nan = True
                log.warning("Babysitter: loss is %s at step %d; training diverged (run %s)", bad_loss, step, self.run_dir)

    # -- frameworks ------------------------------------------------------------------------

    def watch(self, model: Any, optimizer: Any = None, **options: Any) -> Any:
        """Record a PyTorch model and its optimizer(s) with hooks (imports torch only now).

        Every watched layer's output (modules and activation functions called in ``forward``),
        the model input, and each parameter's weight, update and gradient statistics are
        recorded on logged steps; the learning rate of each optimizer and parameter group is
        added to every ``log`` call. Each ``log(step, ...)`` ends an iteration: its records carry
        that ``step``. With an optimizer, only forwards in training mode are recorded. The hooks
        are removed when the Monitor closes.

        Args:
            model: a ``torch.nn.Module`` (also compiled with ``torch.compile``, or in DataParallel/DDP).
            optimizer: a ``torch.optim.Optimizer``, a list of them, or ``None`` (activations only;
                optimizers created later that step the model's parameters are found on their own).
            **options: ``start_step`` (int, 0), ``log_input`` (bool, True), ``hist_sample``
                (values binned per layer, 16384), ``defer_scalars``, ``kinds`` (layer kinds of
                custom modules, e.g. ``{MySwish: "silu"}``), ``functional`` (bool, True),
                ``scaler`` (the AMP ``GradScaler``), see ``TorchWatch``.

        Returns:
            The ``TorchWatch`` handle: ``remove()`` (safe twice) or a ``with`` block ends it early.

        Raises:
            ConfigError: when ``model``/``optimizer`` are not torch objects or an option is out of range.
        """
        from ._torch import watch_model

        return watch_model(self, model, optimizer, **options)

    # -- adapters (monitor/_adapter.py) ----------------------------------------------------

    @property
    def adapters(self) -> list[Adapter]:
        """The framework adapters attached, in the order they were attached."""
        with self._lock:
            return list(self._adapters)

    def attach(self, adapter: Adapter) -> None:
        """Register a framework adapter: it sees every ``log`` call's scalars first and is closed with the Monitor.

        Calls ``adapter.attach(self)``; attaching an attached adapter again does nothing.

        Raises:
            ConfigError: when the Monitor is closed.
        """
        with self._lock:
            if self._closed:
                raise ConfigError(f"cannot attach {adapter!r}: the Monitor is closed (open a new one)")
            if any(a is adapter for a in self._adapters):
                return
        adapter.attach(self)
        with self._lock:
            self._adapters.append(adapter)

    def detach(self, adapter: Adapter) -> None:
        """Forget an adapter (called by its own ``close``); an adapter not attached is ignored."""
        with self._lock:
            self._adapters = [a for a in self._adapters if a is not adapter]

    def _repr_html_(self) -> str:
        """Jupyter: the run as written so far: status, findings with fixes, loss curve, layer table."""
        from core.notebook import run_html
        from core.reader import Run

        if self._writer is None:
            import html

            return f"<div>Babysitter run in {html.escape(str(self.logdir))}: not started yet (no step logged)</div>"
        with self._lock:
            self._flush_pending()
        return run_html(Run(self._writer.run_dir))

    def __repr__(self) -> str:
        where = self._writer.run_dir if self._writer else self.logdir / (self.name or "<not opened>")
        return f"Monitor({str(where)!r}, every={self.every}, rank={self.rank})"
