"""The dashboard's findings come from the diagnosis engine as well as from the written records."""

from __future__ import annotations

import numpy as np

from core import Finding, LogDir
from dashboard.findings import FindingSource
from monitor import Monitor


def test_engine_findings_reach_the_dashboard_and_follow_the_run(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 20))
    W = rng.standard_normal((20, 20)) * 3.0  # tanh units pinned at +-1
    mon = Monitor(tmp_path, name="sat", num_classes=3, every=1, heartbeat=0)
    logdir = LogDir(tmp_path)
    source = FindingSource()
    with mon:
        mon.finding(Finding("custom_rule", "info", 0, message="written by the training process"))
        for step in range(3):
            mon.activation(step, "fc1", np.tanh(X @ W), kind="tanh")
            mon.log(step, loss=1.0)
        logdir.refresh()
        run = logdir.get("sat")
        first = {f.rule for f in source(run)}
        assert {"saturation", "custom_rule"} <= first
        # The run grows: the same (cached) engine sees only the new records and the new finding.
        for step in range(3, 6):
            mon.activation(step, "fc1", np.tanh(X @ W), kind="tanh")
            mon.log(step, loss=float("nan"))
        logdir.mark_dirty("sat")
        logdir.refresh()
        later = {f.rule for f in source(run)}
    assert "nan_loss" in later and "saturation" in later
    assert source(run) is source(run)  # cached per version


def test_run_pages_and_compare_page_share_one_diagnosis_per_run(tmp_path, monkeypatch):
    import core.summary
    from dashboard.app import create_app
    from tests.reliability._dashclient import PageDriver, flask_transport

    made: list[str] = []

    class CountingDiagnoser(core.summary.Diagnoser):
        def update(self, run):
            made.append(run.name) if self.calls == 0 else None
            return super().update(run)

    monkeypatch.setattr(core.summary, "Diagnoser", CountingDiagnoser)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        with Monitor(tmp_path, name=name, num_classes=3, every=1, heartbeat=0) as mon:
            for step in range(3):
                mon.activation(step, "fc1", np.tanh(rng.standard_normal((16, 8)) * 4), kind="tanh")
                mon.log(step, loss=1.0, val_acc=0.5)
    logdir = LogDir(tmp_path)
    logdir.refresh()
    driver = PageDriver(*flask_transport(create_app(logdir)))
    for path in ("/", "/run/a", "/run/b", "/run/a/layers", "/compare"):
        driver.visit(path)
    assert not driver.errors
    assert sorted(made) == ["a", "b"]  # one engine per run, whichever page asked first
