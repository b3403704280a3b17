"""Tiny PyTorch networks trained on scikit-learn's digits, recorded with ``Monitor.watch``.

The healthy bank trains the architectures and optimisers people use today (BatchNorm CNNs,
LayerNorm/GELU MLPs, a small transformer, an LSTM; SGD with momentum, Adam, AdamW;
OneCycle and cosine schedules, warm-up; dropout, weight decay, gradient clipping, bf16
autocast) for a few dozen steps each: long enough for every rule to judge them, short
enough for the test suite. Each build function returns ``(model, optimizer, scheduler,
input_view)`` where ``input_view`` reshapes the flat 64-pixel digits for the model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from monitor import Monitor
from tests._nets import digits

Builder = Callable[[int], tuple[nn.Module, torch.optim.Optimizer, Any, Callable[[torch.Tensor], torch.Tensor]]]


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x


def _image(x: torch.Tensor) -> torch.Tensor:
    return x.view(-1, 1, 8, 8)


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.view(-1, 8, 8)  # 8 tokens (image rows) of 8 features


def _cosine(opt: torch.optim.Optimizer, steps: int, warmup: int = 0) -> Any:
    def f(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup))))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


class SmallCNN(nn.Module):
    def __init__(self, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), act(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), act(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TinyTransformer(nn.Module):
    def __init__(self, d: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.pos = nn.Parameter(torch.randn(1, 8, d) * 0.02)
        block = nn.TransformerEncoderLayer(d, 4, dim_feedforward=64, dropout=0.1, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.pos)
        return self.head(self.norm(h).mean(dim=1))


class LSTMClassifier(nn.Module):
    def __init__(self, hidden: int = 48) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def bn_cnn_momentum_onecycle(seed: int, steps: int) -> Any:
    m = SmallCNN()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    return m, opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps), _image


def bn_cnn_silu_adamw_cosine(seed: int, steps: int) -> Any:
    m = SmallCNN(nn.SiLU)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.05)
    return m, opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps), _image


def layernorm_gelu_adamw_cosine(seed: int, steps: int) -> Any:
    m = nn.Sequential(nn.Linear(64, 128), nn.LayerNorm(128), nn.GELU(), nn.Dropout(0.1),
                      nn.Linear(128, 128), nn.LayerNorm(128), nn.GELU(), nn.Linear(128, 10))
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=0.01)
    return m, opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps), _flat


def transformer_adamw_warmup(seed: int, steps: int) -> Any:
    m = TinyTransformer()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.01)
    return m, opt, _cosine(opt, steps, warmup=10), _rows


def lstm_adam_clipped(seed: int, steps: int) -> Any:
    m = LSTMClassifier()
    return m, torch.optim.Adam(m.parameters(), lr=1e-2), None, _rows


def mlp_sgd_weight_decay_dropout(seed: int, steps: int) -> Any:
    m = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 64), nn.ReLU(),
                      nn.Linear(64, 10))
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    return m, opt, None, _flat


def mlp_adam_bf16(seed: int, steps: int) -> Any:
    m = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 10))
    return m, torch.optim.Adam(m.parameters(), lr=2e-3), None, _flat


# name -> (builder, seed, options). Options: clip (max grad norm), bf16 (CPU autocast).
TORCH_HEALTHY: dict[str, tuple[Callable[..., Any], int, dict[str, Any]]] = {
    "torch_bn_cnn_momentum_onecycle": (bn_cnn_momentum_onecycle, 0, {}),
    "torch_bn_cnn_momentum_onecycle_seed1": (bn_cnn_momentum_onecycle, 1, {}),
    "torch_bn_cnn_silu_adamw_cosine": (bn_cnn_silu_adamw_cosine, 2, {}),
    "torch_layernorm_gelu_adamw_cosine": (layernorm_gelu_adamw_cosine, 0, {}),
    "torch_transformer_adamw_warmup_clip": (transformer_adamw_warmup, 0, {"clip": 1.0}),
    "torch_transformer_adamw_warmup_seed3": (transformer_adamw_warmup, 3, {}),
    "torch_lstm_adam_clip": (lstm_adam_clipped, 0, {"clip": 1.0}),
    "torch_mlp_sgd_weight_decay_dropout": (mlp_sgd_weight_decay_dropout, 1, {}),
    "torch_mlp_adam_bf16_autocast": (mlp_adam_bf16, 0, {"bf16": True}),
}


def train_torch(logdir: str | Path, name: str, build: Callable[..., Any], *, seed: int = 0, epochs: int = 3,
                batch: int = 64, clip: float | None = None, bf16: bool = False, every: int = 2,
                hparams: dict[str, Any] | None = None, data: Any = None, **monitor_kwargs: Any) -> Path:
    """Train ``build(seed, steps)``'s model on digits with cross-entropy; returns the run folder.

    Validation accuracy is logged once per epoch (eval mode, not recorded by the hooks).
    """
    torch.manual_seed(seed)
    Xtr, ytr, Xva, yva = data if data is not None else digits()
    Xtr, Xva = torch.tensor(Xtr, dtype=torch.float32), torch.tensor(Xva, dtype=torch.float32)
    ytr, yva = torch.tensor(ytr), torch.tensor(yva)
    per_epoch = math.ceil(len(ytr) / batch)
    model, opt, sched, view = build(seed, epochs * per_epoch)
    hp = {"lr": opt.param_groups[0]["lr"], "optimizer": type(opt).__name__, "batch": batch, "seed": seed,
          **({"weight_decay": opt.param_groups[0]["weight_decay"]} if opt.param_groups[0].get("weight_decay") else {}),
          **(hparams or {})}
    gen = torch.Generator().manual_seed(seed)
    step = 0
    with Monitor(logdir, name, hparams=hp, num_classes=10, every=every, heartbeat=0, **monitor_kwargs) as mon:
        mon.watch(model, opt)
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(ytr), generator=gen)
            for start in range(0, len(order), batch):
                idx = order[start:start + batch]
                xb, yb = view(Xtr[idx]), ytr[idx]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    scores = model(xb)
                loss = F.cross_entropy(scores.float(), yb)
                opt.zero_grad()
                loss.backward()
                if clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                if sched is not None:
                    sched.step()
                acc = (scores.argmax(1) == yb).float().mean()
                mon.log(step, loss=loss, train_acc=acc)
                step += 1
            if Xva is not None:
                model.eval()
                with torch.no_grad():
                    va = (model(view(Xva)).argmax(1) == yva).float().mean().item()
                mon.log(step - 1, val_acc=va)
    return mon.run_dir


def train_healthy(logdir: str | Path, name: str) -> Path:
    build, seed, opts = TORCH_HEALTHY[name]
    torch.set_num_threads(1)  # the suite shares few cores; tiny models gain nothing from more threads
    return train_torch(logdir, name, build, seed=seed, **opts)
