"""A small CNN with BatchNorm on scikit-learn's 8x8 digits, recorded with ``Monitor.watch``.

The 1797 digit images that scikit-learn ships are zero-centred with the training set's
mean image, scaled, reshaped to 1x8x8 and split 80/20. The network is
Conv(1->16)-BN-ReLU, Conv(16->32)-BN-ReLU, max-pool, Linear(512->10), trained with Adam.
Every step logs the loss (and the learning rate, added by the monitor); every epoch logs
train and validation accuracy and the validation loss. Validation runs in ``eval()`` mode,
which the monitor does not record. Run it::

    python examples/torch_cnn_digits.py --logdir runs --epochs 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitor import Monitor  # noqa: E402


def load_digits_tensors(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_val, y_val)``: 1x8x8 images, zero-centred with the training mean image."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.images.astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = int(0.8 * len(x))
    tr, va = order[:n_train], order[n_train:]
    mean = x[tr].mean(axis=0)
    scale = x[tr].std()
    xt = torch.from_numpy((x - mean) / scale).unsqueeze(1)
    yt = torch.from_numpy(y)
    return xt[tr], yt[tr], xt[va], yt[va]


class DigitsCNN(nn.Module):
    """Conv-BN-ReLU twice, max-pool, linear classifier."""

    def __init__(self, c1: int = 16, c2: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c2)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(c2 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = F.max_pool2d(self.relu2(self.bn2(self.conv2(x))), 2)
        return self.fc(x.flatten(1))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(accuracy, mean loss)`` in eval mode (BatchNorm uses its running statistics)."""
    was = model.training
    model.eval()
    out = model(x)
    model.train(was)
    return float((out.argmax(1) == y).float().mean()), float(F.cross_entropy(out, y))


def train_digits(logdir: str | Path, *, epochs: int = 10, batch: int = 64, lr: float = 1e-3, every: int = 10,
                 max_steps: int | None = None, name: str | None = "torch-cnn-digits", seed: int = 0) -> dict[str, Any]:
    """Train the CNN and record it; returns the run folder and the final accuracies."""
    x_tr, y_tr, x_va, y_va = load_digits_tensors(seed)
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hparams = {"lr": lr, "batch": batch, "epochs": epochs, "optimizer": "Adam"}
    step = 0
    train_acc = val_acc = float("nan")
    with Monitor(logdir, name, hparams=hparams, num_classes=10, every=every) as mon:
        mon.watch(model, opt)
        g = torch.Generator().manual_seed(seed)
        done = False
        for _epoch in range(epochs):
            perm = torch.randperm(len(x_tr), generator=g)
            starts = range(0, len(x_tr), batch)
            for i in starts:
                idx = perm[i:i + batch]
                loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                done = max_steps is not None and step + 1 >= max_steps
                extra = {}
                if i == starts[-1] or done:  # end of an epoch: accuracies in the same record
                    train_acc, _ = evaluate(model, x_tr, y_tr)
                    val_acc, val_loss = evaluate(model, x_va, y_va)
                    extra = {"train_acc": train_acc, "val_acc": val_acc, "val_loss": val_loss}
                mon.log(step, loss=loss, **extra)
                step += 1
                if done:
                    break
            if done:
                break
        run_dir = mon.run_dir
    return {"run_dir": run_dir, "steps": step, "train_acc": train_acc, "val_acc": val_acc}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Small CNN with BatchNorm on the 8x8 digits, recorded as a run.")
    ap.add_argument("--logdir", default="runs", help="log directory (default %(default)s)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs (default %(default)s)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default %(default)s)")
    ap.add_argument("--every", type=int, default=10, help="steps between layer statistics (default %(default)s)")
    args = ap.parse_args(argv)
    res = train_digits(args.logdir, epochs=args.epochs, lr=args.lr, every=args.every)
    print(f"{res['steps']} steps: train acc {res['train_acc']:.3f}, val acc {res['val_acc']:.3f}; run {res['run_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
