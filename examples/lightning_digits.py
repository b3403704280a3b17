"""A small Lightning CNN on scikit-learn's 8x8 digits, recorded with ``BabysitterCallback``.

The LightningModule logs ``train_loss``/``train_acc`` every step and ``val_loss``/``val_acc``
every epoch with ``self.log``, keeps its hyperparameters with ``save_hyperparameters()`` and
uses SGD with a step scheduler. One line adds the monitor::

    trainer = L.Trainer(..., callbacks=[BabysitterCallback(logdir="runs")])

Run it (CPU, about 20 s)::

    python examples/lightning_digits.py --logdir runs --name lightning
    python examples/lightning_digits.py --strategy ddp --devices 2      # two processes, one run folder
    python examples/lightning_digits.py --precision bf16-mixed --accumulate 2
    python examples/lightning_digits.py --lr 1000                      # diverges: nan_loss
    python examples/lightning_digits.py --plant dead                   # conv1 never fires: dead_relu
    babysitter check runs/lightning
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitor.lightning import BabysitterCallback  # noqa: E402


def digits_datasets(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Train and validation sets: 1x8x8 images standardised with the training set's mean image and std."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.images.astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    tr, va = order[:1400], order[1400:]
    mean, scale = x[tr].mean(axis=0), x[tr].std()
    xt = torch.from_numpy((x - mean) / scale).unsqueeze(1)
    yt = torch.from_numpy(y)
    return TensorDataset(xt[tr], yt[tr]), TensorDataset(xt[va], yt[va])


class DigitsCNN(L.LightningModule):
    """Conv(1->8)-ReLU-maxpool, Linear(128->32)-ReLU, Linear(32->10); SGD with momentum and StepLR."""

    def __init__(self, lr: float = 0.05, momentum: float = 0.9, num_classes: int = 10, plant: str = "none") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(32, num_classes)
        if plant == "dead":
            with torch.no_grad():
                self.conv1.bias.fill_(-20.0)  # every channel below zero for every input: dead ReLUs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.relu1(self.conv1(x))).flatten(1)
        return self.fc2(self.relu2(self.fc1(h)))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log("train_loss", loss)
        self.log("train_acc", (logits.argmax(1) == y).float().mean())
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y), sync_dist=True)
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), sync_dist=True)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def train(logdir: str | Path | None = "runs", name: str | None = None, *, lr: float = 0.05, plant: str = "none",
          epochs: int = 3, max_steps: int = -1, batch: int = 64, accumulate: int = 1, precision: str = "32-true",
          strategy: str = "auto", devices: int = 1, every: int = 10, seed: int = 0,
          extra_callbacks: tuple[Any, ...] = (), validate: bool = True) -> dict[str, Any]:
    """Fit the CNN; ``logdir=None`` trains without the monitor. Returns the callback and the model."""
    L.seed_everything(seed, verbose=False)
    train_ds, val_ds = digits_datasets(seed)
    model = DigitsCNN(lr=lr, plant=plant)
    cb = BabysitterCallback(logdir=logdir, name=name, every=every) if logdir is not None else None
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy=strategy, max_epochs=epochs, max_steps=max_steps,
        accumulate_grad_batches=accumulate, precision=precision, deterministic=True,
        callbacks=([cb] if cb is not None else []) + list(extra_callbacks), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0,
        default_root_dir=str(logdir) if logdir is not None else None,
    )
    trainer.fit(model, DataLoader(train_ds, batch_size=batch, shuffle=True),
                DataLoader(val_ds, batch_size=256))
    return {"callback": cb, "model": model, "trainer": trainer, "run_dir": cb.run_dir if cb else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logdir", default="runs")
    ap.add_argument("--name", default=None)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--plant", choices=("none", "dead"), default="none")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--accumulate", type=int, default=1)
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--strategy", default="auto")
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--every", type=int, default=10)
    args = ap.parse_args(argv)
    res = train(args.logdir, args.name, lr=args.lr, plant=args.plant, epochs=args.epochs, max_steps=args.max_steps,
                accumulate=args.accumulate, precision=args.precision, strategy=args.strategy,
                devices=args.devices, every=args.every)
    if res["trainer"].global_rank == 0:
        print("run written to", res["run_dir"])


if __name__ == "__main__":
    main()
