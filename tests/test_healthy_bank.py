"""The healthy bank: well-configured modern networks on which ``babysitter check`` raises nothing,
and, for the rules that compare layers, a PyTorch run that shows each problem.

Numpy MLPs (He/Xavier, SGD with and without momentum, L2, several seeds) and PyTorch
networks (BatchNorm CNNs, a LayerNorm/GELU MLP, a pre-norm transformer, an LSTM; SGD with
momentum, Adam, AdamW; OneCycle, cosine and warm-up schedules; dropout, weight decay,
gradient clipping, bf16 autocast), each trained for a few dozen steps on the digits, are
checked together through the real command line: no error and no warning.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from core.diagnose import diagnose
from examples.torch_init_experiment import run_variant
from monitor import TrainingDivergedError
from tests._nets import train_mlp
from tests._torch_nets import TORCH_HEALTHY, train_healthy, train_torch

NUMPY_HEALTHY = {
    "numpy_relu_he_sgd": dict(hidden=(64,), init="he", lr=0.1, epochs=3),
    "numpy_relu_he_sgd_seed1": dict(hidden=(64,), init="he", lr=0.1, epochs=3, seed=1),
    "numpy_relu_he_deep": dict(hidden=(100,) * 4, init="he", lr=0.05, epochs=3, seed=2),
    "numpy_tanh_xavier": dict(hidden=(64,), act="tanh", init="xavier", lr=0.1, epochs=3),
    "numpy_tanh_xavier_deep": dict(hidden=(100,) * 6, act="tanh", init="xavier", lr=0.05, epochs=2, seed=3),
    "numpy_relu_l2": dict(hidden=(64,), init="he", lr=0.1, reg=1e-3, epochs=3),
    "numpy_three_layers_small_output": dict(hidden=(64, 64, 64), init="he", last_scale=0.1, lr=0.05, epochs=5),
}


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    root = tmp_path_factory.mktemp("bank")
    for name, kw in NUMPY_HEALTHY.items():
        train_mlp(root, name, **kw)
    for name in TORCH_HEALTHY:
        train_healthy(root, name)
    return root


def test_bank_is_large_and_covers_both_frameworks(bank):
    runs = sorted(p.name for p in bank.iterdir())
    assert len(runs) == len(NUMPY_HEALTHY) + len(TORCH_HEALTHY) >= 12
    frameworks = {json.loads((bank / r / "meta.json").read_text()).get("framework") for r in runs}
    assert frameworks == {"numpy", "torch"}


def test_babysitter_check_finds_nothing_wrong_on_the_healthy_bank(bank):
    p = subprocess.run([sys.executable, "-m", "babysitter", "check", str(bank), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    loud = [(f["run"], f["rule"], f["message"]) for f in json.loads(p.stdout) if f["severity"] in ("error", "warning")]
    assert loud == []


def test_the_bank_is_judged_by_the_new_rules(bank):
    # Every healthy torch run is long enough for update_ratio (absolute and relative) to judge it:
    # weight rows past skip_steps fill its window.
    from core import Run

    for name in TORCH_HEALTHY:
        run = Run(bank / name)
        run.update()
        assert (run.params.step_array() >= 50).sum() >= 5, name
        assert run.scalar("val_acc").values[-1] > 0.5, name  # they learn


# -- the rules that compare layers, on PyTorch runs that show the problem -------------------


def _by_rule(findings):
    out = {}
    for f in findings:
        out.setdefault(f.rule, []).append(f)
    return out


def test_torch_single_forward_pass_relu_large_init_explodes(tmp_path):
    found = _by_rule(diagnose(run_variant(tmp_path, "relu", "large", steps=1, width=200, batch=64)))
    f = found["exploding_activations"][0]
    assert "19" in f.layers and "1" not in f.layers  # the deepest ReLU, not the first
    assert f.step == 0 and f.value > 1e6


def test_torch_single_forward_pass_tanh_large_init_saturates_and_the_gradient_grows(tmp_path):
    found = _by_rule(diagnose(run_variant(tmp_path, "tanh", "large", steps=1, width=200, batch=64)))
    assert {"1", "19"} <= {x for f in found["saturation"] for x in f.layers}  # one logged step is enough
    g = found["exploding_gradients"][0]
    assert "0" in g.layers and "20" not in g.layers and "0.weight's gradient norm" in g.message


def _sigmoid_net(seed, steps):
    torch.manual_seed(seed)
    layers = []
    for i in range(8):
        layers += [nn.Linear(64, 64), nn.Sigmoid()]
    m = nn.Sequential(*layers, nn.Linear(64, 10))
    return m, torch.optim.SGD(m.parameters(), lr=0.1), None, lambda x: x


def test_torch_deep_sigmoid_net_gradient_vanishes_toward_the_input(tmp_path):
    found = _by_rule(diagnose(train_torch(tmp_path, "sigmoid8", _sigmoid_net, epochs=1, every=5)))
    f = found["vanishing_gradients"][0]
    assert "0" in f.layers and "16" not in f.layers and f.value < 1e-3


def _one_fast_layer(seed, steps):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                      nn.Linear(64, 10))
    fast = list(m[2].parameters())
    rest = [p for p in m.parameters() if all(p is not q for q in fast)]
    opt = torch.optim.Adam([{"params": rest, "lr": 1e-4}, {"params": fast, "lr": 3e-2}])
    return m, opt, None, lambda x: x


def test_torch_one_parameter_group_with_a_learning_rate_out_of_line(tmp_path):
    found = _by_rule(diagnose(train_torch(tmp_path, "fast_layer", _one_fast_layer, epochs=3)))
    (f,) = found["update_ratio"]
    assert f.layers == ("2",) and f.value > 10 and "other hidden weight tensors" in f.message


def _mlp_sgd(lr):
    def build(seed, steps):
        torch.manual_seed(seed)
        m = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        return m, torch.optim.SGD(m.parameters(), lr=lr), None, lambda x: x
    return build


def test_torch_blow_up_stops_training_when_asked(tmp_path):
    with pytest.raises(TrainingDivergedError) as err:
        train_torch(tmp_path, "blowup", _mlp_sgd(3.0), epochs=2, on_explode="raise")
    assert err.value.reason == "explosion"
    found = _by_rule(diagnose(tmp_path / "blowup"))
    assert found["loss_explosion"][0].step == err.value.step and "nan_loss" not in found



class _Cube(nn.Module):
    """An activation the adapter does not know: no dead-unit or saturation check can see it."""

    def forward(self, x):
        return x * x * x * 0.1


def _custom_act(seed, steps):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(64, 32), _Cube(), nn.Linear(32, 10))
    return m, torch.optim.Adam(m.parameters(), lr=1e-3), None, lambda x: x


def test_a_model_whose_activations_are_not_visible_gets_an_info_finding_on_the_overview(tmp_path):
    from core import LogDir
    from dashboard.context import AppContext
    from dashboard.pages import overview

    train_torch(tmp_path, "custom_act", _custom_act, epochs=1)
    ld = LogDir(tmp_path)
    ld.refresh()
    ctx = AppContext(ld)
    infos = [f for f in ctx.findings(ld.get("custom_act")) if f.severity == "info"]
    assert [f.rule for f in infos] == ["no_activation"]
    page = overview.layout(ctx, run="custom_act", query={})
    text = []
    stack = [page]
    while stack:
        c = stack.pop()
        ch = getattr(c, "children", None)
        if isinstance(ch, str):
            text.append(ch)
        elif isinstance(ch, (list, tuple)):
            stack += [x for x in ch if hasattr(x, "to_plotly_json")]
            text += [x for x in ch if isinstance(x, str)]
        elif hasattr(ch, "to_plotly_json"):
            stack.append(ch)
    assert "no_activation" in text and infos[0].message in text
