"""What the run pages say in words, from real runs written through the Monitor (no browser)."""

from __future__ import annotations

import numpy as np
import pytest

from core.reader import Run
from dashboard.pages.layers import nan_note
from dashboard.pages.overview import findings_list
from tests.dashboard._components import texts
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


def _crash(root, name: str, err: BaseException, at: int) -> None:
    with pytest.raises(type(err)):
        with Monitor(root, name, every=1, heartbeat=0) as mon:
            for step in range(100):
                mon.log(step, loss=2.3 - 0.01 * step)
                if step == at:
                    raise err


@pytest.fixture
def crashed_ctx(tmp_path):
    from core import LogDir
    from dashboard.context import AppContext

    _crash(tmp_path, "crash-shape", RuntimeError("mat1 and mat2 shapes cannot be multiplied (32x21 and 20x64)"), 20)
    _crash(tmp_path, "hostile", ValueError("<img src=x onerror=alert(1)>"), 4)
    with Monitor(tmp_path, "fine", every=1, heartbeat=0) as mon:
        mon.log(0, loss=2.3)
    ctx = AppContext(LogDir(tmp_path), index=None)
    ctx.refresh()
    return ctx


def test_the_overview_of_a_crashed_run_shows_its_error_above_the_findings(crashed_ctx):
    from dashboard.pages import overview

    said = texts(overview.layout(crashed_ctx, run="crash-shape", query={}), types=True)
    head = said.index("Training stopped with an error after step 20:")
    assert said[head + 2] == "RuntimeError: mat1 and mat2 shapes cannot be multiplied (32x21 and 20x64)"
    assert said.index("Findings") < head < said.index("No findings in the data recorded before the crash.")
    assert not [t for t in said if "looked wrong" in t]  # no clean bill of health next to the crash
    # The callback that redraws the findings on every new version says the same.
    run = crashed_ctx.run("crash-shape")
    assert "Training stopped with an error after step 20:" in texts(findings_list(run, [], "crashed"), types=True)


def test_a_hostile_error_is_shown_as_text_never_as_markup(crashed_ctx):
    from dashboard.pages import overview, runs

    said = texts(overview.layout(crashed_ctx, run="hostile", query={}), types=True)
    assert "ValueError: <img src=x onerror=alert(1)>" in said  # a string child: Dash renders it as text
    assert "<component Img>" not in said
    table = runs._view(crashed_ctx, None, 0)[0]  # what the run list shows
    titles = {getattr(c, "title", None) for c in _walk(table)}
    assert "stopped with: ValueError: <img src=x onerror=alert(1)>" in titles  # the crashed badge's tooltip
    assert "stopped with: RuntimeError: mat1 and mat2 shapes cannot be multiplied (32x21 and 20x64)" in titles


def test_a_run_without_an_error_shows_no_crash_box(crashed_ctx):
    from dashboard.pages import overview

    said = texts(overview.layout(crashed_ctx, run="fine", query={}), types=True)
    assert not [t for t in said if "Training stopped" in t]
    assert "No findings: nothing on the checklist looked wrong in this finished run." in said


def _walk(c):
    if isinstance(c, (list, tuple)):
        for x in c:
            yield from _walk(x)
    elif hasattr(c, "to_plotly_json"):
        yield c
        yield from _walk(getattr(c, "children", None))
