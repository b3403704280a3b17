"""The PyTorch adapter against the numpy reference (core.stats) on the same tensors, with real models.

Each test trains a real (tiny) torch model with ``Monitor.watch`` and reads what was written
to the run folder; reference values come from ``core.stats`` applied to tensors captured by
the test's own hooks, or from a hand computation of the optimizer's update.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import monitor
from core.errors import ConfigError
from core.stats import activation_stats, input_stats
from monitor import Monitor, TrainingDivergedError
from monitor import _torch as adapter
from tests.monitor._torch_helpers import (
    Capture, acts_by_layer, assert_acts_match, batch, close, mlp, params_by_name, records, train,
)

# -- statistics against the reference -------------------------------------------------------


@pytest.mark.parametrize("act,kind", [(nn.Tanh, "tanh"), (nn.ReLU, "relu"), (nn.Sigmoid, "sigmoid")])
def test_mlp_statistics_match_numpy_reference(tmp_path, act, kind):
    torch.manual_seed(0)
    model = mlp(act)
    if kind == "relu":  # make some units dead for the whole batch: large negative bias
        with torch.no_grad():
            model[2].bias[:5] = -50.0
    if kind == "tanh":  # and some saturated units
        with torch.no_grad():
            model[0].weight[:4] *= 20
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    names = [n for n, _ in model.named_modules() if n]
    cap = Capture(model, names)
    with Monitor(tmp_path, "r", every=2) as mon:
        w = mon.watch(model, opt)
        assert w.layers == names
        seen = train(model, opt, mon, 5, cap)
    acts = records(mon.run_dir, "acts")
    assert [r["step"] for r in acts] == [0, 2, 4]
    for rec in acts:
        got = acts_by_layer(rec)
        assert list(got) == names
        for name in names:
            kind_n = adapter.layer_kind(dict(model.named_modules())[name])
            ref = activation_stats(seen[rec["step"]][name].numpy(), kind_n)
            assert_acts_match(got[name], ref, where=f"step {rec['step']} {name}")
    first = acts_by_layer(acts[0])
    if kind == "relu":
        assert first["3"]["dead_frac"] >= 5 / 32
    if kind == "tanh":
        assert first["1"]["sat_frac"] > 0
    meta = json.loads((mon.run_dir / "meta.json").read_text())
    assert meta["framework"] == "torch"
    assert [(l["name"], l["kind"]) for l in meta["layers"]] == [
        (n, adapter.layer_kind(dict(model.named_modules())[n])) for n in names]
    assert meta["layers"][0]["shape"] == [32] and meta["layers"][0]["params"] == ["0.weight", "0.bias"]


class FunctionalNet(nn.Module):
    """Activations called as functions: only the Linear outputs are modules."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 24)
        self.fc2 = nn.Linear(24, 24)
        self.out = nn.Linear(24, 4)

    def forward(self, x):
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


def test_functional_relu_is_recorded_under_the_calling_module(tmp_path):
    torch.manual_seed(1)
    model = FunctionalNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cap = Capture(model, ["fc1", "fc2", "out"])
    with Monitor(tmp_path, "r", every=1) as mon:
        w = mon.watch(model, opt)
        seen = train(model, opt, mon, 2, cap)
    assert w.layers == ["fc1", "fc2", "out"]
    for rec in records(mon.run_dir, "acts"):
        got = acts_by_layer(rec)
        # F.relu called in the root module's forward, twice: named after the function, in call order
        assert list(got) == ["fc1", "relu()", "fc2", "relu()#2", "out"]
        out = seen[rec["step"]]
        for name in ("fc1", "fc2", "out"):
            assert got[name]["dead_frac"] is None  # a linear output has no dead units
            assert_acts_match(got[name], activation_stats(out[name].numpy(), "linear"))
        assert_acts_match(got["relu()"], activation_stats(F.relu(out["fc1"]).numpy(), "relu"), kind="relu")
        assert_acts_match(got["relu()#2"], activation_stats(F.relu(out["fc2"]).numpy(), "relu"), kind="relu")
    meta = json.loads((mon.run_dir / "meta.json").read_text())
    by = {lay["name"]: lay for lay in meta["layers"]}
    assert by["relu()"]["kind"] == "relu" and by["relu()"]["type"] == "relu()" and by["fc1"]["type"] == "Linear"


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x):
        x = F.max_pool2d(self.relu1(self.bn1(self.conv1(x))), 2)
        return self.fc(self.relu2(self.conv2(x)).flatten(1))


def image_batch(step: int):
    g = torch.Generator().manual_seed(2000 + step)
    return torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 4, (16,), generator=g)


def test_cnn_channels_are_units_and_dead_channels_counted(tmp_path):
    torch.manual_seed(2)
    model = SmallCNN()
    with torch.no_grad():
        model.conv2.bias[:3] = -100.0  # three channels negative at every position of every example
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    names = ["conv1", "bn1", "relu1", "conv2", "relu2", "fc"]
    cap = Capture(model, names)
    with Monitor(tmp_path, "r", every=1) as mon:
        mon.watch(model, opt)
        seen = train(model, opt, mon, 2, cap, data=image_batch)
    rec = records(mon.run_dir, "acts")[0]
    got = acts_by_layer(rec)
    assert list(got) == names
    kinds = {"conv1": "conv", "bn1": "batchnorm", "relu1": "relu", "conv2": "conv", "relu2": "relu", "fc": "linear"}
    for name in names:
        assert_acts_match(got[name], activation_stats(seen[0][name].numpy(), kinds[name]), where=name)
    assert got["relu2"]["dead_frac"] == pytest.approx(3 / 8)
    meta = json.loads((mon.run_dir / "meta.json").read_text())
    by = {l["name"]: l for l in meta["layers"]}
    assert by["conv2"]["shape"] == [8, 4, 4] and by["bn1"]["kind"] == "batchnorm"
    assert by["bn1"]["params"] == ["bn1.weight", "bn1.bias"]


class InPlaceNet(nn.Module):
    """Outputs changed in place after their layer: by ReLU(inplace=True), and by a residual ``+=``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.act1 = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True)
        self.conv2, self.bn2, self.act2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        h = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(h))
        y += h
        return self.fc(self.act2(y).mean((2, 3)))


def test_every_logged_step_matches_the_reference_with_outputs_changed_in_place(tmp_path):
    """Every logged step, not only the first, records each layer's output as the layer gave it,
    also where a later op changes it in place (ReLU(inplace=True) on bn1's, ``y += h`` on bn2's)."""
    torch.manual_seed(5)
    model = InPlaceNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    names = ["conv1", "bn1", "act1", "conv2", "bn2", "act2", "fc"]
    cap = Capture(model, names)
    with Monitor(tmp_path, "r", every=1) as mon:
        mon.watch(model, opt)
        seen = train(model, opt, mon, 4, cap, data=image_batch)
    recs = records(mon.run_dir, "acts")
    assert [r["step"] for r in recs] == [0, 1, 2, 3]
    kinds = {"conv1": "conv", "bn1": "batchnorm", "act1": "relu", "conv2": "conv", "bn2": "batchnorm",
             "act2": "relu", "fc": "linear"}
    for rec, outs in zip(recs, seen):
        got = acts_by_layer(rec)
        assert list(got) == names
        for name in names:
            assert_acts_match(got[name], activation_stats(outs[name].numpy(), kinds[name]),
                              where=f"step {rec['step']} {name}")


def test_histogram_uses_the_first_examples_when_the_output_is_large(tmp_path):
    torch.manual_seed(3)
    model = mlp(nn.Tanh, width=40, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    cap = Capture(model, ["0", "1"])
    with Monitor(tmp_path, "r", every=1) as mon:
        mon.watch(model, opt, hist_sample=300)  # 64 x 40 = 2560 values: 7 whole examples are binned
        seen = train(model, opt, mon, 1, cap)
    got = acts_by_layer(records(mon.run_dir, "acts")[0])
    for name in ("0", "1"):
        full = seen[0][name].numpy()
        kind = "tanh" if name == "1" else "linear"
        assert_acts_match(got[name], activation_stats(full, kind), sampled=full[:7].reshape(-1), kind=kind, where=name)
        assert sum(got[name]["hist"]) == 7 * 40


# -- parameters: frozen, shared, update ratios ----------------------------------------------


def test_frozen_layer_has_weights_but_no_update_and_shared_weight_is_recorded_once(tmp_path):
    torch.manual_seed(7)

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frozen = nn.Linear(12, 16)
            self.a = nn.Linear(16, 16)
            self.b = nn.Linear(16, 16)
            self.b.weight = self.a.weight  # one Parameter in two layers
            self.act = nn.Tanh()
            self.out = nn.Linear(16, 4)

        def forward(self, x):
            return self.out(self.act(self.b(self.act(self.a(self.frozen(x))))))

    model = Tied()
    model.frozen.requires_grad_(False)
    frozen_w = model.frozen.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with Monitor(tmp_path, "r", every=1) as mon:
        w = mon.watch(model, opt)
        train(model, opt, mon, 3)
    assert torch.equal(model.frozen.weight, frozen_w)
    assert w.layers == ["frozen", "a", "b", "act", "out"]
    recs = records(mon.run_dir, "params")
    assert len(recs) == 3
    for rec in recs:
        assert rec["params"] == ["frozen.weight", "frozen.bias", "a.weight", "a.bias", "b.bias", "out.weight", "out.bias"]
        p = params_by_name(rec)
        assert p["frozen.weight"]["upd_norm"] is None and p["frozen.weight"]["upd_ratio"] is None
        assert p["frozen.weight"]["grad_norm"] is None
        assert p["frozen.weight"]["w_norm"] == pytest.approx(float(frozen_w.norm()), rel=1e-5)
        assert p["a.weight"]["upd_ratio"] > 0
    acts = acts_by_layer(records(mon.run_dir, "acts")[0])
    assert list(acts) == ["frozen", "a", "act", "b", "act#2", "out"]  # a reused module is one layer per call
    meta = json.loads((mon.run_dir / "meta.json").read_text())
    by = {l["name"]: l for l in meta["layers"]}
    assert by["b"]["params"] == ["a.weight", "b.bias"]


def hand_updates(opt_name: str, grads: list[np.ndarray], lr: float,
                 befores: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """The update (w_after - w_before) that each optimizer applies, from its published formula."""
    b1, b2, eps, mu, wd = 0.9, 0.999, 1e-8, 0.9, 0.5
    m = v = buf = None
    out = []
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if opt_name == "sgd":
            out.append(-lr * g)
        elif opt_name == "sgd_weight_decay":
            out.append(-lr * (g + wd * befores[t - 1].astype(np.float64)))
        elif opt_name == "momentum":
            buf = g if buf is None else mu * buf + g
            out.append(-lr * buf)
        else:
            m = (1 - b1) * g if m is None else b1 * m + (1 - b1) * g
            v = (1 - b2) * g * g if v is None else b2 * v + (1 - b2) * g * g
            mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            out.append(-lr * mhat / (np.sqrt(vhat) + eps))
    return out


@pytest.mark.parametrize("opt_name", ["sgd", "sgd_weight_decay", "momentum", "adam"])
def test_update_ratio_matches_hand_computation(tmp_path, opt_name):
    """Plain SGD is measured as lr * ||grad|| (no weight copy); the others as the real difference."""
    torch.manual_seed(8)
    model = mlp(nn.ReLU, width=16, depth=2)
    lr = 0.01
    opt = {"sgd": lambda p: torch.optim.SGD(p, lr=lr),
           "sgd_weight_decay": lambda p: torch.optim.SGD(p, lr=lr, weight_decay=0.5),
           "momentum": lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9),
           "adam": lambda p: torch.optim.Adam(p, lr=lr)}[opt_name](model.parameters())
    grads: list[np.ndarray] = []
    befores: list[np.ndarray] = []
    after: list[np.ndarray] = []
    target = model[2].weight

    def pre(o, a, k):
        grads.append(target.grad.detach().numpy().copy())
        befores.append(target.detach().numpy().copy())

    h1 = opt.register_step_pre_hook(pre)
    h2 = opt.register_step_post_hook(lambda o, a, k: after.append(target.detach().numpy().copy()))
    with Monitor(tmp_path, "r", every=1) as mon:
        mon.watch(model, opt)
        train(model, opt, mon, 4)
    h1.remove(), h2.remove()
    upds = hand_updates(opt_name, grads, lr, befores)
    recs = records(mon.run_dir, "params")
    assert len(recs) == 4
    for rec, upd, w_before, w_after, g in zip(recs, upds, befores, after, grads):
        p = params_by_name(rec)["2.weight"]
        # the lecture's ratio: the update over the weight it was applied to
        want = np.linalg.norm(upd) / np.linalg.norm(w_before.astype(np.float64))
        assert p["upd_ratio"] == pytest.approx(want, rel=2e-3)
        assert p["grad_norm"] == pytest.approx(np.linalg.norm(g.astype(np.float64)), rel=1e-5)
        assert p["w_norm"] == pytest.approx(np.linalg.norm(w_after.astype(np.float64)), rel=1e-5)


def test_learning_rate_of_every_group_follows_the_scheduler(tmp_path):
    torch.manual_seed(9)
    model = mlp(nn.ReLU, width=8, depth=1)
    opt = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.5}], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    with Monitor(tmp_path, "r", every=10) as mon:
        mon.watch(model, opt)
        train(model, opt, mon, 5, sched=sched)
    scal = records(mon.run_dir, "scalars")
    lrs = [(r["step"], r["values"]["lr"], r["values"]["lr/1"]) for r in scal]
    want = [(0, 0.1, 0.5), (1, 0.1, 0.5), (2, 0.01, 0.05), (3, 0.01, 0.05), (4, 0.001, 0.005)]
    assert [s for s, _, _ in lrs] == [0, 1, 2, 3, 4]
    for (s, a, b), (_, wa, wb) in zip(lrs, want):
        assert a == pytest.approx(wa) and b == pytest.approx(wb), s


# -- the model is untouched ----------------------------------------------------------------


def _train_copy(tmp_path, watched: bool, every: int = 1):
    torch.manual_seed(10)
    model = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(inplace=True), nn.Dropout(0.3),
                          nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mon = Monitor(tmp_path, None, every=every) if watched else None
    if mon is not None:
        mon.watch(model, opt)
    outs = []
    for step in range(12):
        x, y = batch(step)
        out = model(x)
        outs.append(out.detach().clone())
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if mon is not None:
            mon.log(step, loss=loss)
    if mon is not None:
        mon.close()
    return model, outs


@pytest.mark.parametrize("every", [1, 3])
def test_training_is_bit_identical_with_and_without_the_monitor(tmp_path, every):
    plain, outs_plain = _train_copy(tmp_path, False)
    watched, outs_watched = _train_copy(tmp_path, True, every)
    for a, b in zip(outs_plain, outs_watched):
        assert torch.equal(a, b)
    for (na, a), (nb, b) in zip(plain.state_dict().items(), watched.state_dict().items()):
        assert na == nb and torch.equal(a, b), na
    assert len(records(next(tmp_path.iterdir()), "acts")) == (12 if every == 1 else 4)


def all_hooks(model: nn.Module, opt) -> int:
    from torch.optim import optimizer as optim_mod

    n = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    n += sum(len(getattr(p, "_post_accumulate_grad_hooks", None) or {}) for p in model.parameters())
    n += len(optim_mod._global_optimizer_pre_hooks) + len(optim_mod._global_optimizer_post_hooks)
    return n + len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)


def test_hooks_only_on_logged_steps_and_gone_after_close(tmp_path):
    from torch.optim import optimizer as optim_mod

    torch.manual_seed(11)
    model = mlp(nn.ReLU, width=8, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(tmp_path, "r", every=4)
    w = mon.watch(model, opt)
    root_hooks, layer_hooks, grad_hooks = [], [], []
    # the test's own probe, run when the first layer is called: what hooks the monitor has on it then
    model[0].register_forward_pre_hook(lambda m, a: layer_hooks.append(len(m._forward_hooks)))
    model[0].weight.register_hook(lambda g: grad_hooks.append(len(model[0].weight._post_accumulate_grad_hooks or {})))
    for step in range(9):
        root_hooks.append(len(model._forward_pre_hooks))
        train_one(model, opt, mon, step)
    assert root_hooks == [1, 0, 0, 0, 1, 0, 0, 0, 1]  # attached for steps 0, 4, 8 only
    logged = [True, False, False, False, True, False, False, False, True]
    assert [n > 0 for n in layer_hooks] == logged
    assert [n > 0 for n in grad_hooks] == logged
    assert len(optim_mod._global_optimizer_pre_hooks) == 1  # one flag check per step() of any optimizer
    assert len(model[0]._forward_hooks) == 0  # between forwards, even on a logged step
    mon.close()
    model[0]._forward_pre_hooks.clear()
    model[0].weight._backward_hooks = None
    assert all_hooks(model, opt) == 0
    w.remove()  # twice is safe
    assert mon.adapters == []
    with Monitor(tmp_path, "r2") as mon2:
        with mon2.watch(model, opt):
            assert all_hooks(model, opt) > 0
            train_one(model, opt, mon2, 0)
        assert all_hooks(model, opt) == 0
        train_one(model, opt, mon2, 1)  # a removed watch records nothing more
    assert [r["step"] for r in records(mon2.run_dir, "acts")] == [0]


def train_one(model, opt, mon, step):
    x, y = batch(step)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    mon.log(step, loss=loss)
    return loss


def test_eval_forwards_and_extra_forwards_are_not_recorded(tmp_path):
    torch.manual_seed(12)
    model = mlp(nn.Tanh, width=8, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cap = Capture(model, ["1"])
    with Monitor(tmp_path, "r", every=1) as mon:
        mon.watch(model, opt)
        model.eval()
        with torch.no_grad():
            model(torch.randn(5, 12) * 100)  # validation before the step: not recorded
        model.train()
        x, y = batch(0)
        loss = F.cross_entropy(model(x), y)
        first = cap.out["1"]
        model(torch.randn(64, 12) * 100)  # a second forward in the same step: not recorded
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.log(0, loss=loss)
    got = acts_by_layer(records(mon.run_dir, "acts")[0])
    assert_acts_match(got["1"], activation_stats(first.numpy(), "tanh"))
    inp = records(mon.run_dir, "input")[0]
    ref = input_stats(x.numpy())
    for k, v in ref.items():
        assert close(inp[k], v, rtol=1e-5), k


@pytest.mark.parametrize("bad", [False, True])
def test_input_statistics_match_reference(bad):
    g = torch.Generator().manual_seed(20)
    x = 3 + torch.randn(64, 5, 4, generator=g)
    if bad:
        x[0, 0, 0], x[1, 1, 1] = float("nan"), float("-inf")
    got = adapter.decode_input(adapter.input_vector(x).tolist(), x.numel())
    ref = input_stats(x.numpy())
    for k, v in ref.items():
        assert close(got[k], v, rtol=1e-5), (k, got[k], v)


# -- the loss ------------------------------------------------------------------------------


def nan_at(step_bad: int):
    def data(step):
        x, y = batch(step)
        if step == step_bad:
            x[0, 0] = float("nan")
        return x, y
    return data


def test_nan_loss_is_caught_at_its_step_and_written(tmp_path):
    torch.manual_seed(13)
    model = mlp(nn.ReLU, width=8, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(tmp_path, "r", every=5, on_nan="warn") as mon:
        mon.watch(model, opt)
        train(model, opt, mon, 6, data=nan_at(3))
    finds = records(mon.run_dir, "finding")
    assert [(f["rule"], f["step"]) for f in finds] == [("nan_loss", 3)]
    scal = {r["step"]: r for r in records(mon.run_dir, "scalars")}
    assert scal[3]["values"]["loss"] is None and scal[3]["nonfinite"] == {"loss": "nan"}
    assert scal[2]["values"]["loss"] is not None


@pytest.mark.parametrize("defer", [None, True])
def test_on_nan_raise_stops_training(tmp_path, defer):
    torch.manual_seed(14)
    model = mlp(nn.ReLU, width=8, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(tmp_path, "r", every=5, on_nan="raise")
    mon.watch(model, opt, defer_scalars=defer)
    data = nan_at(3)
    steps_done = []
    with pytest.raises(TrainingDivergedError, match="at step 3"):
        for step in range(8):
            x, y = data(step)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
            steps_done.append(step)
    mon.close()
    # At once on CPU; deferred (as for a GPU loss) it is read on the next log call.
    assert steps_done[-1] == (2 if defer is None else 3)
    assert [(f["rule"], f["step"]) for f in records(mon.run_dir, "finding")] == [("nan_loss", 3)]


def test_deferred_loss_records_keep_their_steps(tmp_path):
    torch.manual_seed(15)
    model = mlp(nn.ReLU, width=8, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    with Monitor(tmp_path, "r", every=3) as mon:
        mon.watch(model, opt, defer_scalars=True)
        for step in range(7):
            losses.append(train_one(model, opt, mon, step).item())
    scal = records(mon.run_dir, "scalars")
    assert [r["step"] for r in scal] == list(range(7))  # the last one written on close
    assert [r["values"]["loss"] for r in scal] == pytest.approx(losses)
    assert all(r["values"]["lr"] == 0.1 for r in scal)


# -- failures never stop training ----------------------------------------------------------


def test_a_failing_statistic_is_logged_once_and_training_goes_on(tmp_path, monkeypatch, caplog):
    real = adapter.activation_vector

    def flaky(x, kind, **kw):
        if kind == "tanh":
            raise RuntimeError("boom")
        return real(x, kind, **kw)

    from monitor import _torch_forward  # where the forward hooks compute a layer's statistics

    monkeypatch.setattr(_torch_forward, "activation_vector", flaky)
    torch.manual_seed(16)
    model = mlp(nn.Tanh, width=8, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with caplog.at_level(logging.WARNING, logger="monitor._torch"):
        with Monitor(tmp_path, "r", every=1) as mon:
            mon.watch(model, opt)
            train(model, opt, mon, 3)
    warned = [r for r in caplog.records if "boom" in r.getMessage()]
    assert len(warned) == 2  # once per failing layer ("1" and "3"), not once per step
    acts = records(mon.run_dir, "acts")
    assert len(acts) == 3 and all(r["layers"] == ["0", "2", "4"] for r in acts)
    assert len(records(mon.run_dir, "scalars")) == 3


def test_watch_rejects_what_is_not_torch(tmp_path):
    model = mlp(nn.ReLU)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(tmp_path, "r") as mon:
        with pytest.raises(ConfigError, match="torch.nn.Module"):
            mon.watch(object(), opt)
        with pytest.raises(ConfigError, match="torch.optim.Optimizer"):
            mon.watch(model, object())
        with pytest.raises(ConfigError, match="start_step"):
            mon.watch(model, opt, start_step=-1)
    assert all_hooks(model, opt) == 0


def test_module_level_watch_opens_a_run_and_closing_removes_hooks(tmp_path):
    torch.manual_seed(17)
    model = mlp(nn.ReLU, width=8, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = monitor.watch(model, opt, logdir=tmp_path, name="w", every=2, start_step=1)
    for step in range(1, 4):
        train_one(model, opt, mon, step)
    mon.close()
    assert all_hooks(model, opt) == 0
    assert [r["step"] for r in records(tmp_path / "w", "acts")] == [1, 2]
    meta = json.loads((tmp_path / "w" / "meta.json").read_text())
    assert meta["framework"] == "torch" and meta["every"] == 2 and meta["status"] == "finished"


def test_the_adapter_and_the_monitor_agree_on_the_logged_steps(tmp_path):
    """One cadence: a loop whose steps start past ``start_step`` records at its first step,
    then every ``every`` steps, and ``Monitor.stats_due`` says so (it said every step was due)."""
    torch.manual_seed(18)
    model = mlp(nn.ReLU, width=8, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(tmp_path, "r", every=4) as mon:
        mon.watch(model, opt)  # start_step 0
        due = []
        for step in range(5, 14):
            due.append(mon.stats_due(step))
            train_one(model, opt, mon, step)
        for step in (14, 16):  # the numpy path beside the adapter follows the same cadence
            mon.activation(step, "extra", np.ones((2, 3)))
    assert [r["step"] for r in records(mon.run_dir, "params")] == [5, 8, 12]
    assert [s for s, d in zip(range(5, 14), due) if d] == [5, 8, 12]
    assert [r["step"] for r in records(mon.run_dir, "acts")] == [5, 8, 12, 16]


def _unscale(g):
    """What GradScaler.unscale_ does to a gradient: in place, without bumping its version."""
    torch._amp_foreach_non_finite_check_and_unscale_([g], torch.zeros(1), torch.full((1,), 0.5))


@pytest.mark.parametrize("edit", [
    None,
    lambda m: torch.nn.utils.clip_grad_norm_(m.parameters(), 0.01),
    lambda m: [p.grad.mul_(0.5) for p in m.parameters()],
    lambda m: [p.grad.data.mul_(0.5) for p in m.parameters()],  # .data bumps no version
    lambda m: [_unscale(p.grad) for p in m.parameters()],
    lambda m: [setattr(p, "grad", p.grad * 2) for p in m.parameters()],
], ids=["unchanged", "clipped", "in_place", "through_data", "unscaled", "replaced"])
def test_plain_sgd_update_is_exact_whatever_happened_to_the_gradient_after_backward(tmp_path, edit):
    """Plain SGD's update comes from the gradient's norm taken at backward when the gradient
    is unchanged, and from the gradient at step() when anything changed it."""
    torch.manual_seed(19)
    model = nn.Sequential(nn.Linear(300, 300), nn.Tanh(), nn.Linear(300, 4))  # 90,000 weights: reused
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(32, 300), torch.randint(0, 4, (32,))
    with Monitor(tmp_path, "r", every=1) as mon:
        mon.watch(model, opt)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        pre_clip = {n: float(p.grad.double().norm()) for n, p in model.named_parameters()}
        if edit is not None:
            edit(model)
        before = {n: p.detach().clone().double() for n, p in model.named_parameters()}
        opt.step()
        mon.log(0, loss=loss)
    got = params_by_name(records(mon.run_dir, "params")[0])
    for n, p in model.named_parameters():
        assert got[n]["upd_norm"] == pytest.approx(float((p.detach().double() - before[n]).norm()), rel=1e-5), n
        assert got[n]["grad_norm"] == pytest.approx(pre_clip[n], rel=1e-6), n


def test_gradient_norms_are_those_of_the_accumulated_gradient_before_clipping(tmp_path):
    """Two backward passes in one step (gradient accumulation), then clipping: the recorded
    gradient norm is that of the sum both backwards left, not of the first one nor the clipped one."""
    torch.manual_seed(23)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with Monitor(tmp_path, "r", every=1) as mon:
        mon.watch(model, opt)
        for step in range(2):
            opt.zero_grad()
            for micro in range(2):
                g = torch.Generator().manual_seed(10 * step + micro)
                x, y = torch.randn(8, 20, generator=g), torch.randint(0, 4, (8,), generator=g)
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                if micro == 0:
                    first = {n: float(p.grad.double().norm()) for n, p in model.named_parameters()}
            total = {n: float(p.grad.double().norm()) for n, p in model.named_parameters()}
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
            opt.step()
            mon.log(step, loss=loss)
    recs = records(mon.run_dir, "params")
    assert [r["step"] for r in recs] == [0, 1]
    got = params_by_name(recs[1])
    for n in total:
        assert got[n]["grad_norm"] == pytest.approx(total[n], rel=1e-6), n
        assert abs(got[n]["grad_norm"] - first[n]) > 1e-3 * total[n], n

# -- dtypes, layouts, declared kinds, optimizers ---------------------------------------------


def test_all_bf16_parameters_are_recorded(tmp_path):
    torch.manual_seed(3)
    model = mlp(nn.ReLU, width=16, depth=1).to(torch.bfloat16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with Monitor(tmp_path, "r", every=1) as mon:
        mon.watch(model, opt)
        train(model, opt, mon, 2, data=lambda s: (batch(s)[0].bfloat16(), batch(s)[1]))
    recs = records(mon.run_dir, "params")
    assert [r["step"] for r in recs] == [0, 1]
    p = params_by_name(recs[0])["0.weight"]
    assert p["w_norm"] > 0 and p["upd_norm"] > 0 and p["grad_norm"] > 0


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class SeqNet(nn.Module):
    """(N, T, D) activations: a unit is a feature, seen at every time step of every example."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.act = Swish()
        self.norm = nn.RMSNorm(8)
        self.out = nn.Linear(8, 4)

    def forward(self, x=None, *, features=None):
        h = self.norm(self.act(self.fc(features if features is not None else x)))
        return self.out(h.mean(1))


def test_declared_kind_keyword_input_rmsnorm_and_last_axis_units(tmp_path):
    torch.manual_seed(5)
    model = SeqNet()
    with torch.no_grad():
        model.fc.bias[:5] = -50.0  # 5 of 8 features dead at every time step; time steps are not units
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 7, 6, generator=g), torch.randint(0, 4, (10,), generator=g)
    h = model.fc(x).detach()
    swish = h * torch.sigmoid(h)
    with Monitor(tmp_path, "r", every=1) as mon:
        mon.watch(model, opt, kinds={Swish: "silu"})
        loss = F.cross_entropy(model(features=x), y)
        loss.backward()
        opt.step()
        mon.log(0, loss=loss)
    got = acts_by_layer(records(mon.run_dir, "acts")[0])
    assert list(got) == ["fc", "act", "norm", "out"]  # Swish's torch.sigmoid is part of the module
    assert got["act"]["dead_frac"] == pytest.approx(5 / 8)  # a silu is <= 0 where its input is
    assert got["act"]["mean"] == pytest.approx(float(swish.double().mean()), rel=1e-5)
    assert got["fc"]["unit_std"] == pytest.approx(float(h.double().reshape(-1, 8).mean(0).std(correction=0)), rel=1e-4)
    inp = records(mon.run_dir, "input")[0]
    assert inp["mean"] == pytest.approx(float(x.double().mean()), rel=1e-6)  # the keyword argument
    meta = {lay["name"]: lay for lay in json.loads((mon.run_dir / "meta.json").read_text())["layers"]}
    assert meta["norm"]["kind"] == "layernorm" and meta["norm"]["type"] == "RMSNorm"
    assert meta["act"]["kind"] == "silu" and meta["act"]["shape"] == [7, 8]
    with pytest.raises(ConfigError, match="kinds"):
        Monitor(tmp_path, "bad").watch(model, opt, kinds={Swish: "swishy"})


class Square(nn.Module):
    def forward(self, x):
        return x * x


def test_a_model_without_known_activations_is_reported_once(tmp_path, caplog):
    model = nn.Sequential(nn.Linear(12, 8), Square(), nn.Linear(8, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with caplog.at_level(logging.WARNING, logger="monitor._torch"), Monitor(tmp_path, "r", every=1) as mon:
        mon.watch(model, opt)
        train(model, opt, mon, 3)
    assert sum("No activation function recognised" in r.getMessage() for r in caplog.records) == 1
    found = [r for r in records(mon.run_dir, "finding") if r.get("rule") == "no_activation"]
    assert len(found) == 1 and found[0]["severity"] == "info"


def test_optimizer_none_records_eval_forwards_and_recreated_optimizer_keeps_its_lr_series(tmp_path):
    torch.manual_seed(7)
    model = mlp(nn.ReLU, width=8, depth=1)
    with Monitor(tmp_path, "eval", every=1) as mon:
        mon.watch(model, None)
        model.eval()
        with torch.no_grad():
            for step in range(2):
                model(batch(step)[0])
                mon.log(step, val_loss=1.0)
    assert [r["step"] for r in records(mon.run_dir, "acts")] == [0, 1]
    assert not records(mon.run_dir, "params")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(tmp_path, "r", every=1) as mon:
        w = mon.watch(model, opt)
        assert mon.watch(model, opt) is w  # watching again adds nothing
        train(model, opt, mon, 2)
        del opt
        opt = torch.optim.SGD(model.parameters(), lr=0.01)  # re-created (the unfreeze recipe)
        for step in range(2, 4):
            train_one(model, opt, mon, step)
    lrs = [r["values"].get("lr") for r in records(mon.run_dir, "scalars")]
    assert lrs == [0.1, 0.1, 0.01, 0.01]
    assert [len(r["params"]) for r in records(mon.run_dir, "params")] == [4, 4, 4, 4]  # no duplicated rows
    up = [params_by_name(r)["0.weight"]["upd_norm"] for r in records(mon.run_dir, "params")]
    assert all(u is not None and u > 0 for u in up)


def test_wrapped_model_is_recorded_under_the_inner_names(tmp_path):
    torch.manual_seed(8)
    inner = mlp(nn.ReLU, width=8, depth=1)
    model = nn.DataParallel(inner)  # on a machine without GPUs it calls the module itself
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(tmp_path, "r", every=1) as mon:
        w = mon.watch(model, opt)
        train(model, opt, mon, 1)
    assert w.layers == ["0", "1", "2"]
    assert records(mon.run_dir, "acts")[0]["layers"] == ["0", "1", "2"]
    assert records(mon.run_dir, "params")[0]["params"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
