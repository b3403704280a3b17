"""The reader's in-memory columns: growable numpy arrays, scalar series and layer tables.

``Series`` is what readers get back for one scalar; ``Table`` holds one row per logged step
and one column per layer (or parameter) for every statistic field, plus the histograms, with
bounds on names, bins and histogram cells and the thinning that keeps long runs bounded.
``core.reader.Run`` fills them; nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .schema import MAX_BINS, MAX_LAYERS

__all__ = ["Series", "Table", "Grow", "ScalarCol", "number_or_nan", "is_sorted", "last_le"]

_NAN = float("nan")
# Kept histogram counts are int32 while every count fits one (half the memory of int64), then int64.
_NARROW = np.iinfo(np.int32)


class Grow:
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


class ScalarCol:
    __slots__ = ("steps", "values", "times", "sorted")

    def __init__(self) -> None:
        self.steps, self.values, self.times = Grow(np.int64), Grow(np.float64), Grow(np.float64)
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
        self._hist: np.ndarray | None = None  # [hrow, col, bin] int32 (int64 once a count does not fit)
        self._hist_lo: np.ndarray | None = None
        self._hist_hi: np.ndarray | None = None
        self._bins = 0
        # The names of the last record added and their columns: a run logs the same names at
        # every step, and comparing one list is far cheaper than checking and looking up each name.
        self._last_names: list[str] | None = None
        self._last_idx: slice | np.ndarray = np.empty(0, np.intp)

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
            h = np.zeros((self._hist.shape[0], nc, self._bins), self._hist.dtype)
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
        if not self.known(names) and len(set(names)) != k:
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

    def known(self, names: list[str]) -> bool:
        """True when ``names`` is the list of names of the last record added (so already checked)."""
        return names == self._last_names

    def _columns_of(self, names: list[str]) -> slice | np.ndarray:
        """The columns of ``names`` (a slice when they are the first ``len(names)`` in order), adding new names.

        Raises:
            ValueError: when the new names would pass ``max_cols`` (nothing is added then).
        """
        if self.known(names):
            return self._last_idx
        cols_new = [n for n in names if n not in self.index]
        if len(self.names) + len(cols_new) > self.max_cols:
            raise ValueError(f"{len(cols_new)} new {self.what} after {len(self.names)}; a run may have at most "
                             f"{self.max_cols} (records with more are skipped)")
        for n in cols_new:
            self.index[n] = len(self.names)
            self.names.append(n)
        k = len(names)
        idx = np.fromiter((self.index[n] for n in names), np.intp, k)
        # Basic indexing writes a row in one copy; an index array goes element by element.
        cols: slice | np.ndarray = slice(0, k) if k and idx[0] == 0 and idx[-1] == k - 1 and (
            k < 2 or bool(np.all(idx[1:] - idx[:-1] == 1))) else idx
        self._last_names, self._last_idx = list(names), cols
        return cols

    def add(self, step: int, t: float, names: list[str], rec: dict[str, Any]) -> None:
        """Append one record's columns. Raises ValueError/TypeError on a malformed record (nothing is added then)."""
        parsed, h = self.parse(names, rec)
        idx = self._columns_of(names)
        row = self.n
        self._ensure(row + 1, len(self.names))
        self.steps[row] = step
        self.times[row] = t
        for f, arr in parsed.items():
            self.values[f][row, idx] = arr
        self.n += 1
        if h is not None:
            self._add_hist(row, idx, *h)

    def add_many(self, steps: list[int], times: list[float], names: list[str], recs: list[dict[str, Any]]) -> bool:
        """Append records that all list ``names`` at once, exactly as ``add`` would one after the other.

        Each field becomes one ``[record, name]`` array in one numpy call instead of one call
        per record and field. Takes only the common shape: every field a list of one number
        (or null) per name, or null in every record; histograms in every record or in none,
        each an ``int64`` array ``[name, bin]`` (as ``core._histparse`` reads them).

        Returns:
            True when all were added; False, with nothing added, when any record is malformed
            or not in that shape: then ``add`` each one (and report those it refuses).
        """
        n, k = len(recs), len(names)
        if not n or k > self.max_cols or (not self.known(names) and len(set(names)) != k):
            return False
        if not self.known(names) and len(self.names) + sum(1 for x in names if x not in self.index) > self.max_cols:
            return False
        cols: list[tuple[str, list[int] | None, np.ndarray]] = []
        try:
            for f in self.fields:
                vals = [r.get(f) for r in recs]
                present = [i for i, v in enumerate(vals) if v is not None]
                if not present:
                    continue
                some = len(present) < n
                arr = np.asarray([vals[i] for i in present] if some else vals, dtype=np.float64)
                if arr.shape != (len(present), k):
                    return False
                cols.append((f, present if some else None, arr))
            hist = None
            if self.with_hist:
                hs = [r.get("hist") for r in recs]
                if any(h is not None for h in hs):
                    bins = self._bins or (hs[0].shape[1] if type(hs[0]) is np.ndarray and hs[0].ndim == 2 else 0)
                    if not 1 <= bins <= MAX_BINS or any(
                            type(h) is not np.ndarray or h.dtype != np.int64 or h.shape != (k, bins) for h in hs):
                        return False
                    lo = np.asarray([r.get("hist_lo") for r in recs], dtype=np.float64)
                    hi = np.asarray([r.get("hist_hi") for r in recs], dtype=np.float64)
                    if lo.shape != (n, k) or hi.shape != (n, k):
                        return False
                    hist = (hs, lo, hi)
        except (ValueError, TypeError, OverflowError):
            return False
        idx = self._columns_of(names)
        row = self.n
        self._ensure(row + n, len(self.names))
        self.steps[row: row + n] = steps
        self.times[row: row + n] = times
        for f, present, arr in cols:
            if present is None:
                self.values[f][row: row + n, idx] = arr
            else:
                for i, a in zip(present, arr):
                    self.values[f][row + i, idx] = a
        self.n += n
        if hist is not None:
            hs, lo, hi = hist
            for i in range(n):
                self._add_hist(row + i, idx, hs[i], lo[i], hi[i])
        return True

    def _add_hist(self, row: int, idx: slice | np.ndarray, hist: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        if row % self.hist_stride:
            return
        if self._hist is None:
            self._bins = hist.shape[1]
            # As many rows as can be kept before thinning, at once: np.zeros takes pages the
            # system zeroes when first touched, so rows not yet written cost no memory, and the
            # kept rows are never copied to a larger array.
            rows = min(self.max_hist_rows, self.max_hist_cells // (self._cap_cols * self._bins)) + 1
            self._hist = np.zeros((max(rows, 1), self._cap_cols, self._bins), np.int32)
            self._hist_lo = np.full((max(rows, 1), self._cap_cols), _NAN)
            self._hist_hi = np.full((max(rows, 1), self._cap_cols), _NAN)
        hrow = len(self.hist_rows)
        if hrow == self._hist.shape[0]:  # more columns since: the bound moved
            grow = hrow * 2
            self._hist = np.concatenate([self._hist, np.zeros((grow - hrow, *self._hist.shape[1:]), self._hist.dtype)])
            self._hist_lo = np.concatenate([self._hist_lo, np.full((grow - hrow, self._hist_lo.shape[1]), _NAN)])
            self._hist_hi = np.concatenate([self._hist_hi, np.full((grow - hrow, self._hist_hi.shape[1]), _NAN)])
        if self._hist.dtype != np.int64 and hist.size and (hist.max() > _NARROW.max or hist.min() < _NARROW.min):
            wide = np.zeros(self._hist.shape, np.int64)  # only the rows written are copied (and take memory)
            wide[:hrow] = self._hist[:hrow]
            self._hist = wide
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
        used = len(self.hist_rows)
        keep = np.arange(0, used, 2)
        m = len(keep)
        self._hist[:m] = self._hist[keep]
        self._hist_lo[:m] = self._hist_lo[keep]
        self._hist_hi[:m] = self._hist_hi[keep]
        self._hist[m:used] = 0  # only the rows written: the others were never touched
        self._hist_lo[m:used] = _NAN
        self._hist_hi[m:used] = _NAN
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
        pos = int(np.searchsorted(s, step, side="right")) - 1 if is_sorted(s) else last_le(s, step)
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


def number_or_nan(v: Any, field: str) -> float:
    if v is None:
        return _NAN
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{field!r} must be a number or null, got {type(v).__name__}")
    return float(v)


def is_sorted(a: np.ndarray) -> bool:
    return bool(len(a) < 2 or np.all(a[1:] >= a[:-1]))


def last_le(a: np.ndarray, x: int) -> int:
    hits = np.nonzero(a <= x)[0]
    return int(hits[-1]) if len(hits) else -1
