"""Jupyter: the example notebook executed by ``nbclient`` on a real ``ipykernel`` (a Monitor,
a run and a log directory display as their summaries; ``inline`` serves the dashboard on
127.0.0.1), and the summaries show hostile run strings as text."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from core import LogDir, Run
from core.notebook import run_html
from monitor import Monitor

ROOT = Path(__file__).resolve().parents[2]


def _html(cell) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)


def test_example_notebook_shows_summaries_and_the_inline_dashboard(tmp_path, monkeypatch):
    monkeypatch.setenv("BABYSITTER_LOGDIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    nb = nbformat.read(ROOT / "examples" / "notebook_digits.ipynb", as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]

    healthy = _html(code[1])  # `mon`
    assert "notebook-healthy" in healthy and "finished" in healthy and "No findings" in healthy
    assert "<svg" in healthy and "<polyline" in healthy  # the loss curve
    assert "Layers at step 50" in healthy and "<code>1</code>" in healthy  # the ReLU module "1"

    diverged = _html(code[2])
    assert "notebook-diverged" in diverged and "ERROR" in diverged and "nan_loss" in diverged
    assert "fix: Lower the learning rate" in diverged

    listing = _html(code[3])
    assert listing.count("<tr>") == 3 and "notebook-healthy" in listing
    assert "loss_explosion" in listing or "nan_loss" in listing  # the diverged run's first error

    frame = _html(code[4])
    m = re.search(r'<iframe src="http://127\.0\.0\.1:(\d+)/"', frame)
    assert m, frame
    assert code[5].outputs[0]["text"].strip() == "200 text/html"  # the kernel's server answered the page

    followed = _html(code[6])  # live(): first drawn before any step, redrawn in place until the run ended
    assert "notebook-live" in followed and "finished" in followed and "step 119" in followed


def test_summaries_show_hostile_strings_as_text(tmp_path):
    evil = "<img src=x onerror=alert(1)>"
    with Monitor(tmp_path, evil, hparams={"x": evil}, num_classes=3) as mon:
        import numpy as np

        for step in range(12):
            mon.activation(step, evil, np.maximum(0, np.random.default_rng(step).standard_normal((8, 4))), kind="relu")
            mon.log(step, loss=float("nan") if step == 11 else 1.0)
        html_mon = mon._repr_html_()
    run = Run(tmp_path / evil)
    for page in (html_mon, run_html(run), LogDir(tmp_path)._repr_html_()):
        assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "nan_loss" in html_mon


def test_a_monitor_not_started_yet_says_so():
    assert "not started yet" in Monitor("nowhere/<b>")._repr_html_()
    assert "<b>" not in Monitor("nowhere/<b>")._repr_html_()
