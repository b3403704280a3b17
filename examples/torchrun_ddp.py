"""Data-parallel training with ``torchrun`` and ``DistributedDataParallel``, recorded by every rank.

Each process trains the same MLP on its own shard of generated 3-class data (gloo backend,
CPU). The Monitor finds the process group on its own: rank 0 creates the run folder and
tells the others its name, every rank writes its own ``*.r<rank>.jsonl`` files into it, and
rank 0 writes ``meta.json``. Run it::

    torchrun --nproc_per_node 2 examples/torchrun_ddp.py --logdir runs --name ddp
    babysitter check runs/ddp

``--plant dead`` makes rank 1's inputs negative while the first layer's weights are
positive, so its ReLU units never fire on rank 1 only (``check``: "On rank 1 (not on rank
0): ... dead"); ``--plant nan`` puts a NaN into rank 1's last batch (a NaN loss on rank 1
only); ``--lr 50`` makes every rank diverge.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import monitor  # noqa: E402


class MLP(nn.Module):
    def __init__(self, d_in: int = 8, hidden: int = 32, classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))


def shard(rank: int, n: int = 256, d_in: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's examples: standard normal inputs, the class is which of 3 projections is largest."""
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(d_in, 3, generator=g)
    gr = torch.Generator().manual_seed(seed + 1 + rank)
    x = torch.randn(n, d_in, generator=gr)
    return x, (x @ proj).argmax(1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logdir", default="runs")
    ap.add_argument("--name", default=None)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--plant", choices=("none", "dead", "nan"), default="none")
    ap.add_argument("--no-monitor", action="store_true", help="train without the monitor (for bench/integrations.py)")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = MLP()
    if args.plant == "dead":
        with torch.no_grad():
            model.fc1.weight.abs_()
            model.fc1.bias.zero_()
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9)
    x, y = shard(rank)
    if args.plant == "dead" and rank == 1:
        x = -x.abs() - 0.5  # negative inputs times positive weights: every unit <= 0 on this rank

    # One line on every rank: the process group gives the rank; rank 0 names the run.
    mon = None if args.no_monitor else monitor.watch(
        model, opt, logdir=args.logdir, name=args.name, every=args.every, num_classes=3,
        hparams={"lr": args.lr, "world_size": dist.get_world_size(), "plant": args.plant})
    try:
        batch = args.batch
        t0, warm = time.perf_counter(), min(5, args.steps - 1)
        for step in range(args.steps):
            if step == warm:
                t0 = time.perf_counter()
            i = (step * batch) % len(x)
            xb, yb = x[i:i + batch], y[i:i + batch]
            if args.plant == "nan" and rank == 1 and step == args.steps - 1:
                xb = xb.clone()
                xb[0, 0] = float("nan")
            out = ddp(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            acc = (out.argmax(1) == yb).float().mean()
            if mon is not None:
                mon.log(step, loss=loss, train_acc=acc)
        per_step = (time.perf_counter() - t0) / max(1, args.steps - warm)
        if rank == 0:
            print(f"step time {per_step * 1e3:.3f} ms")
            if mon is not None:
                print("run written to", mon.run_dir)
        # The DDP model goes before the process group, and the barrier (which waits without the
        # GIL) lets gloo's threads release their last work: see examples/hf_text_classifier.py.
        del ddp, opt
        gc.collect()
        dist.barrier()
    except BaseException as err:
        if mon is not None:
            mon.close(error=err)
        raise
    finally:
        if mon is not None:
            mon.close()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
