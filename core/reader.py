"""Reading run folders into columnar data, incrementally.

``Run`` reads one run folder; ``Run.update()`` parses only the bytes appended since the
previous call (``core._tail.FileTail``) and appends them to numpy columns:

* scalars: one ``Series`` (steps, values) per (rank, name); NaN/Inf restored from ``nonfinite``;
* layer activations (``acts``): a table with one row per logged step and one column per
  layer for every field of ``ACT_FIELDS``, and histograms ``[row, layer, bin]`` with their
  ``lo``/``hi``. Histogram rows are thinned (every other one dropped) past ``max_hist_rows``
  so memory stays bounded on long runs; scalar statistics are all kept;
* parameters (``params``): the same table shape for ``PARAM_FIELDS``;
* the input batch statistics, and findings written by the training process.

What one run may make the reader hold is bounded (``core.schema``: ``MAX_LAYERS``,
``MAX_PARAMS``, ``MAX_SCALARS`` names, ``MAX_BINS`` bins, a histogram cell budget that
thins old rows sooner for wide models): a record that would pass a bound is skipped and
reported, so a small file can never make the reader allocate gigabytes.

Layer and parameter statistics are kept for one rank, the lowest seen unless
``Run(path, stats_rank=r)`` asks for another (``core.diagnose.Diagnoser`` reads every
other rank that way to find what one rank shows and the lowest does not); every rank's scalars
are kept. Nothing read is ever evaluated: records are parsed as strict JSON and
checked field by field. Problems (corrupt lines, a missing ``meta.json``, a future format
version) are collected in ``Run.problems`` with file and line, never raised.

``core.logdir.LogDir`` lists the runs of a log directory, opens each lazily and refreshes
only the runs marked dirty (by a file watcher) or all of them on demand. The columns the
reader fills are in ``core._columns``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson

from ._columns import Grow, ScalarCol, Series, Table, number_or_nan
from ._sample import Sampled, Sampling
from ._tail import MAX_LINE, FileTail
from .errors import RunNotFoundError
from .schema import (
    ACT_FIELDS, DATA_SUFFIX, ENDED_STATUSES, FORMAT_VERSION, HEARTBEAT_FILE, INPUT_FIELDS, KIND_ACTS,
    KIND_FINDING, KIND_INPUT, KIND_PARAMS, KIND_SCALARS, MAX_LAYERS, MAX_NESTING, MAX_PARAMS, MAX_SCALARS,
    META_FILE, PARAM_FIELDS, Finding, Meta, Problem, metric_key, rank_of,
)

log = logging.getLogger(__name__)

__all__ = ["Run", "Series", "Table", "STALE_AFTER", "activity_status", "is_run_dir", "pid_alive"]

STALE_AFTER = 60.0  # seconds without a heartbeat or write before a "running" run is shown as crashed
MAX_PROBLEMS = 1000  # problems kept per run (the count goes on)
_NAN = float("nan")
_VERSIONS = itertools.count(1)
_TAGS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


_TOO_DEEP = "<nested too deep>"
_NAMES_KEY = {KIND_ACTS: "layers", KIND_PARAMS: "params"}  # the key listing the columns of each table kind


def _time_of(rec: dict[str, Any]) -> float:
    """A record's ``time`` as a float (NaN when missing or not a number)."""
    t = rec.get("time")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else _NAN


def _clip_depth(v: Any, depth: int, cut: list[str], where: str = "") -> Any:
    """``v`` with containers nested more than ``depth`` levels replaced by ``_TOO_DEEP``.

    orjson reads up to 1,024 levels; the summaries, ``json.dumps`` and ``dataclasses.asdict``
    downstream recurse in Python and would hit the recursion limit. ``cut`` collects where.
    """
    if isinstance(v, dict):
        if depth <= 0:
            cut.append(where)
            return _TOO_DEEP
        return {k: _clip_depth(x, depth - 1, cut, f"{where}.{k}"[:80]) for k, x in v.items()}
    if isinstance(v, list):
        if depth <= 0:
            cut.append(where)
            return _TOO_DEEP
        return [_clip_depth(x, depth - 1, cut, f"{where}[{i}]"[:80]) for i, x in enumerate(v)]
    return v


_PID_MAX = 1 << 22  # Linux's largest pid_max; a larger (or non-positive) pid is no process of this host


def pid_alive(pid: int) -> bool | None:
    """Whether process ``pid`` of this host is alive; None when ``pid`` cannot name one.

    ``meta.json`` may hold any integer: ``os.kill`` would raise ``OverflowError`` past 2**31,
    and 0 or a negative pid would ask about a whole process group, so those are not asked.
    """
    if not 0 < pid <= _PID_MAX:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True
    try:  # a zombie (killed, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return True


def activity_status(meta_status: str, pid: int | None, host: str | None, activity: float, *,
                    now: float | None = None, stale_after: float = STALE_AFTER) -> str:
    """A run's status from its ``meta.json`` status, writer and newest file time (``Run.status``'s rule).

    An ended status is kept; a ``running`` run is ``crashed`` when its process is gone (same
    host) or nothing was written for ``stale_after`` seconds, else ``live``.
    """
    if meta_status in ENDED_STATUSES:
        return meta_status
    now = time.time() if now is None else now
    if pid and host == socket.gethostname() and pid_alive(pid) is False:
        return "crashed"
    return "live" if now - activity <= stale_after else "crashed"


def is_run_dir(path: Path) -> bool:
    """True when ``path`` is a folder holding ``meta.json`` or a ``*.jsonl`` file."""
    try:
        if not path.is_dir():
            return False
        if (path / META_FILE).exists():
            return True
        return any(p.name.endswith(DATA_SUFFIX) for p in path.iterdir())
    except OSError:
        return False


class Run:
    """One run folder, read incrementally.

    Args:
        path: the run folder.
        max_hist_rows: histogram rows kept per table before thinning.
        max_line: longest line kept, in bytes.
        stats_rank: the data-parallel rank whose layer, parameter and input statistics are
            kept (``None``: the lowest rank with a data file).
        sample: open data files larger than ``sample.above`` bytes sampled (``core._sample``:
            evenly spaced lines and the tail, then every finding); None reads every line.

    Raises:
        RunNotFoundError: when ``path`` is not a folder.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_hist_rows: int = 2048, max_line: int = MAX_LINE,
                 stats_rank: int | None = None, sample: Sampling | None = None) -> None:
        self._want_rank = stats_rank
        self.sample = sample
        self.path = Path(path)
        if not self.path.is_dir():
            raise RunNotFoundError(f"{self.path} is not a run folder (expected a folder with meta.json and *.jsonl files)")
        self.name = self.path.name
        self.max_hist_rows = max_hist_rows
        self.max_line = max_line
        self._lock = threading.RLock()
        self.version = 0  # changes (to a number no Run of this process had) whenever what was read changes
        self.data_version = 0  # ``version`` at new records, problems, meta.json, a search's end: what summaries follow
        self._reset_state()

    def _reset_state(self) -> None:
        self.meta = Meta(run=self.name)
        self._meta_sig: tuple[int, int, int] | None = None
        self._meta_problem: Problem | None = None
        self._tails: dict[str, FileTail] = {}
        self._scalars: dict[tuple[int, str], ScalarCol] = {}
        self._scalar_count: dict[int, int] = {}  # scalar names per rank
        self.acts = Table(ACT_FIELDS, with_hist=True, max_hist_rows=self.max_hist_rows, max_cols=MAX_LAYERS)
        self.params = Table(PARAM_FIELDS, max_cols=MAX_PARAMS, what="parameters")
        self._input: dict[str, Grow] = {f: Grow(np.float64) for f in ("step", *INPUT_FIELDS)}
        self.findings: list[Finding] = []
        self.finding_ranks: list[int] = []  # the rank whose file held each of ``findings``
        self.problems: list[Problem] = []
        self.problem_count = 0
        self.records_read = 0
        self.records_by_rank: dict[int, int] = {}
        self.stats_rank: int | None = self._want_rank
        self.last_step: int | None = None
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.bytes_read = 0
        self._sample_moved = False
        # True while a sampled file's skipped part is still being searched for findings (each
        # ``update`` goes on with it); a plain flag, so a refresh asks without waiting for the lock.
        self.searching = False

    # -- reading ---------------------------------------------------------------------------

    def update(self) -> int:
        """Read what was appended since the last call. Returns the number of new records.

        A data file that shrank or was replaced makes the whole run be read again from the
        start (the version changes). Never raises for anything in the files.
        """
        with self._lock:
            created, problems, searching = self.meta.created, self.problem_count, self.searching
            changed = self._read_meta()
            n, reset = self._read_data()
            if created is not None and self.meta.created != created:
                reset = True  # the folder was deleted and made again under the same name
            if reset:
                log.info("run %s was rewritten; reading it again", self.name)
                self._reset_state()
                self._read_meta()
                n, _ = self._read_data()
                changed = True
            if n or changed or self._sample_moved:
                self._sample_moved = False
                # From one process-wide counter: a run deleted and made again under the same name
                # (a new Run) never repeats a version an open page already shows.
                self.version = next(_VERSIONS)
                if n or changed or self.problem_count != problems or self.searching != searching:
                    self.data_version = self.version
            return n

    def _problem(self, p: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(p)

    def _read_meta(self) -> bool:
        mp = self.path / META_FILE
        try:
            st = mp.lstat()
        except FileNotFoundError:
            if self._meta_sig != (0, 0, 0):
                self._meta_sig = (0, 0, 0)
                self._meta_problem = Problem(META_FILE, 0, "missing; the run is shown without hyperparameters or layer order")
                return True
            return False
        except OSError as err:
            self._meta_problem = Problem(META_FILE, 0, f"cannot stat: {err}")
            return False
        sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        if sig == self._meta_sig:
            return False
        self._meta_sig = sig
        if not stat.S_ISREG(st.st_mode):
            # A symlink could point outside the log directory, a device could be endless: never read them.
            self._meta_problem = Problem(META_FILE, 0, "not a regular file (a symlink or a device); ignored")
            return True
        try:
            if st.st_size > 16 << 20:
                raise ValueError(f"{st.st_size} bytes is too large for meta.json")
            fd = os.open(mp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                obj = orjson.loads(f.read(16 << 20))
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        except (OSError, ValueError, orjson.JSONDecodeError) as err:
            self._meta_problem = Problem(META_FILE, 0, f"unreadable ({str(err)[:160]}); kept the previous contents")
            return True
        cut: list[str] = []
        obj = _clip_depth(obj, MAX_NESTING, cut)
        meta = Meta.from_json(obj)
        if not meta.run:
            meta.run = self.name
        self._meta_problem = None
        if meta.ignored:
            self._meta_problem = Problem(META_FILE, 0, "fields of the wrong type ignored: " + ", ".join(meta.ignored))
        if cut:
            self._meta_problem = Problem(META_FILE, 0, f"values nested more than {MAX_NESTING} levels deep were cut "
                                         f"at {', '.join(c.lstrip('.') for c in cut[:3])[:200]}")
        if meta.format_version > FORMAT_VERSION:
            self._meta_problem = Problem(
                META_FILE, 0, f"format_version {meta.format_version} is newer than this reader's {FORMAT_VERSION}; "
                "reading the fields it knows (upgrade Babysitter to see the rest)")
        self.meta = meta
        return True

    def _data_files(self) -> list[str]:
        try:
            # Symlinks are not followed: a data file never leads the reader outside the log directory.
            return sorted(e.name for e in os.scandir(self.path)
                          if e.name.endswith(DATA_SUFFIX) and e.is_file(follow_symlinks=False))
        except OSError:
            return []

    def _read_data(self) -> tuple[int, bool]:
        total = 0
        files = self._data_files()
        if self.stats_rank is None and files:
            self.stats_rank = min(rank_of(f) for f in files)
        for fname in files:
            tail = self._tails.get(fname)
            if tail is None:
                tail = self._tails[fname] = FileTail(self.path / fname, fname, self.max_line)
            rank = rank_of(fname)
            got = [0]

            def sink(records: list[dict[str, Any]], problems: list[Problem], fname: str = fname, rank: int = rank,
                     got: list[int] = got) -> None:
                # Ingested chunk by chunk: a first load never holds the whole file as dicts.
                for p in problems:
                    self._problem(p)
                self._ingest(fname, rank, records)
                got[0] += len(records)

            res = tail.read_new(sink, self.sample)
            total += got[0]
            self._sample_moved |= res.sampled  # a search that found nothing still changes what the page says
            if res.reset:
                return total, True
            self.bytes_read += res.bytes_read
            for p in res.problems:
                self._problem(p)
        self.searching = any(t.sampled is not None and not t.sampled.searched for t in self._tails.values())
        # Files removed while watched: their records stay, the file is forgotten.
        return total, False

    def sampled(self) -> list[Sampled]:
        """What the sampled opens of this run's data files took (empty when every line was read)."""
        with self._lock:
            return [t.sampled for t in self._tails.values() if t.sampled is not None]

    def _ingest(self, fname: str, rank: int, records: list[dict[str, Any]]) -> None:
        self.records_by_rank[rank] = self.records_by_rank.get(rank, 0) + len(records)
        self.records_read += len(records)
        problems: list[Problem] = []
        # The kept rank's layer and parameter records are gathered while each lists the same names
        # as the one before of its kind (a run logs the same layers at every step), and each such
        # run goes into its table at once (``Table.add_many``). Tables, scalars and findings are
        # independent, so the records of one kind keep their order and nothing else depends on it.
        runs: dict[str, list[dict[str, Any]]] = {}
        for rec in records:
            kind = rec["kind"]
            key = _NAMES_KEY.get(kind)
            if key is not None and rank == self.stats_rank:
                run = runs.get(kind)
                if run and rec.get(key) != run[0].get(key):
                    self._ingest_run(fname, rank, kind, run, problems)
                    run = None
                if not run:
                    run = runs[kind] = []
                run.append(rec)
                continue
            self._ingest_rec(fname, rank, rec, problems)
        for kind, run in runs.items():
            self._ingest_run(fname, rank, kind, run, problems)
        problems.sort(key=lambda p: p.line)
        for p in problems:
            self._problem(p)

    def _ingest_rec(self, fname: str, rank: int, rec: dict[str, Any], problems: list[Problem]) -> None:
        try:
            self._ingest_one(rank, rec)
        except (ValueError, TypeError, KeyError, OverflowError) as err:
            problems.append(Problem(fname, rec.get("_line", 0), f"bad {rec.get('kind')} record ({str(err)[:160]}); skipped"))

    def _ingest_run(self, fname: str, rank: int, kind: str, recs: list[dict[str, Any]], problems: list[Problem]) -> None:
        """Records of the kept rank of one table kind, each listing the same names: at once, else one by one."""
        table = self.acts if kind == KIND_ACTS else self.params
        names = recs[0].get(_NAMES_KEY[kind])
        if len(recs) > 1 and isinstance(names, list) and (table.known(names) or all(isinstance(n, str) for n in names)):
            steps = [rec["step"] for rec in recs]
            times = [_time_of(rec) for rec in recs]
            if table.add_many(steps, times, names, recs):
                for step, t in zip(steps, times):
                    self._saw(step, t)
                return
        for rec in recs:
            self._ingest_rec(fname, rank, rec, problems)

    def _ingest_one(self, rank: int, rec: dict[str, Any]) -> None:
        kind = rec["kind"]
        step = rec["step"]
        t = _time_of(rec)
        if kind == KIND_SCALARS:
            values = rec.get("values")
            if not isinstance(values, dict):
                raise ValueError("'values' must be an object")
            nonfinite = rec.get("nonfinite") if isinstance(rec.get("nonfinite"), dict) else {}
            # Check every value before adding any: a bad record is skipped whole, never half-added.
            points: list[tuple[str, float]] = []
            for key, v in values.items():
                if v is None:
                    tag = nonfinite.get(key)
                    if tag not in _TAGS:
                        continue
                    points.append((key, _TAGS[tag]))
                elif isinstance(v, (int, float)) and not isinstance(v, bool):
                    points.append((key, float(v)))
                else:
                    raise ValueError(f"scalar {key!r} must be a number or null, got {type(v).__name__}")
            new = sum(1 for key, _ in points if (rank, key) not in self._scalars)
            if new and self._scalar_count.get(rank, 0) + new > MAX_SCALARS:
                raise ValueError(f"{new} new scalar names after {self._scalar_count.get(rank, 0)}; a run may have "
                                 f"at most {MAX_SCALARS} per rank")
            self._scalar_count[rank] = self._scalar_count.get(rank, 0) + new
            for key, fv in points:
                col = self._scalars.get((rank, key))
                if col is None:
                    col = self._scalars[(rank, key)] = ScalarCol()
                col.add(step, fv, t)
        elif kind == KIND_ACTS:
            names = rec.get("layers")
            if not isinstance(names, list) or not (self.acts.known(names) or all(isinstance(n, str) for n in names)):
                raise ValueError("'layers' must be a list of names")
            if rank != self.stats_rank:
                self.acts.parse(names, rec)  # checked (and reported) on every rank, kept for one
                return
            self.acts.add(step, t, names, rec)
        elif kind == KIND_PARAMS:
            names = rec.get("params")
            if not isinstance(names, list) or not (self.params.known(names) or all(isinstance(n, str) for n in names)):
                raise ValueError("'params' must be a list of names")
            if rank != self.stats_rank:
                self.params.parse(names, rec)
                return
            self.params.add(step, t, names, rec)
        elif kind == KIND_INPUT:
            vals = [number_or_nan(rec.get(f), f) for f in INPUT_FIELDS]
            if rank != self.stats_rank:
                return
            self._input["step"].append(step)
            for f, v in zip(INPUT_FIELDS, vals):
                self._input[f].append(v)
        elif kind == KIND_FINDING:
            f = Finding.from_json(rec)
            if f is None:
                raise ValueError("a finding needs rule, severity (error/warning/info) and step")
            self.findings.append(f)
            self.finding_ranks.append(rank)
        self._saw(step, t)

    def _saw(self, step: int, t: float) -> None:
        """A record at ``step`` written at ``t`` was kept: the run's last step and time span."""
        if self.last_step is None or step > self.last_step:
            self.last_step = step
        if t == t:
            self.first_time = t if self.first_time is None else min(self.first_time, t)
            self.last_time = t if self.last_time is None else max(self.last_time, t)

    # -- access ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator["Run"]:
        """Hold updates off while the caller reads several columns, so they all describe one moment.

        ``update()`` (from another thread) appends rows and layers in place: without this, the
        steps taken first and a field taken next can differ in length. Keep the block short
        (copy what is needed, draw after it)::

            with run.reading():
                steps, ratio = run.params.step_array().copy(), run.params.field("upd_ratio").copy()
        """
        with self._lock:
            yield self

    def scalar_names(self, rank: int = 0) -> list[str]:
        """Names of the scalars recorded by ``rank``."""
        with self._lock:
            return sorted(k for r, k in self._scalars if r == rank)

    def ranks(self) -> list[int]:
        return sorted(self.records_by_rank)

    def scalar(self, name: str, rank: int = 0) -> Series:
        """The series ``name`` of ``rank`` (empty when never recorded)."""
        with self._lock:
            col = self._scalars.get((rank, name))
            if col is None:
                e = np.empty(0)
                return Series(name, e.astype(np.int64), e, e)
            return col.series(name)

    def metric(self, metric: str, rank: int = 0) -> Series:
        """The series of ``metric`` under whichever alias the run logged it (``schema.METRIC_ALIASES``).

        ``run.metric("val_acc")`` finds ``val_acc``, ``val_accuracy``, ``eval_accuracy``...; the
        returned series carries the logged name. Empty when the run logged none of them.
        """
        key = metric_key(self.scalar_names(rank), metric)
        return self.scalar(key if key is not None else metric, rank)

    def scalar_since(self, name: str, start: int, rank: int = 0) -> Series:
        """The points of ``name`` from position ``start`` on, in the order read (not re-sorted).

        For incremental consumers (the diagnosis engine): remember ``start + len(result)`` and
        ask again after the next ``update()``; the cost is that of the new points only.
        """
        with self._lock:
            col = self._scalars.get((rank, name))
            if col is None or start >= col.steps.n:
                e = np.empty(0)
                return Series(name, e.astype(np.int64), e, e)
            sl = slice(max(0, start), col.steps.n)
            return Series(name, col.steps.a[sl].copy(), col.values.a[sl].copy(), col.times.a[sl].copy())

    def input_since(self, start: int) -> dict[str, np.ndarray]:
        """Input-batch statistics from row ``start`` on (as ``input_stats``, for incremental consumers)."""
        with self._lock:
            return {k: g.a[max(0, start): g.n].copy() for k, g in self._input.items()}

    def scalars_frame(self, rank: int = 0):
        """All scalars of ``rank`` as a pandas DataFrame indexed by step (one column per name)."""
        import pandas as pd

        with self._lock:
            cols = {}
            for name in self.scalar_names(rank):
                s = self.scalar(name, rank)
                cols[name] = pd.Series(s.values, index=s.steps).groupby(level=0).last()
            df = pd.DataFrame(cols)
            df.index.name = "step"
            return df

    def input_stats(self) -> dict[str, np.ndarray]:
        """Input-batch statistics: arrays ``step``, ``mean``, ``std``, ``min``, ``max``, ``nan``, ``inf``."""
        with self._lock:
            return {k: g.view().copy() for k, g in self._input.items()}

    def layer_kinds(self) -> dict[str, str]:
        """Layer name to kind, from ``meta.json``."""
        return {li.name: li.kind for li in self.meta.layers}

    def layer_types(self) -> dict[str, str]:
        """Layer name to what computes it (module class name, ``relu()``), for layers ``meta.json`` says."""
        return {li.name: li.type for li in self.meta.layers if li.type}

    def layer_order(self) -> list[str]:
        """Recorded layers in depth order: ``meta.json``'s order first, then any others as first seen."""
        declared = [li.name for li in self.meta.layers]
        seen = set(self.acts.names)
        return [n for n in declared if n in seen] + [n for n in self.acts.names if n not in set(declared)]

    def all_problems(self) -> list[Problem]:
        """Every problem found so far (meta.json first)."""
        return ([self._meta_problem] if self._meta_problem else []) + list(self.problems)

    def pending(self) -> dict[str, int]:
        """Data files whose last line has no newline yet, with its byte count.

        Such a line is "not yet written" (a writer mid-line, or one killed mid-write),
        never a problem; it is parsed once its newline arrives.
        """
        with self._lock:
            return {name: t.pending_bytes for name, t in self._tails.items() if t.pending_bytes}

    def _repr_html_(self) -> str:
        """Jupyter: the run's status, findings with fixes, loss curve and layer table (``core.notebook``)."""
        from .notebook import run_html

        return run_html(self)

    def status(self, now: float | None = None, stale_after: float = STALE_AFTER) -> str:
        """``"finished"``, ``"stopped"``, ``"crashed"`` or ``"live"``.

        A run whose ``meta.json`` still says ``running`` is ``crashed`` when its process is
        gone (same host) or when neither its heartbeat file nor any data file changed for
        ``stale_after`` seconds (a process killed with SIGKILL cannot mark itself).
        """
        if self.meta.status in ENDED_STATUSES:
            return self.meta.status
        return activity_status(self.meta.status, self.meta.pid, self.meta.host, self.last_activity(),
                               now=now, stale_after=stale_after)

    def last_activity(self) -> float:
        """Newest mtime of the heartbeat, ``meta.json`` and the data files."""
        newest = 0.0
        try:
            for e in os.scandir(self.path):
                if e.name == HEARTBEAT_FILE or e.name == META_FILE or e.name.endswith(DATA_SUFFIX):
                    try:
                        newest = max(newest, e.stat().st_mtime)
                    except OSError:
                        pass
        except OSError:
            pass
        return newest

    def memory_bytes(self) -> int:
        """Approximate bytes held by the columns of this run."""
        total = self.acts.nbytes() + self.params.nbytes()
        for col in self._scalars.values():
            total += col.steps.a.nbytes + col.values.a.nbytes + col.times.a.nbytes
        return total

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, records={self.records_read}, layers={len(self.acts.names)})"
