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

``LogDir`` lists the runs of a log directory, opens each lazily and refreshes only the
runs marked dirty (by a file watcher) or all of them on demand.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson

from ._tail import MAX_LINE, FileTail
from .errors import RunNotFoundError
from .schema import (
    ACT_FIELDS, DATA_SUFFIX, ENDED_STATUSES, FORMAT_VERSION, HEARTBEAT_FILE, INPUT_FIELDS, KIND_ACTS,
    KIND_FINDING, KIND_INPUT, KIND_PARAMS, KIND_SCALARS, MAX_BINS, MAX_LAYERS, MAX_NESTING, MAX_PARAMS, MAX_SCALARS,
    META_FILE, PARAM_FIELDS, Finding, Meta, Problem, metric_key, rank_of,
)

log = logging.getLogger(__name__)

__all__ = ["Run", "LogDir", "Series", "Table", "STALE_AFTER", "is_run_dir"]

STALE_AFTER = 60.0  # seconds without a heartbeat or write before a "running" run is shown as crashed
MAX_PROBLEMS = 1000  # problems kept per run (the count goes on)
_NAN = float("nan")
_VERSIONS = itertools.count(1)
_TAGS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


_TOO_DEEP = "<nested too deep>"


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


class _Grow:
    """A growable 1-D numpy column."""

    __slots__ = ("a", "n")

    def __init__(self, dtype: Any, cap: int = 64) -> None:
        self.a = np.empty(cap, dtype=dtype)
        self.n = 0

    def append(self, x: Any) -> None:
        if self.n == len(self.a):
            self.a = np.resize(self.a, max(64, 2 * len(self.a)))
        self.a[self.n] = x
        self.n += 1

    def view(self) -> np.ndarray:
        return self.a[: self.n]


@dataclass(frozen=True, slots=True)
class Series:
    """One scalar series, sorted by step.

    Attributes:
        name: the scalar's name (``"loss"``, ``"val_acc"``, ...).
        steps: int64 steps.
        values: float64 values; NaN/Inf where the training recorded them, NaN where missing.
        times: wall-clock seconds of each point.
    """

    name: str
    steps: np.ndarray
    values: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)


class _ScalarCol:
    __slots__ = ("steps", "values", "times", "sorted")

    def __init__(self) -> None:
        self.steps, self.values, self.times = _Grow(np.int64), _Grow(np.float64), _Grow(np.float64)
        self.sorted = True

    def add(self, step: int, value: float, t: float) -> None:
        if self.steps.n and step < self.steps.a[self.steps.n - 1]:
            self.sorted = False
        self.steps.append(step)
        self.values.append(value)
        self.times.append(t)

    def series(self, name: str) -> Series:
        s, v, t = self.steps.view(), self.values.view(), self.times.view()
        if not self.sorted:
            order = np.argsort(s, kind="stable")
            s, v, t = s[order], v[order], t[order]
        return Series(name, s.copy(), v.copy(), t.copy())


class Table:
    """Per-step, per-name statistics: ``values[field][row, col]`` with ``steps[row]`` and ``names[col]``.

    Rows are logged steps in the order read; columns are layers (or parameter tensors) in
    the order first seen. Missing entries are NaN. Histograms, when kept, are
    ``hist[hrow, col, bin]`` for the rows in ``hist_steps``.
    """

    def __init__(self, fields: tuple[str, ...], with_hist: bool = False, max_hist_rows: int = 2048,
                 max_cols: int = MAX_LAYERS, what: str = "layers", max_hist_cells: int = 1 << 25) -> None:
        self.fields = fields
        self.max_cols = max_cols  # names this table takes; records that would add more are refused
        self.what = what
        self.max_hist_cells = max_hist_cells  # kept histogram cells (rows x columns x bins) before thinning
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.n = 0
        self._cap_rows, self._cap_cols = 0, 0
        self.steps = np.empty(0, np.int64)
        self.times = np.empty(0, np.float64)
        self.values: dict[str, np.ndarray] = {f: np.empty((0, 0)) for f in fields}
        self.with_hist = with_hist
        self.max_hist_rows = max_hist_rows
        self.hist_rows: list[int] = []  # table row of each kept histogram row
        self.hist_stride = 1
        self._hist: np.ndarray | None = None  # [hrow, col, bin] int64
        self._hist_lo: np.ndarray | None = None
        self._hist_hi: np.ndarray | None = None
        self._bins = 0

    # Capacity grows by doubling in both directions; copies are amortised.
    def _ensure(self, rows: int, cols: int) -> None:
        if rows <= self._cap_rows and cols <= self._cap_cols:
            return
        nr = max(self._cap_rows, 16)
        while nr < rows:
            nr *= 2
        # Columns: exactly what the first record needs (100 layers -> 100, not 128), then doubling.
        nc = max(self._cap_cols, 4) if self._cap_cols else max(cols, 4)
        while nc < cols:
            nc *= 2
        for f in self.fields:
            new = np.full((nr, nc), _NAN)
            old = self.values[f]
            new[: old.shape[0], : old.shape[1]] = old
            self.values[f] = new
        self.steps = np.resize(self.steps, nr)
        self.times = np.resize(self.times, nr)
        if self._hist is not None and nc > self._hist.shape[1]:
            h = np.zeros((self._hist.shape[0], nc, self._bins), np.int64)
            h[:, : self._hist.shape[1]] = self._hist
            self._hist = h
            for attr in ("_hist_lo", "_hist_hi"):
                old = getattr(self, attr)
                new = np.full((old.shape[0], nc), _NAN)
                new[:, : old.shape[1]] = old
                setattr(self, attr, new)
        self._cap_rows, self._cap_cols = nr, nc

    def parse(self, names: list[str], rec: dict[str, Any]) -> tuple[dict[str, np.ndarray], tuple[Any, ...] | None]:
        """Check and convert one record's columns without storing them.

        Returns:
            ``(fields, hist)``: each present field as a float array parallel to ``names``, and
            ``(counts, lo, hi)`` when the record has histograms this table keeps.

        Raises:
            ValueError, TypeError: for a malformed record.
        """
        k = len(names)
        if k > self.max_cols:  # checked first: nothing is allocated for a record listing a million names
            raise ValueError(f"{k} {self.what} in one record; a run may have at most {self.max_cols}")
        if len(set(names)) != k:
            raise ValueError("names repeat")
        parsed: dict[str, np.ndarray] = {}
        for f in self.fields:
            v = rec.get(f)
            if v is None:
                continue
            arr = np.asarray(v, dtype=np.float64)
            if arr.shape != (k,):
                raise ValueError(f"field {f!r} has {arr.size} values for {k} names")
            parsed[f] = arr
        hist = None
        if self.with_hist and rec.get("hist") is not None:
            hist = np.asarray(rec["hist"], dtype=np.int64)
            lo = np.asarray(rec.get("hist_lo"), dtype=np.float64)
            hi = np.asarray(rec.get("hist_hi"), dtype=np.float64)
            if hist.ndim != 2 or hist.shape[0] != k or lo.shape != (k,) or hi.shape != (k,) or hist.shape[1] < 1:
                raise ValueError("hist, hist_lo and hist_hi must have one entry per name")
            if hist.shape[1] > MAX_BINS:
                raise ValueError(f"hist has {hist.shape[1]} bins; at most {MAX_BINS} are read")
            if self._bins and hist.shape[1] != self._bins:
                raise ValueError(f"hist has {hist.shape[1]} bins; this run uses {self._bins}")
            return parsed, (hist, lo, hi)
        return parsed, None

    def add(self, step: int, t: float, names: list[str], rec: dict[str, Any]) -> None:
        """Append one record's columns. Raises ValueError/TypeError on a malformed record (nothing is added then)."""
        parsed, h = self.parse(names, rec)
        k = len(names)
        cols_new = [n for n in names if n not in self.index]
        if len(self.names) + len(cols_new) > self.max_cols:
            raise ValueError(f"{len(cols_new)} new {self.what} after {len(self.names)}; a run may have at most "
                             f"{self.max_cols} (records with more are skipped)")
        for n in cols_new:
            self.index[n] = len(self.names)
            self.names.append(n)
        row = self.n
        self._ensure(row + 1, len(self.names))
        idx = np.fromiter((self.index[n] for n in names), np.intp, k)
        self.steps[row] = step
        self.times[row] = t
        for f, arr in parsed.items():
            self.values[f][row, idx] = arr
        self.n += 1
        if h is not None:
            self._add_hist(row, idx, *h)

    def _add_hist(self, row: int, idx: np.ndarray, hist: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        if row % self.hist_stride:
            return
        if self._hist is None:
            self._bins = hist.shape[1]
            self._hist = np.zeros((16, self._cap_cols, self._bins), np.int64)
            self._hist_lo = np.full((16, self._cap_cols), _NAN)
            self._hist_hi = np.full((16, self._cap_cols), _NAN)
        hrow = len(self.hist_rows)
        if hrow == self._hist.shape[0]:
            grow = hrow * 2
            self._hist = np.concatenate([self._hist, np.zeros((grow - hrow, *self._hist.shape[1:]), np.int64)])
            self._hist_lo = np.concatenate([self._hist_lo, np.full((grow - hrow, self._hist_lo.shape[1]), _NAN)])
            self._hist_hi = np.concatenate([self._hist_hi, np.full((grow - hrow, self._hist_hi.shape[1]), _NAN)])
        self._hist[hrow, idx] = hist
        self._hist_lo[hrow, idx] = lo
        self._hist_hi[hrow, idx] = hi
        self.hist_rows.append(row)
        if (len(self.hist_rows) > self.max_hist_rows
                or len(self.hist_rows) * self._hist.shape[1] * self._bins > self.max_hist_cells):
            self._thin()

    def _thin(self) -> None:
        # Keep every other histogram row (the first one always) and take only every
        # 2*stride-th row from now on: memory stays within max_hist_rows on any run length.
        keep = np.arange(0, len(self.hist_rows), 2)
        m = len(keep)
        self._hist[:m] = self._hist[keep]
        self._hist_lo[:m] = self._hist_lo[keep]
        self._hist_hi[:m] = self._hist_hi[keep]
        self._hist[m:] = 0
        self._hist_lo[m:] = _NAN
        self._hist_hi[m:] = _NAN
        self.hist_rows = [self.hist_rows[i] for i in keep]
        self.hist_stride *= 2

    # -- access ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.n

    def field(self, name: str) -> np.ndarray:
        """``[row, col]`` values of one field (a view; NaN where missing)."""
        return self.values[name][: self.n, : len(self.names)]

    def step_array(self) -> np.ndarray:
        return self.steps[: self.n]

    def row_at(self, step: int) -> int | None:
        """The row of the last record at or before ``step``, or None."""
        s = self.step_array()
        if not len(s):
            return None
        pos = int(np.searchsorted(s, step, side="right")) - 1 if _is_sorted(s) else _last_le(s, step)
        return pos if pos >= 0 else None

    def histograms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, lo, hi, counts)``: kept histogram rows, ``lo``/``hi`` ``[hrow, col]``, counts ``[hrow, col, bin]``."""
        h = len(self.hist_rows)
        c = len(self.names)
        if self._hist is None:
            return np.empty(0, np.int64), np.empty((0, c)), np.empty((0, c)), np.empty((0, c, 0), np.int64)
        steps = self.steps[np.asarray(self.hist_rows, np.intp)] if h else np.empty(0, np.int64)
        return steps, self._hist_lo[:h, :c], self._hist_hi[:h, :c], self._hist[:h, :c]

    def nbytes(self) -> int:
        total = self.steps.nbytes + self.times.nbytes + sum(v.nbytes for v in self.values.values())
        for a in (self._hist, self._hist_lo, self._hist_hi):
            if a is not None:
                total += a.nbytes
        return total


def _number_or_nan(v: Any, field: str) -> float:
    if v is None:
        return _NAN
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{field!r} must be a number or null, got {type(v).__name__}")
    return float(v)


def _is_sorted(a: np.ndarray) -> bool:
    return bool(len(a) < 2 or np.all(a[1:] >= a[:-1]))


def _last_le(a: np.ndarray, x: int) -> int:
    hits = np.nonzero(a <= x)[0]
    return int(hits[-1]) if len(hits) else -1


_PID_MAX = 1 << 22  # Linux's largest pid_max; a larger (or non-positive) pid is no process of this host


def _pid_alive(pid: int) -> bool | None:
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

    Raises:
        RunNotFoundError: when ``path`` is not a folder.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_hist_rows: int = 2048, max_line: int = MAX_LINE,
                 stats_rank: int | None = None) -> None:
        self._want_rank = stats_rank
        self.path = Path(path)
        if not self.path.is_dir():
            raise RunNotFoundError(f"{self.path} is not a run folder (expected a folder with meta.json and *.jsonl files)")
        self.name = self.path.name
        self.max_hist_rows = max_hist_rows
        self.max_line = max_line
        self._lock = threading.RLock()
        self.version = 0  # changes (to a number no Run of this process had) whenever what was read changes
        self._reset_state()

    def _reset_state(self) -> None:
        self.meta = Meta(run=self.name)
        self._meta_sig: tuple[int, int, int] | None = None
        self._meta_problem: Problem | None = None
        self._tails: dict[str, FileTail] = {}
        self._scalars: dict[tuple[int, str], _ScalarCol] = {}
        self._scalar_count: dict[int, int] = {}  # scalar names per rank
        self.acts = Table(ACT_FIELDS, with_hist=True, max_hist_rows=self.max_hist_rows, max_cols=MAX_LAYERS)
        self.params = Table(PARAM_FIELDS, max_cols=MAX_PARAMS, what="parameters")
        self._input: dict[str, _Grow] = {f: _Grow(np.float64) for f in ("step", *INPUT_FIELDS)}
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

    # -- reading ---------------------------------------------------------------------------

    def update(self) -> int:
        """Read what was appended since the last call. Returns the number of new records.

        A data file that shrank or was replaced makes the whole run be read again from the
        start (the version changes). Never raises for anything in the files.
        """
        with self._lock:
            created = self.meta.created
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
            if n or changed:
                # From one process-wide counter: a run deleted and made again under the same name
                # (a new Run) never repeats a version an open page already shows.
                self.version = next(_VERSIONS)
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

            res = tail.read_new(sink)
            total += got[0]
            if res.reset:
                return total, True
            self.bytes_read += res.bytes_read
            for p in res.problems:
                self._problem(p)
        # Files removed while watched: their records stay, the file is forgotten.
        return total, False

    def _ingest(self, fname: str, rank: int, records: list[dict[str, Any]]) -> None:
        self.records_by_rank[rank] = self.records_by_rank.get(rank, 0) + len(records)
        for rec in records:
            self.records_read += 1
            try:
                self._ingest_one(rank, rec)
            except (ValueError, TypeError, KeyError, OverflowError) as err:
                self._problem(Problem(fname, rec.get("_line", 0), f"bad {rec.get('kind')} record ({str(err)[:160]}); skipped"))

    def _ingest_one(self, rank: int, rec: dict[str, Any]) -> None:
        kind = rec["kind"]
        step = rec["step"]
        t = rec.get("time")
        t = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else _NAN
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
                    col = self._scalars[(rank, key)] = _ScalarCol()
                col.add(step, fv, t)
        elif kind == KIND_ACTS:
            names = rec.get("layers")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError("'layers' must be a list of names")
            if rank != self.stats_rank:
                self.acts.parse(names, rec)  # checked (and reported) on every rank, kept for one
                return
            self.acts.add(step, t, names, rec)
        elif kind == KIND_PARAMS:
            names = rec.get("params")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError("'params' must be a list of names")
            if rank != self.stats_rank:
                self.params.parse(names, rec)
                return
            self.params.add(step, t, names, rec)
        elif kind == KIND_INPUT:
            vals = [_number_or_nan(rec.get(f), f) for f in INPUT_FIELDS]
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
        now = time.time() if now is None else now
        if self.meta.pid and self.meta.host == socket.gethostname() and _pid_alive(self.meta.pid) is False:
            return "crashed"
        return "live" if now - self.last_activity() <= stale_after else "crashed"

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


class LogDir:
    """The runs of a log directory, each read lazily and refreshed incrementally.

    Args:
        path: the log directory (it may not exist yet).
        max_hist_rows: passed to every ``Run``.

    Only direct sub-folders are runs; a run name is one folder name and never resolves
    outside ``path`` (symlinks pointing out are ignored).
    """

    def __init__(self, path: str | os.PathLike[str], *, max_hist_rows: int = 2048) -> None:
        self.path = Path(path)
        self.max_hist_rows = max_hist_rows
        self._runs: dict[str, Run] = {}
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._lock = threading.RLock()
        self.version = 0

    def _safe_child(self, name: str) -> Path | None:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
            return None
        child = self.path / name
        try:
            root = self.path.resolve()
            real = child.resolve()
        except (OSError, RuntimeError):
            return None
        if real.parent != root:
            return None
        return child

    def mark_dirty(self, name: str | None = None) -> None:
        """Note that run ``name`` (or, with None, the folder list) changed. Cheap; safe from any thread."""
        with self._lock:
            if name is None:
                self._all_dirty = True
            else:
                self._dirty.add(name)

    def refresh(self, full: bool = False) -> bool:
        """Rescan (when marked or ``full``) and update dirty runs. Returns True when anything changed."""
        with self._lock:
            rescan = self._all_dirty or full
            dirty = set(self._runs) if full else set(self._dirty)
            self._all_dirty = False
            self._dirty.clear()
        changed = False
        if rescan:
            names = set(self._scan())
            with self._lock:
                for gone in set(self._runs) - names:
                    del self._runs[gone]
                    changed = True
                for new in names - set(self._runs):
                    try:
                        self._runs[new] = Run(self.path / new, max_hist_rows=self.max_hist_rows)
                        dirty.add(new)
                        changed = True
                    except RunNotFoundError:
                        pass
        for name in dirty:
            run = self._runs.get(name)
            if run is None:
                if self._safe_child(name) is not None and is_run_dir(self.path / name):
                    self.mark_dirty(None)
                continue
            if not run.path.is_dir():
                with self._lock:
                    self._runs.pop(name, None)
                changed = True
                continue
            before = run.version
            run.update()
            changed |= run.version != before
        if changed:
            with self._lock:
                self.version += 1
        return changed

    def _scan(self) -> Iterator[str]:
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            if self._safe_child(e.name) is None:
                continue
            if is_run_dir(Path(e.path)):
                yield e.name

    def _repr_html_(self) -> str:
        """Jupyter: one row per run (``core.notebook``)."""
        from .notebook import logdir_html

        return logdir_html(self)

    def names(self) -> list[str]:
        """Run names, sorted."""
        with self._lock:
            return sorted(self._runs)

    def runs(self) -> list[Run]:
        """The runs, sorted by name."""
        with self._lock:
            return [self._runs[n] for n in sorted(self._runs)]

    def get(self, name: str) -> Run | None:
        """The run called ``name``, or None (also for any name that would leave the log directory)."""
        if self._safe_child(name) is None:
            return None
        with self._lock:
            return self._runs.get(name)
