"""One metric vocabulary everywhere: a run that logs ``val_accuracy`` / ``train_accuracy`` /
``eval_loss`` instead of the canonical names gets the same charts, summary and findings."""

from __future__ import annotations

import re
import shutil

import pytest

from core import LogDir, Run
from core.compare import summarize
from core.diagnose import diagnose
from core.schema import METRIC_ALIASES, metric_key
from dashboard import ids
from dashboard.app import create_app
from tests._nets import train_mlp
from tests.reliability._dashclient import PageDriver, flask_transport

RENAME = {"train_acc": "train_accuracy", "val_acc": "val_accuracy", "loss": "train_loss"}


def test_metric_key_prefers_the_canonical_name_and_knows_the_frameworks_names():
    assert metric_key(["val_accuracy", "loss"], "val_acc") == "val_accuracy"
    assert metric_key(["val_acc", "val_accuracy"], "val_acc") == "val_acc"
    assert metric_key(["eval_loss"], "val_loss") == "eval_loss"
    assert metric_key(["eval_accuracy"], "val_acc") == "eval_accuracy"
    assert metric_key(["accuracy"], "train_acc") == "accuracy"
    assert metric_key(["loss"], "val_loss") is None
    assert metric_key(["my_metric"], "my_metric") == "my_metric"  # any other name matches itself
    # No alias belongs to two metrics.
    every = [k for keys in METRIC_ALIASES.values() for k in keys]
    assert len(every) == len(set(every))


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    """An overfitting run, and the same records with the scalars under their other names."""
    root = tmp_path_factory.mktemp("aliases")
    canon = train_mlp(root, "canonical", hidden=(256,), n_train=60, batch=20, lr=0.1, epochs=40)
    alias = root / "aliased"
    shutil.copytree(canon, alias)
    for f in alias.glob("scalars*.jsonl"):
        text = f.read_text()
        for old, new in RENAME.items():
            text = re.sub(rf'"{old}":', f'"{new}":', text)
        f.write_text(text)
    meta = alias / "meta.json"
    meta.write_text(meta.read_text().replace('"canonical"', '"aliased"'))
    return root, canon, alias


def test_aliased_names_give_the_same_summary_and_findings(twin_runs):
    _, canon, alias = twin_runs
    a, b = Run(canon), Run(alias)
    a.update(), b.update()
    assert "val_accuracy" in b.scalar_names() and "val_acc" not in b.scalar_names()
    sa, sb = summarize(a), summarize(b)
    for field in ("best_val_acc", "final_val_acc", "final_train_acc", "gap", "final_loss"):
        assert getattr(sa, field) == pytest.approx(getattr(sb, field), nan_ok=True), field
    fa = {(f.rule, f.step) for f in diagnose(a)}
    fb = {(f.rule, f.step) for f in diagnose(b)}
    assert any(rule == "overfitting" for rule, _ in fa)
    assert fa == fb


def test_aliased_names_draw_the_accuracy_and_loss_charts(twin_runs):
    root, _, _ = twin_runs
    logdir = LogDir(root)
    logdir.refresh()
    driver = PageDriver(*flask_transport(create_app(logdir)))
    drawn = {}
    for name in ("canonical", "aliased"):
        comps = driver.visit(f"/run/{name}")
        acc = comps[ids.ACC_GRAPH]["figure"]
        loss = comps[ids.LOSS_GRAPH]["figure"]
        drawn[name] = ([len(t.get("x") or []) for t in acc["data"]], sum(len(t.get("x") or []) for t in loss["data"]))
    assert not driver.errors
    acc_points, loss_points = drawn["aliased"]
    assert sum(acc_points) > 0 and loss_points > 0
    assert drawn["aliased"] == drawn["canonical"]
