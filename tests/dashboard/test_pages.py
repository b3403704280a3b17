"""What the run pages say in words, from real runs written through the Monitor (no browser)."""

from __future__ import annotations

import numpy as np

from core.reader import Run
from dashboard.pages.layers import nan_note
from dashboard.pages.overview import findings_list
from monitor import Monitor


def _diverged(tmp_path, all_layers: bool) -> Run:
    rng = np.random.default_rng(0)
    with Monitor(tmp_path, "nan", every=1, heartbeat=0) as mon:
        for step in range(3):
            h = rng.standard_normal((8, 4))
            bad = np.full_like(h, np.nan) if step == 2 else h
            mon.activation(step, "fc1", bad if all_layers else h, kind="relu")
            mon.activation(step, "fc2", bad, kind="tanh")
            mon.log(step, loss=1.0)
    run = Run(tmp_path / "nan")
    run.update()
    return run


def test_the_layers_page_says_when_every_value_was_nan(tmp_path):
    run = _diverged(tmp_path, all_layers=True)
    assert nan_note(run, 1) == ""
    note = nan_note(run, 2)
    assert "step 2" in note and "every recorded value of every layer was NaN or Inf" in note


def test_the_layers_page_names_the_layers_without_a_finite_value(tmp_path):
    run = _diverged(tmp_path, all_layers=False)
    assert nan_note(run, 2) == "At step 2 every recorded value of fc2 was NaN or Inf: those layers are not drawn."


def test_no_findings_says_so_far_only_while_the_run_is_live(tmp_path):
    run = _diverged(tmp_path, all_layers=False)
    assert "so far" in findings_list(run, [], "live").children
    assert "so far" not in findings_list(run, [], "finished").children
    assert "finished run" in findings_list(run, [], "finished").children
