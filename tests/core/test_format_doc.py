"""docs/format.md cannot rot: its example run is written from the page and read back, and its field lists match the code."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from core import Meta, Run
from core.schema import ACT_FIELDS, FORMAT_VERSION, INPUT_FIELDS, KINDS, LAYER_KINDS, PARAM_FIELDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "format.md"
BLOCK = re.compile(r"^```(json|jsonl) file=(\S+)\n(.*?)^```", re.M | re.S)


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _example_files(doc: str) -> dict[str, str]:
    files = {name: body for _, name, body in BLOCK.findall(doc)}
    assert set(files) == {"meta.json", "scalars.r0.jsonl", "layers.r0.jsonl"}
    return files


def test_example_run_reads_without_problems(doc, tmp_path, strict_json):
    run_dir = tmp_path / "minimal"
    run_dir.mkdir()
    for name, body in _example_files(doc).items():
        if name.endswith(".jsonl"):
            for line in body.splitlines():
                strict_json(line)  # each line is one strict JSON object
        else:
            strict_json(body)
        (run_dir / name).write_text(body, encoding="utf-8")
    run = Run(run_dir)
    assert run.update() == 7
    assert run.all_problems() == []
    assert run.meta.format_version == FORMAT_VERSION and run.meta.num_classes == 10
    assert run.layer_order() == ["fc1", "fc2"]
    loss = run.scalar("loss").values
    assert loss[:2].tolist() == [2.31, 2.12] and math.isnan(loss[2])
    np.testing.assert_array_equal(run.acts.field("std"), [[0.58, 0.02]])
    assert run.params.field("upd_ratio")[0].tolist() == [0.0011, 0.00125]
    assert run.input_stats()["max"].tolist() == [3.4]
    assert [f.rule for f in run.findings] == ["nan_loss"]
    _, _, _, counts = run.acts.histograms()
    assert counts.shape == (1, 2, 4)
    assert run.status() == "finished"


def test_example_uses_every_kind(doc):
    files = _example_files(doc)
    kinds = set(re.findall(r'"kind": "(\w+)"', files["scalars.r0.jsonl"] + files["layers.r0.jsonl"]))
    assert kinds == set(KINDS)


def test_every_field_is_documented(doc):
    meta_keys = set(Meta().to_json())
    for name in (*meta_keys, *ACT_FIELDS, *PARAM_FIELDS, *INPUT_FIELDS, *KINDS, "hist_lo", "hist_hi", "hist",
                 "values", "nonfinite", "layers", "params", "rule", "severity", "message", "fix", "value",
                 "threshold", "step", "time"):
        assert f"`{name}`" in doc, f"{name} is not documented in docs/format.md"
    for kind in LAYER_KINDS:
        assert f"`{kind}`" in doc, f"layer kind {kind} is not documented"
    assert f"`format_version` is {FORMAT_VERSION}" in doc
