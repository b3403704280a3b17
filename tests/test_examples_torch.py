"""The PyTorch examples run end to end on a small scale and record what they claim to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._examples import load_example

ROOT = Path(__file__).resolve().parent.parent
load = load_example


def test_init_experiment_shows_vanishing_and_kept_activations(tmp_path):
    ex = load("torch_init_experiment")
    dirs = ex.run_experiment(tmp_path, acts=("tanh",), inits=("small", "xavier"), steps=2, depth=5, width=64, batch=32)
    small, xavier = (ex.std_by_layer(d) for d in dirs)
    assert list(small) == ["1", "3", "5", "7", "9"]  # the Tanh modules, in depth order
    s, x = list(small.values()), list(xavier.values())
    assert s[-1] < 1e-3 * s[0]  # 0.01 * randn: the std collapses layer after layer
    assert x[-1] > 0.2 * x[0]  # Xavier keeps a usable scale
    table = ex.std_table(dirs)
    assert "torch-tanh-small" in table and "torch-tanh-xavier" in table
    assert len(table.splitlines()) == 2 + 5
    meta = json.loads((dirs[0] / "meta.json").read_text())
    assert meta["framework"] == "torch" and meta["hparams"]["init"] == "small"


def test_cnn_digits_records_conv_channels_and_accuracies(tmp_path):
    ex = load("torch_cnn_digits")
    res = ex.train_digits(tmp_path, epochs=1, max_steps=6, every=5)
    run_dir = res["run_dir"]
    assert res["steps"] == 6 and 0.0 <= res["val_acc"] <= 1.0
    lines = [json.loads(l) for f in run_dir.glob("*.jsonl") for l in f.read_text().splitlines()]
    scalars = sorted((r for r in lines if r["kind"] == "scalars"), key=lambda r: r["step"])
    assert [r["step"] for r in scalars] == list(range(6))
    assert {"train_acc", "val_acc", "val_loss", "lr"} <= set(scalars[-1]["values"])
    acts = [r for r in lines if r["kind"] == "acts"]
    assert sorted(r["step"] for r in acts) == [0, 5]
    assert acts[0]["layers"] == ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "fc"]
    meta = json.loads((run_dir / "meta.json").read_text())
    shapes = {l["name"]: l["shape"] for l in meta["layers"]}
    assert shapes["conv2"] == [32, 8, 8] and shapes["fc"] == [10]
    for dead in acts[0]["dead_frac"][2::3][:2]:  # relu1, relu2: a fraction of channels
        assert 0.0 <= dead <= 1.0
    assert meta["status"] == "finished"


@pytest.mark.parametrize("name", ["torch_init_experiment", "torch_cnn_digits"])
def test_examples_have_a_main_with_help(name, capsys):
    ex = load(name)
    with pytest.raises(SystemExit) as exc:
        ex.main(["--help"])
    assert exc.value.code == 0
    assert "--logdir" in capsys.readouterr().out
