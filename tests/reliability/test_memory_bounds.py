"""A small hostile file cannot make the reader hold gigabytes.

One line of a few MB can list hundreds of thousands of layer, parameter or scalar names;
read naively, each name costs a column of every field for 16 rows (hundreds of bytes per
byte of file). The reader refuses records that would take a run past its bounds
(``core.schema.MAX_LAYERS``, ``MAX_PARAMS``, ``MAX_SCALARS``), reports them as problems,
and keeps reading the good records around them. The peak of what Python and numpy
allocate while reading (``tracemalloc``) must stay under 120 MB.
"""

from __future__ import annotations

import json
import tracemalloc

import orjson

from core import Run
from core.schema import MAX_LAYERS, MAX_PARAMS, MAX_SCALARS

N = 300_000  # names per hostile line (about 4 MB of JSON each)


def _line(obj: dict) -> bytes:
    return orjson.dumps(obj) + b"\n"


def test_lines_listing_hundreds_of_thousands_of_names_are_refused_without_the_memory(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    names = [f"l{i}" for i in range(N)]
    good = {"kind": "acts", "step": 0, "time": 1.0, "layers": ["fc1"], "mean": [0.5], "std": [1.0]}
    with open(run_dir / "layers.r0.jsonl", "wb") as f:
        f.write(_line(good))
        f.write(_line({"kind": "acts", "step": 1, "time": 2.0, "layers": names}))
        f.write(_line({"kind": "acts", "step": 2, "time": 3.0, "layers": names, "mean": [0.0] * N}))
        f.write(_line({"kind": "params", "step": 3, "time": 4.0, "params": names}))
        # Many records, each adding a few thousand new names: the bound is per run, not per record.
        for r in range(4):
            f.write(_line({"kind": "acts", "step": 4 + r, "time": 5.0,
                           "layers": [f"w{r}-{i}" for i in range(MAX_LAYERS // 2 + 1)]}))
        f.write(_line(dict(good, step=9)))
    with open(run_dir / "scalars.r0.jsonl", "wb") as f:
        f.write(_line({"kind": "scalars", "step": 0, "time": 1.0, "values": {"loss": 1.0}}))
        f.write(_line({"kind": "scalars", "step": 1, "time": 2.0, "values": {n: 1.0 for n in names}}))
        f.write(_line({"kind": "scalars", "step": 2, "time": 3.0, "values": {"loss": 0.5}}))
    del names
    tracemalloc.start()
    try:
        run = Run(run_dir)
        run.update()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 120 << 20, f"reading took {peak / 2**20:.0f} MB"
    assert run.memory_bytes() < 64 << 20
    assert len(run.acts.names) <= MAX_LAYERS and len(run.params.names) <= MAX_PARAMS
    assert len(run.scalar_names()) <= MAX_SCALARS
    assert run.scalar("loss").steps.tolist() == [0, 2]
    assert run.acts.step_array().tolist()[0] == 0 and run.acts.step_array().tolist()[-1] == 9
    messages = [p.message for p in run.all_problems()]
    assert sum("at most" in m for m in messages) >= 6, json.dumps(messages, indent=1)[:2000]
