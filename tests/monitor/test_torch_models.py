"""Real architectures trained a few dozen steps with ``Monitor.watch``: what a user of each gets.

Each model is tiny and trained on data the test makes (or scikit-learn's digits), on the CPU,
or on the device ``BABYSITTER_TEST_DEVICE`` names (``cuda``: ``bench/device_check.sh`` runs
this file there; a device that is not present skips the file). ``babysitter check`` runs as a
real subprocess on the written run, the way a CI gate runs it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.diagnose import diagnose
from monitor import Monitor
from tests._nets import digits

DEVICE = torch.device(os.environ.get("BABYSITTER_TEST_DEVICE") or "cpu")
if DEVICE.type == "cuda":
    if not torch.cuda.is_available():
        pytest.skip("BABYSITTER_TEST_DEVICE=cuda, but torch sees no CUDA device", allow_module_level=True)
    # Bit-identical training with and without the monitor needs the same kernels both times
    # (cuBLAS reads its workspace setting when first used).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def on_device(x: Any) -> Any:
    """Tensors (also inside tuples and dicts) moved to ``DEVICE``."""
    if isinstance(x, torch.Tensor):
        return x.to(DEVICE)
    if isinstance(x, tuple):
        return tuple(on_device(v) for v in x)
    if isinstance(x, dict):
        return {k: on_device(v) for k, v in x.items()}
    return x


# -- data ----------------------------------------------------------------------------------


def digit_images(step: int, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of scikit-learn's digits as ``(N, 1, 8, 8)`` images (standardised), in a fixed order."""
    X, y, _, _ = digits()
    i = (step * n) % (len(y) - n)
    return (torch.tensor(X[i:i + n], dtype=torch.float32).reshape(n, 1, 8, 8),
            torch.tensor(y[i:i + n], dtype=torch.int64))


VOCAB, SEQ, CLASSES = 40, 12, 4


def token_batch(step: int, n: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token sequences whose class is the most frequent of four token groups; the tail is padding (token 0).

    Returns ``(tokens (N, T), padding mask (N, T), labels)``.
    """
    g = torch.Generator().manual_seed(5000 + step)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    tokens = torch.randint(1, VOCAB, (n, SEQ), generator=g)
    hot = torch.rand(n, SEQ, generator=g) < 0.5
    group = 1 + y[:, None] * ((VOCAB - 1) // CLASSES) + torch.randint(0, (VOCAB - 1) // CLASSES, (n, SEQ), generator=g)
    tokens = torch.where(hot, group, tokens)
    lengths = torch.randint(SEQ // 2, SEQ + 1, (n,), generator=g)
    pad = torch.arange(SEQ)[None, :] >= lengths[:, None]
    return tokens.masked_fill(pad, 0), pad, y


# -- models --------------------------------------------------------------------------------


class BNCNN(nn.Module):
    """Conv -> BatchNorm -> ReLU twice, global pooling, a Linear head (the usual small CNN)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class TransformerClassifier(nn.Module):
    """Token embedding, a 2-layer ``nn.TransformerEncoder`` (batch first), masked mean pooling, a head."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d, padding_idx=0)
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, CLASSES)

    def forward(self, tokens, padding_mask=None):
        h = self.encoder(self.embed(tokens), src_key_padding_mask=padding_mask)
        keep = (~padding_mask).unsqueeze(-1).float() if padding_mask is not None else torch.ones_like(h[..., :1])
        return self.head((h * keep).sum(1) / keep.sum(1))


class ResidualNet(nn.Module):
    """A stem and one residual block (conv-BN-ReLU-conv-BN plus the identity, then ReLU)."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.act = nn.ReLU()
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return self.head(self.act(x + y).mean((2, 3)))


class RNNClassifier(nn.Module):
    """Embedded tokens through an LSTM or a GRU, the mean of its outputs into a head."""

    def __init__(self, cell: str, batch_first: bool = True, d: int = 16, h: int = 24) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Embedding(VOCAB, d, padding_idx=0)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(d, h, batch_first=batch_first)
        self.head = nn.Linear(h, CLASSES)

    def forward(self, tokens):
        if not self.batch_first:
            tokens = tokens.t()
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out.mean(1 if self.batch_first else 0))


class FunctionalMLP(nn.Module):
    """Activations called as functions only: no activation module anywhere."""

    def __init__(self, d_in: int = 64, h: int = 48, classes: int = 10, scale: float = 1.0) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(d_in, h), nn.Linear(h, h), nn.Linear(h, classes)
        with torch.no_grad():
            self.fc2.weight.mul_(scale)

    def forward(self, x):
        return self.fc3(torch.tanh(self.fc2(F.gelu(self.fc1(x.flatten(1))))))


class MLP(nn.Module):
    def __init__(self, d_in: int = 64, h: int = 48, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.head = nn.Linear(h, classes)

    def forward(self, x):
        return self.head(self.body(x.flatten(1)))


# -- helpers -------------------------------------------------------------------------------


def records(run_dir: Path, kind: str) -> list[dict]:
    """Every record of ``kind`` in the run's data files, by step."""
    out = [json.loads(line) for f in sorted(run_dir.glob("*.jsonl")) for line in f.read_text().splitlines()]
    return sorted((r for r in out if r["kind"] == kind), key=lambda r: r["step"])


def by_name(rec: dict, key: str = "layers") -> dict[str, dict]:
    return {n: {k: v[i] for k, v in rec.items() if isinstance(v, list) and k != key} for i, n in enumerate(rec[key])}


def check(run_dir: Path) -> tuple[int, list[dict]]:
    """``babysitter check --json`` on a run or log directory, as a CI job runs it: exit code and findings."""
    p = subprocess.run([sys.executable, "-m", "babysitter", "check", str(run_dir), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout)


STEPS, EVERY = 30, 5
BF16_LR = 0.2


def images(step):
    x, y = digit_images(step)
    return (x,), {}, y


def tokens(step):
    t, _, y = token_batch(step)
    return (t,), {}, y


def masked_tokens(step):
    t, pad, y = token_batch(step)
    return (t,), {"padding_mask": pad}, y


def sgd(lr=0.05, momentum=0.9):
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum)


def adamw(lr=3e-3):
    return lambda params: torch.optim.AdamW(params, lr=lr)


# name -> how it is built and trained. ``opt`` gets the model; ``late`` (optional) makes a second
# optimizer after watch(); ``watch_opt`` False watches with optimizer=None for it.
ARCHS: dict[str, dict] = {
    "bn_cnn": dict(make=BNCNN, data=images, classes=10, opt=lambda m: sgd()(m.parameters()),
                   look=["features.1", "features.2"]),
    "residual": dict(make=ResidualNet, data=images, classes=10, opt=lambda m: sgd()(m.parameters()),
                     look=["act", "conv1.relu()"]),
    "lstm": dict(make=lambda: RNNClassifier("lstm"), data=tokens, classes=CLASSES, opt=lambda m: adamw()(m.parameters()),
                 look=["rnn", "embed"]),
    "gru_seq_first": dict(make=lambda: RNNClassifier("gru", batch_first=False), data=tokens, classes=CLASSES,
                          opt=lambda m: adamw()(m.parameters()), look=["rnn"]),
    "transformer": dict(make=TransformerClassifier, data=masked_tokens, classes=CLASSES,
                        opt=lambda m: adamw()(m.parameters()), look=["encoder.layers.0.linear1", "encoder.layers.0.self_attn"]),
    "functional": dict(make=FunctionalMLP, data=images, classes=10, opt=lambda m: sgd()(m.parameters()),
                       look=["fc1", "fc2"]),
    "bf16": dict(make=lambda: MLP().to(torch.bfloat16), data=lambda s: ((images(s)[0][0].bfloat16(),), {}, images(s)[2]),
                 classes=10, opt=lambda m: torch.optim.SGD(m.parameters(), lr=BF16_LR), look=["body.1"]),
    "amp": dict(make=MLP, data=images, classes=10, opt=lambda m: sgd()(m.parameters()), amp=True, skip={3, 10},
                clip=1.0, look=["body.1"]),
    "two_optimizers": dict(make=MLP, data=images, classes=10, opt=lambda m: sgd()(m.body.parameters()),
                           late=lambda m: torch.optim.Adam(m.head.parameters(), lr=1e-3), look=["body.1"]),
    "clipped": dict(make=MLP, data=images, classes=10, opt=lambda m: sgd(0.1)(m.parameters()), clip=0.5,
                    look=["body.1"]),
}


class Run:
    """One training run of an architecture, with what the test's own hooks saw at step 0."""

    def __init__(self) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self.inputs: dict[str, torch.Tensor] = {}
        self.grads: dict[str, float] = {}  # pre-clip (and unscaled) gradient norms at step 0
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}
        self.state: dict[str, torch.Tensor] = {}
        self.losses: list[float] = []
        self.run_dir: Path | None = None


def fit(arch: str, root: Path | None, *, plant: Any = None, name: str | None = None, compile_backend: str | None = None,
        compile_after_watch: bool = False, steps: int = STEPS, every: int = EVERY, look: bool = True) -> Run:
    """Train ``arch`` for ``steps`` steps; watched (into ``root``) when ``root`` is given.

    With ``compile_backend`` the model is trained through ``torch.compile``, compiled before
    ``watch()`` (the compiled model is watched) or, with ``compile_after_watch``, after it.
    """
    spec = ARCHS[arch]
    torch.manual_seed(0)
    model = spec["make"]()
    if plant is not None:
        plant(model)
    model.to(DEVICE)
    called = model
    if compile_backend and not compile_after_watch:
        called = torch.compile(model, backend=compile_backend)
    opts = [spec["opt"](model)]
    scaler = torch.amp.GradScaler(DEVICE.type) if spec.get("amp") else None
    mon = None
    if root is not None:
        mon = Monitor(root, name or arch, every=every, num_classes=spec["classes"])
        mon.watch(called, opts[0], **({"scaler": scaler} if scaler else {}))
    if compile_backend and compile_after_watch:
        called = torch.compile(model, backend=compile_backend)
    if spec.get("late"):
        opts.append(spec["late"](model))  # created after watch(): found through torch's global hooks
    run = Run()
    mods = dict(model.named_modules())
    look = [n for n in spec["look"] if n in mods] if look else []
    params = dict(model.named_parameters())
    def keep(name):
        def hook(module, args, out):
            if name not in run.outputs:
                run.outputs[name] = (out[0] if isinstance(out, tuple) else out).detach().clone()
        return hook

    hooks = [mods[n].register_forward_hook(keep(n)) for n in look]
    try:
        for step in range(steps):
            args, kwargs, y = on_device(spec["data"](step))
            with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=bool(spec.get("amp"))):
                loss = F.cross_entropy(called(*args, **kwargs).float(), y)
            for o in opts:
                o.zero_grad()
            if step in spec.get("skip", ()):
                loss = loss * float("inf")  # inf gradients: the GradScaler skips this step
            (scaler.scale(loss) if scaler else loss).backward()
            if step in spec.get("skip", ()):
                loss = torch.tensor(run.losses[-1])  # what is logged stays finite
            if step == 0:
                scale = scaler.get_scale() if scaler else 1.0
                assert not spec.get("skip") or 0 not in spec["skip"]
                run.grads = {n: float(p.grad.double().norm()) / scale for n, p in params.items() if p.grad is not None}
            if scaler:
                scaler.unscale_(opts[0])
            if spec.get("clip"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec["clip"])
            if step == 0:
                run.before = {n: p.detach().clone() for n, p in params.items()}
            if scaler:
                scaler.step(opts[0])
                scaler.update()
            else:
                for o in opts:
                    o.step()
            if step == 0:
                run.after = {n: p.detach().clone() for n, p in params.items()}
                for h in hooks:
                    h.remove()
            if mon is not None:
                mon.log(step, loss=loss)
            run.losses.append(loss.item())
    finally:
        for h in hooks:
            h.remove()
        if mon is not None:
            mon.close()
            run.run_dir = mon.run_dir
    run.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return run


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """Every architecture trained with and without the monitor, and ``babysitter check`` on all watched runs."""
    root = tmp_path_factory.mktemp("bank")
    runs = {arch: (fit(arch, None), fit(arch, root)) for arch in ARCHS}
    code, findings = check(root)
    return runs, code, findings


# -- the bank: identical training, silent check, statistics equal a direct computation ----


@pytest.mark.parametrize("arch", list(ARCHS))
def test_training_is_bit_identical_with_and_without_the_monitor(bank, arch):
    plain, watched = bank[0][arch]
    assert plain.state.keys() == watched.state.keys()
    for k in plain.state:
        assert torch.equal(plain.state[k], watched.state[k]), f"{arch}: {k} differs"
    assert watched.losses[-1] < watched.losses[0], f"{arch} does not learn: {watched.losses}"


@pytest.mark.parametrize("arch", list(ARCHS))
def test_babysitter_check_is_silent_on_the_healthy_models(bank, arch):
    runs, code, findings = bank
    mine = [f for f in findings if f["run"] == runs[arch][1].run_dir.name and f["severity"] in ("error", "warning")]
    assert not mine, mine
    assert code == 0


def unit_reference(out: torch.Tensor, unit_axis: int) -> dict[str, float]:
    """The test's own per-unit statistics: every example and position of each unit."""
    x = out.double().movedim(unit_axis, -1).reshape(-1, out.shape[unit_axis])
    return {"mean": float(x.mean()), "std": float(x.std(correction=0)),
            "dead_frac": float((x.amax(0) <= 0).double().mean()), "unit_std": float(x.mean(0).std(correction=0))}


# layer -> (unit axis of the output, whether the layer has dead units)
AXES = {
    ("bn_cnn", "features.1"): (1, False), ("bn_cnn", "features.2"): (1, True), ("residual", "act"): (1, True),
    ("lstm", "rnn"): (-1, False), ("lstm", "embed"): (-1, False), ("gru_seq_first", "rnn"): (-1, False),
    ("transformer", "encoder.layers.0.linear1"): (-1, False), ("transformer", "encoder.layers.0.self_attn"): (-1, False),
    ("functional", "fc1"): (-1, False), ("bf16", "body.1"): (-1, True), ("amp", "body.1"): (-1, True),
    ("two_optimizers", "body.1"): (-1, True), ("clipped", "body.1"): (-1, True),
}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_statistics_equal_a_direct_computation(bank, arch):
    _, run = bank[0][arch]
    acts = by_name(records(run.run_dir, "acts")[0])
    for (a, layer), (axis, dead) in AXES.items():
        if a != arch:
            continue
        out = run.outputs[layer]
        ref = unit_reference(out, axis % out.ndim)
        got = acts[layer]
        for k in ("mean", "std", "unit_std"):
            assert got[k] == pytest.approx(ref[k], rel=2e-3, abs=1e-5), (layer, k)
        if dead:
            assert got["dead_frac"] == pytest.approx(ref["dead_frac"]), layer
    params = by_name(records(run.run_dir, "params")[0], "params")
    for n, p in params.items():
        g = run.grads.get(n)
        if g is not None:  # before clipping, and unscaled under a GradScaler
            assert p["grad_norm"] == pytest.approx(g, rel=1e-4), n
        before, after = run.before[n].double(), run.after[n].double()
        if g is not None and not torch.equal(before, after) and before.norm() > 0:
            want = float((after - before).norm() / before.norm())
            assert p["upd_ratio"] == pytest.approx(want, rel=1e-3, abs=1e-12), n


def test_sequence_layouts_in_meta(bank):
    _, gru = bank[0]["gru_seq_first"]
    meta = {lay["name"]: lay for lay in json.loads((gru.run_dir / "meta.json").read_text())["layers"]}
    assert meta["rnn"]["shape"] == [SEQ, 24] and meta["rnn"]["type"] == "GRU"  # (T, N, H): batch axis 1 dropped
    _, tr = bank[0]["transformer"]
    meta = {lay["name"]: lay for lay in json.loads((tr.run_dir / "meta.json").read_text())["layers"]}
    assert meta["encoder.layers.0.relu()"]["kind"] == "relu"  # F.relu inside TransformerEncoderLayer
    assert meta["encoder.layers.0.self_attn"]["type"] == "MultiheadAttention"
    assert "encoder.layers.0.self_attn.out_proj" not in meta
    assert not records(tr.run_dir, "input")  # integer token ids are not judged for centring


def test_amp_skipped_steps_and_two_optimizers_are_recorded(bank):
    _, amp = bank[0]["amp"]
    scal = {r["step"]: r["values"] for r in records(amp.run_dir, "scalars")}
    assert sorted(s for s, v in scal.items() if v.get("skipped_step") == 1.0) == sorted(ARCHS["amp"]["skip"])
    assert sorted(scal) == list(range(STEPS))  # one record per mon.log step, none shifted
    acts_steps = [r["step"] for r in records(amp.run_dir, "acts")]
    assert acts_steps == [0, 5, 10, 15, 20, 25]
    p10 = by_name(next(r for r in records(amp.run_dir, "params") if r["step"] == 10), "params")
    w10 = p10["body.0.weight"]
    # skipped: no update, and the gradients the scaler discarded are not reported as the model's
    assert w10["upd_norm"] is None and w10["grad_norm"] is None and w10["grad_nan"] == w10["grad_inf"] == 0
    assert w10["w_norm"] is not None
    _, two = bank[0]["two_optimizers"]
    scal = records(two.run_dir, "scalars")
    assert {"lr", "lr/opt1"} <= set(scal[-1]["values"])
    assert scal[-1]["values"]["lr"] == 0.05 and scal[-1]["values"]["lr/opt1"] == 1e-3
    last = by_name(records(two.run_dir, "params")[-1], "params")
    assert last["body.0.weight"]["upd_norm"] and last["head.weight"]["upd_norm"]


# -- planted problems are found ------------------------------------------------------------


def dead_ffn(model: nn.Module) -> None:
    with torch.no_grad():
        for layer in model.encoder.layers:
            layer.linear1.bias[: int(0.7 * layer.linear1.out_features)] = -100.0  # 70% of FFN features never fire


def saturating(model: nn.Module) -> None:
    with torch.no_grad():
        model.fc2.weight.mul_(30.0)  # tanh(fc2(...)) sits at +-1


@pytest.mark.parametrize("arch,plant,rule,layer", [
    ("transformer", dead_ffn, "dead_relu", "encoder.layers.0.relu()"),
    ("functional", saturating, "saturation", "tanh()"),
])
def test_planted_problem_is_found(tmp_path, arch, plant, rule, layer):
    run = fit(arch, tmp_path, plant=plant, steps=20)
    code, findings = check(run.run_dir)
    found = [f for f in findings if f["rule"] == rule]
    assert found and layer in found[0]["layers"], findings
    if rule == "dead_relu":
        acts = by_name(records(run.run_dir, "acts")[0])
        assert acts[layer]["dead_frac"] >= 44 / 64  # features over every example and position, not time steps


def test_nan_in_a_bf16_model_is_found(tmp_path):
    spec = ARCHS["bf16"]
    torch.manual_seed(0)
    model = spec["make"]().to(DEVICE)
    opt = spec["opt"](model)
    with Monitor(tmp_path, "nan", every=2, num_classes=10) as mon:
        mon.watch(model, opt)
        for step in range(8):
            args, _, y = on_device(spec["data"](step))
            loss = F.cross_entropy(model(*args).float(), y)
            opt.zero_grad()
            loss.backward()
            if step == 4:
                model.body[2].weight.grad[0, 0] = float("nan")
            opt.step()
            mon.log(step, loss=loss)
    params = records(mon.run_dir, "params")
    assert params and all(r["w_norm"][0] is not None for r in params[:2])  # bf16 weights are recorded
    code, findings = check(mon.run_dir)
    assert code == 1 and "nonfinite_values" in {f["rule"] for f in findings}, findings


def test_bf16_update_is_the_real_difference_not_lr_times_grad(bank):
    _, run = bank[0]["bf16"]
    p = by_name(records(run.run_dir, "params")[0], "params")
    for n in ("body.0.weight", "body.2.weight"):
        real = float((run.after[n].double() - run.before[n].double()).norm())
        assert p[n]["upd_norm"] == pytest.approx(real, rel=1e-6)
        assert abs(p[n]["upd_norm"] - BF16_LR * run.grads[n]) > 1e-3 * real  # bf16 rounds -lr * grad


# -- torch.compile -------------------------------------------------------------------------


def test_compiled_model_trains_as_without_the_monitor_and_is_recorded(tmp_path):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    plain = fit("bn_cnn", None, compile_backend="aot_eager", steps=12, look=False)
    torch._dynamo.reset()
    counters.clear()
    watched = fit("bn_cnn", tmp_path, compile_backend="aot_eager", steps=12, look=False)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]  # no recompilation, no breaks
    for k in plain.state:
        assert torch.equal(plain.state[k], watched.state[k]), k
    recs = records(watched.run_dir, "acts")
    assert [r["step"] for r in recs] == [0, 5, 10]
    assert "features.2" in recs[0]["layers"] and not any(n.startswith("_orig_mod") for n in recs[0]["layers"])
    assert all(not n.startswith("_orig_mod") for n in records(watched.run_dir, "params")[0]["params"])


def test_model_compiled_after_watch_trains_as_without_the_monitor_and_is_recorded(tmp_path, caplog):
    """torch.compile(model) after watch(model): the hooks move to the compiled wrapper after the
    first step, so layers are recorded from the next logged step, with one recompilation in all."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    plain = fit("bn_cnn", None, compile_backend="aot_eager", steps=16, look=False)
    torch._dynamo.reset()
    counters.clear()
    with caplog.at_level(logging.WARNING, logger="monitor._torch"):
        watched = fit("bn_cnn", tmp_path, compile_backend="aot_eager", compile_after_watch=True, steps=16, look=False)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    # at most the first step's graph (traced with the hooks) and the one without: none per logged step
    assert counters["stats"]["unique_graphs"] <= 2 and not counters["graph_break"]
    for k in plain.state:
        assert torch.equal(plain.state[k], watched.state[k]), k
    recs = records(watched.run_dir, "acts")
    assert [r["step"] for r in recs] == [5, 10, 15]
    assert "features.2" in recs[0]["layers"] and not any(n.startswith("_orig_mod") for n in recs[0]["layers"])
    assert [r["step"] for r in records(watched.run_dir, "params")] == [0, 5, 10, 15]


# -- normalisation: no false symmetry error ------------------------------------------------


def test_symmetry_message_quotes_the_flagged_layers_own_spread(tmp_path):
    """A constant-initialised Linear is still found; the value quoted is its own, not the largest in the row."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        model[2].weight.fill_(0.1)  # every unit of layer 2 computes the same output
        model[2].bias.fill_(0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with Monitor(tmp_path, "r", every=1) as mon:
        mon.watch(model, opt)
        for step in range(3):
            g = torch.Generator().manual_seed(step)
            x, y = torch.randn(32, 12, generator=g), torch.randint(0, 4, (32,), generator=g)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
    found = [f for f in diagnose(mon.run_dir) if f.rule == "symmetric_weights"]
    assert found and found[0].severity == "error"
    assert "2" in found[0].layers and "0" not in found[0].layers
    rec = records(mon.run_dir, "acts")[0]
    i = rec["layers"].index("2")
    own = rec["unit_std"][i] / rec["std"][i]
    assert found[0].value == pytest.approx(own, rel=1e-6, abs=1e-12) and own <= 1e-6
    assert np.nanmax(np.array(rec["unit_std"], float) / np.array(rec["std"], float)) > 0.1  # another layer's is large
