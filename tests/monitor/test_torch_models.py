"""Real architectures trained a few dozen steps with ``Monitor.watch``: what a user of each gets.

Each model is tiny and trained on data the test makes (or scikit-learn's digits), on the CPU.
``babysitter check`` runs as a real subprocess on the written run, the way a CI gate runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.diagnose import diagnose
from monitor import Monitor
from tests._nets import digits

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


# -- helpers -------------------------------------------------------------------------------


def records(run_dir: Path, kind: str) -> list[dict]:
    """Every record of ``kind`` in the run's data files, by step."""
    out = [json.loads(line) for f in sorted(run_dir.glob("*.jsonl")) for line in f.read_text().splitlines()]
    return sorted((r for r in out if r["kind"] == kind), key=lambda r: r["step"])


def check(run_dir: Path) -> tuple[int, list[dict]]:
    """``babysitter check --json`` on a run, as a CI job runs it: exit code and findings."""
    p = subprocess.run([sys.executable, "-m", "babysitter", "check", str(run_dir), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout)


def train_cnn(mon: Monitor | None, model: nn.Module, steps: int = 30, lr: float = 0.05) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    if mon is not None:
        mon.watch(model, opt)
    losses = []
    for step in range(steps):
        x, y = digit_images(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if mon is not None:
            mon.log(step, loss=loss)
        losses.append(loss.item())
    return losses


def train_transformer(mon: Monitor | None, model: nn.Module, steps: int = 30, lr: float = 3e-3) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    if mon is not None:
        mon.watch(model, opt)
    losses = []
    for step in range(steps):
        tokens, pad, y = token_batch(step)
        loss = F.cross_entropy(model(tokens, padding_mask=pad), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if mon is not None:
            mon.log(step, loss=loss)
        losses.append(loss.item())
    return losses


# -- normalisation: no false symmetry error ------------------------------------------------


@pytest.mark.parametrize("arch", ["bn_cnn", "transformer"])
def test_normalised_networks_pass_babysitter_check(tmp_path, arch):
    torch.manual_seed(0)
    model, trainer = (BNCNN(), train_cnn) if arch == "bn_cnn" else (TransformerClassifier(), train_transformer)
    with Monitor(tmp_path, arch, every=5, num_classes=10 if arch == "bn_cnn" else CLASSES) as mon:
        losses = trainer(mon, model)
    assert losses[-1] < losses[0]  # it learns
    kinds = {lay["kind"] for lay in json.loads((mon.run_dir / "meta.json").read_text())["layers"]}
    assert ("batchnorm" if arch == "bn_cnn" else "layernorm") in kinds  # the norm layers are recorded
    code, findings = check(mon.run_dir)
    assert code == 0 and not [f for f in findings if f["severity"] == "error"], findings
    assert "symmetric_weights" not in {f["rule"] for f in findings}


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
