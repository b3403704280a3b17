"""The README's numpy example runs as printed and writes the run it promises."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

from core import Run

REPO = Path(__file__).resolve().parents[1]


def _section(heading: str) -> str:
    """The README's text from the ``## heading`` line to the next ``## `` heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_numpy_example_runs(tmp_path):
    section = _section("Record a run from numpy")
    blocks = re.findall(r"^```python\n(.*?)^```", section, re.M | re.S)
    assert len(blocks) == 1
    code = blocks[0]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for attempt in (1, 2):  # a second run of the same script gets a suffixed name, never overwrites
        res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        name = "readme-numpy" if attempt == 1 else "readme-numpy-2"
        assert res.stdout.strip() == f"run written to {Path('runs') / name}"
    run = Run(tmp_path / "runs" / "readme-numpy")
    run.update()
    assert run.all_problems() == [] and run.status() == "finished"
    loss = run.scalar("loss").values
    assert len(loss) == 300
    assert abs(loss[0] - math.log(3)) < 0.1 * math.log(3)
    assert loss[-1] < 0.3 * loss[0]
    assert run.acts.step_array().tolist() == list(range(0, 300, 10))
    assert run.layer_kinds() == {"fc1": "relu"}
    assert run.params.names == ["W1"] and run.meta.hparams == {"lr": 0.5}


def test_example_commands_exist():
    section = _section("Record a run from numpy")
    for script in re.findall(r"python (examples/\S+\.py)", section):
        assert (REPO / script).is_file(), script
