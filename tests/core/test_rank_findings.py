"""A data-parallel run is diagnosed per rank: what another rank shows and the lowest does not
is reported with its rank, once, and live as new records arrive (ranks written by the numpy
Monitor with explicit ranks; the torchrun test covers real processes)."""

from __future__ import annotations

import numpy as np

from core import Diagnoser, Run
from monitor import Monitor


def _write(logdir, rank, steps, dead: bool, nan_at: int | None = None):
    rng = np.random.default_rng(rank)
    mon = Monitor(logdir, "ddp", rank=rank, num_classes=3, heartbeat=0)
    for step in steps:
        h = rng.standard_normal((32, 8))
        mon.activation(step, "relu", np.zeros_like(h) if dead else np.maximum(0, h), kind="relu")
        mon.log(step, loss=float("nan") if step == nan_at else 1.1 * 0.97 ** step)
    return mon


def test_a_finding_of_rank_1_only_is_reported_with_its_rank_and_live(tmp_path):
    m0, m1 = _write(tmp_path, 0, range(0, 20), dead=False), _write(tmp_path, 1, range(0, 20), dead=False)
    run, dx = Run(tmp_path / "ddp"), Diagnoser()
    run.update()
    assert dx.update(run) == [] and dx.findings() == []
    for step in range(20, 60):  # rank 1 goes dead, then its loss becomes NaN
        for mon, dead in ((m0, False), (m1, True)):
            rng = np.random.default_rng(step)
            h = rng.standard_normal((32, 8))
            mon.activation(step, "relu", np.zeros_like(h) if dead else np.maximum(0, h), kind="relu")
            mon.log(step, loss=float("nan") if (dead and step == 55) else 1.1 * 0.97 ** step)
    m0.close(), m1.close()
    run.update()
    new = dx.update(run)
    rules = sorted(f.rule for f in new)
    assert rules == ["dead_relu", "nan_loss"], new
    for f in new:
        assert f.message.startswith("On rank 1 (not on rank 0): ")
    assert dx.update(run) == []  # nothing new: nothing reported twice
    assert sorted(f.rule for f in dx.findings()) == ["dead_relu", "nan_loss"]


def test_a_finding_on_every_rank_is_reported_once_without_a_rank(tmp_path):
    for rank in (0, 1):
        _write(tmp_path, rank, range(40), dead=True).close()
    run, dx = Run(tmp_path / "ddp"), Diagnoser()
    run.update()
    dx.update(run)
    dead = [f for f in dx.findings() if f.rule == "dead_relu"]
    assert len(dead) == 1 and not dead[0].message.startswith("On rank")
