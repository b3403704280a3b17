"""Tiny shared fixtures: a seeded random generator and a run-folder writer."""

from __future__ import annotations

import os

# The suite runs on small arrays on a few shared cores: BLAS worker threads only
# oversubscribe them (a 300x100 matmul is several times slower with them). This has to
# be set before numpy is first imported; subprocesses inherit it.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# Persisted summary indexes (core.index) go to a folder of this test session, never to the
# user's ~/.cache; subprocesses (the CLI, servers, workers) inherit it.
if "BABYSITTER_CACHE" not in os.environ:
    import tempfile

    os.environ["BABYSITTER_CACHE"] = tempfile.mkdtemp(prefix="babysitter-cache-")

import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterable

import numpy as np
import pytest


def strict_loads(line: str | bytes) -> Any:
    """``json.loads`` that rejects ``NaN``, ``Infinity`` and ``-Infinity`` (RFC 8259 has none of them)."""

    def _reject(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token!r}")

    return json.loads(line, parse_constant=_reject)


@pytest.fixture
def strict_json() -> Callable[[str | bytes], Any]:
    """The strict parser above, for tests that check every written line."""
    return strict_loads


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every test sees the same arrays."""
    return np.random.default_rng(0)


@pytest.fixture
def write_run(tmp_path: Path) -> Callable[..., Path]:
    """Write a run folder by hand: ``write_run(records, meta=None, name="r", file="scalars.r0.jsonl")``.

    Records are dicts (serialised with ``json.dumps``) or raw ``str``/``bytes`` lines written as
    they are (add the newline yourself). Returns the run folder.
    """

    def _write(records: Iterable[Any] = (), meta: dict[str, Any] | None = None, name: str = "r",
               file: str = "scalars.r0.jsonl") -> Path:
        run = tmp_path / name
        run.mkdir(exist_ok=True)
        if meta is not None:
            (run / "meta.json").write_text(json.dumps(meta))
        with open(run / file, "ab") as f:
            for rec in records:
                if isinstance(rec, bytes):
                    f.write(rec)
                elif isinstance(rec, str):
                    f.write(rec.encode())
                else:
                    f.write(json.dumps(rec, allow_nan=False).encode() + b"\n")
        return run

    return _write
