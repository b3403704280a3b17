"""Detection latency: a live run's finding appears at the first logged step at which its condition holds.

Each finished run is replayed step by step, as the dashboard sees it: the lines of one step
are appended to the files, the reader picks them up (``Run.update``) and the same ``Diagnoser``
the dashboard keeps per run evaluates only the new records. For every finding we record the
step of the records that made it appear, and compare with the post-hoc result: the same
findings, each appearing exactly when its condition has held for its patience (the finding's
own step for immediate rules; ``patience - 1`` logged steps after the streak began for the
streak rules; the run's end for end-of-run verdicts).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import Run
from core.diagnose import DiagnosisConfig, Diagnoser, diagnose
from monitor.sanity import SANITY_OVERFIT
from tests._nets import overfit_digits, train_mlp

CASES = {
    "tanh10_large": dict(hidden=(100,) * 10, act="tanh", init=1.0, lr=0.05, epochs=1),
    "tanh10_small": dict(hidden=(100,) * 10, act="tanh", init=0.01, lr=0.05, epochs=2),
    "relu_negative_bias": dict(bias=-3.0, lr=0.1, epochs=2),
    "lr_far_too_low": dict(lr=1e-6, epochs=6),
    "lr_too_high": dict(lr=2.0, epochs=4),
    "lr_nan": dict(lr=1e5, epochs=2, every=1),
    "raw_pixels": dict(center=False, lr=1e-3, epochs=2),
    "big_net_small_data": dict(hidden=(256,), n_train=60, batch=20, lr=0.1, epochs=40),
    "one_unit_bottleneck": dict(hidden=(1,), lr=0.05, epochs=6),
    "fc3_fast": dict(hidden=(64, 64, 64), init="he", last_scale=0.1, lr=0.02, lr_scale=(1, 1, 30, 1), epochs=5),
    "sanity_broken": dict(data="tiny", grad_bug=True, lr=0.1, epochs=60, batch=20, sanity=SANITY_OVERFIT),
}

# Rules whose finding step is where a streak began: (patience threshold, table the streak runs over).
STREAKS = {"saturation": "acts", "dead_relu": "acts", "vanishing_gradients": "params", "exploding_gradients": "params",
           "overfitting": "val_acc"}
AT_END = {"cannot_overfit"}


def _replay_by_step(src: Path, dst: Path) -> tuple[dict, list]:
    """Feed ``src`` into ``dst`` one logged step at a time; ``{(rule, layers): step it appeared at}``."""
    dst.mkdir()
    meta = json.loads((src / "meta.json").read_text())
    (dst / "meta.json").write_text(json.dumps({**meta, "status": "running", "pid": None}))
    by_step: dict[int, list[tuple[str, str]]] = {}
    for path in sorted(src.glob("*.jsonl")):
        for line in path.read_text().splitlines(keepends=True):
            by_step.setdefault(int(json.loads(line)["step"]), []).append((path.name, line))
    run, dx = Run(dst), Diagnoser()
    seen: dict[tuple, object] = {}
    for step in sorted(by_step):
        for name, line in by_step[step]:
            with open(dst / name, "a") as fh:
                fh.write(line)
        run.update()
        for f in dx.update(run):
            seen.setdefault((f.rule, f.layers), step)
    (dst / "meta.json").write_text(json.dumps(meta))
    run.update()
    for f in dx.update(run):
        seen.setdefault((f.rule, f.layers), "end")
    return seen, dx.findings()


def _expected(run: Run, f, cfg: DiagnosisConfig):
    if f.rule in AT_END:
        return "end"
    if f.rule == "lr_too_low":  # judged once its window is complete; a shorter run at its end
        first = int(run.scalar("loss").steps[0])
        return f.step if f.step >= first + cfg.thresholds(f.rule).window_steps else "end"
    if f.rule not in STREAKS:
        return f.step
    patience = cfg.thresholds(f.rule).patience
    where = STREAKS[f.rule]
    steps = (run.scalar("val_acc").steps if where == "val_acc" else getattr(run, where).step_array()).tolist()
    i = steps.index(f.step) + patience - 1
    return steps[i] if i < len(steps) else "end"  # a short finished run is judged at its end


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("latency")
    out = {}
    for name, kw in CASES.items():
        kw = dict(kw)
        if kw.get("data") == "tiny":
            Xs, ys = overfit_digits(20)
            kw["data"] = (Xs, ys, None, None)
        out[name] = train_mlp(root, name, **kw)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_live_findings_appear_at_the_step_their_condition_first_holds(made, tmp_path, case):
    src = made[case]
    seen, live = _replay_by_step(src, tmp_path / "live")
    post = diagnose(src)
    assert live == post  # the same findings, steps and messages as post hoc
    assert post, f"{case} shows a problem: it must have findings"
    run = Run(src)
    run.update()
    cfg = DiagnosisConfig()
    late = [(f.rule, f.layers, f.step, seen.get((f.rule, f.layers)), _expected(run, f, cfg)) for f in post
            if seen.get((f.rule, f.layers)) != _expected(run, f, cfg)]
    assert late == []


def test_the_replay_covers_every_kind_of_rule(made, tmp_path):
    rules = {f.rule for src in made.values() for f in diagnose(src)}
    assert {"saturation", "dead_relu", "vanishing_gradients", "exploding_gradients", "overfitting", "update_ratio",
            "lr_too_low", "nan_loss", "loss_explosion", "nonfinite_values", "inputs_not_centered",
            "vanishing_activations", "initial_loss", "underfitting", "cannot_overfit"} <= rules
