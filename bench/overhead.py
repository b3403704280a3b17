"""Step-time overhead of watching a PyTorch model: Babysitter against TensorBoard and wandb.

The model is the lecture's 10-layer MLP (10 x [Linear(500, 500), Tanh], then Linear(500, 10)),
batch 256, plain SGD, on the CPU. Variants, each with its own copy of the model:

* ``none``: the plain training step.
* ``babysitter_every10``: ``Monitor(every=10)`` + ``mon.watch(model, opt)`` + ``mon.log(step, loss=loss)``
  (the default cadence).
* ``babysitter_every1``: the same with statistics at every step.
* ``tensorboard_hist``: ``SummaryWriter.add_histogram`` of every layer's activations and every
  weight at every step (what a user writes to get the same picture from TensorBoard).
* ``wandb_watch``: ``wandb.watch(model, log="all", log_freq=1)`` with ``WANDB_MODE=offline``
  (only when wandb is installed: ``pip install -e ".[bench]"``).

The variants run interleaved: round-robin blocks of ``--block`` steps (the order rotates
each repetition), ``--reps`` repetitions; a block's time per step is its wall time divided
by its steps (so the logged steps of the default cadence are counted), and the reported
figure is the median over repetitions. Ratios are to ``none`` from the same run. Also
printed, to judge the noise of a shared machine: the best block of each variant, and the
process CPU time per step (not inflated by time spent waiting for a core).

Usage::

    python bench/overhead.py                 # a few minutes on 2 CPU cores
    python bench/overhead.py --reps 3 --block 10 --no-wandb

Results are printed and written to ``bench/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from monitor import Monitor  # noqa: E402

DEPTH, WIDTH, BATCH, CLASSES = 10, 500, 256, 10


def make_model(seed: int = 0) -> nn.Sequential:
    """The 10 x 500 tanh MLP of the lecture's activation experiment, Xavier-initialised."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(DEPTH):
        lin = nn.Linear(WIDTH, WIDTH)
        nn.init.xavier_normal_(lin.weight)
        layers += [lin, nn.Tanh()]
    layers.append(nn.Linear(WIDTH, CLASSES))
    return nn.Sequential(*layers)


class Variant:
    """One way of training: ``step(i)`` runs training step ``i``; ``close()`` ends it."""

    def __init__(self, name: str, step: Callable[[int], None], close: Callable[[], None] = lambda: None) -> None:
        self.name, self.step, self.close = name, step, close
        self.blocks: list[float] = []  # wall seconds per step, one per measured block
        self.cpu_blocks: list[float] = []  # process CPU seconds per step (all threads), same blocks
        self.steps = 0


def _plain_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def build_variants(workdir: Path, x: torch.Tensor, y: torch.Tensor, *, use_tb: bool, use_wandb: bool) -> list[Variant]:
    out: list[Variant] = []

    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    out.append(Variant("none", lambda i, m=model, o=opt: _plain_step(m, o, x, y)))

    for every in (10, 1):
        model = make_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        mon = Monitor(workdir / "babysitter", f"every{every}", every=every)
        mon.watch(model, opt)

        def step(i: int, m=model, o=opt, mon=mon) -> None:
            mon.log(i, loss=_plain_step(m, o, x, y))

        out.append(Variant(f"babysitter_every{every}", step, mon.close))

    if use_tb:
        from torch.utils.tensorboard import SummaryWriter

        model = make_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        writer = SummaryWriter(str(workdir / "tensorboard"))
        acts: dict[str, torch.Tensor] = {}
        for name, mod in model.named_modules():
            if isinstance(mod, (nn.Linear, nn.Tanh)):
                mod.register_forward_hook(lambda m, a, o, n=name: acts.__setitem__(n, o.detach()))

        def tb_step(i: int, m=model, o=opt, w=writer) -> None:
            loss = _plain_step(m, o, x, y)
            w.add_scalar("loss", loss.item(), i)
            for n, t in acts.items():
                w.add_histogram(f"act/{n}", t, i)
            for n, p in m.named_parameters():
                w.add_histogram(f"param/{n}", p.detach(), i)

        out.append(Variant("tensorboard_hist", tb_step, writer.close))

    if use_wandb:
        os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        model = make_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        run = wandb.init(project="babysitter-bench", dir=str(workdir), mode="offline")
        wandb.watch(model, log="all", log_freq=1)

        def wb_step(i: int, m=model, o=opt) -> None:
            loss = _plain_step(m, o, x, y)
            wandb.log({"loss": loss.item()}, step=i)

        out.append(Variant("wandb_watch", wb_step, run.finish))
    return out


def run_bench(reps: int = 7, block: int = 20, warmup_blocks: int = 1, *, use_tb: bool = True,
              use_wandb: bool | None = None, log: Callable[[str], None] = print) -> dict:
    """Run the interleaved benchmark and return its results (seconds per step, ratios to ``none``)."""
    if use_wandb is None:
        try:
            import wandb  # noqa: F401
            use_wandb = True
        except ImportError:
            use_wandb = False
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, WIDTH, generator=g)
    y = torch.randint(0, CLASSES, (BATCH,), generator=g)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="babysitter-bench-") as tmp:
        variants = build_variants(Path(tmp), x, y, use_tb=use_tb, use_wandb=use_wandb)
        try:
            for r in range(warmup_blocks + reps):
                shift = r % len(variants)
                for v in variants[shift:] + variants[:shift]:
                    c0, t0 = time.process_time(), time.perf_counter()
                    for _ in range(block):
                        v.step(v.steps)
                        v.steps += 1
                    dt = (time.perf_counter() - t0) / block
                    dc = (time.process_time() - c0) / block
                    if r >= warmup_blocks:
                        v.blocks.append(dt)
                        v.cpu_blocks.append(dc)
                if r >= warmup_blocks:
                    log(f"rep {r - warmup_blocks + 1}/{reps}: " + "  ".join(
                        f"{v.name} {v.blocks[-1] * 1e3:.1f} ms" for v in variants))
        finally:
            for v in variants:
                with contextlib.suppress(Exception):
                    v.close()
    base = statistics.median(variants[0].blocks)
    base_min = min(variants[0].blocks)
    base_cpu = statistics.median(variants[0].cpu_blocks)
    result = {
        "model": f"{DEPTH}x{WIDTH} tanh MLP, batch {BATCH}, SGD, CPU",
        "reps": reps, "block_steps": block,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "variants": {},
    }
    for v in variants:
        med = statistics.median(v.blocks)
        q = statistics.quantiles(v.blocks, n=4) if len(v.blocks) >= 2 else [med, med, med]
        cpu = statistics.median(v.cpu_blocks)
        result["variants"][v.name] = {
            "median_ms": med * 1e3, "ratio": med / base, "iqr_over_median": (q[2] - q[0]) / med,
            "min_ms": min(v.blocks) * 1e3, "ratio_of_min": min(v.blocks) / base_min,
            "cpu_median_ms": cpu * 1e3, "cpu_ratio": cpu / base_cpu,
            "blocks_ms": [b * 1e3 for b in v.blocks], "cpu_blocks_ms": [b * 1e3 for b in v.cpu_blocks],
        }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7, help="measured repetitions (default %(default)s)")
    ap.add_argument("--block", type=int, default=20, help="steps per block, a multiple of 10 (default %(default)s)")
    ap.add_argument("--no-tensorboard", action="store_true", help="leave out the TensorBoard variant")
    ap.add_argument("--no-wandb", action="store_true", help="leave out the wandb variant")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "overhead.json",
                    help="where the JSON results go (default %(default)s)")
    args = ap.parse_args(argv)
    res = run_bench(args.reps, args.block, use_tb=not args.no_tensorboard,
                    use_wandb=False if args.no_wandb else None)
    print(f"\n{res['model']}; {res['reps']} reps of {res['block_steps']}-step blocks; "
          f"torch threads {res['machine']['torch_threads']}, load {res['machine']['loadavg_before'][0]:.2f}")
    print("wall time per step: median over blocks (ratio to none), best block (ratio); process CPU time (ratio)")
    print(f"{'variant':22s} {'ms/step':>9s} {'ratio':>7s} {'IQR/med':>8s} {'best ms':>9s} {'ratio':>7s} "
          f"{'cpu ms':>9s} {'ratio':>7s}")
    for name, v in res["variants"].items():
        print(f"{name:22s} {v['median_ms']:9.2f} {v['ratio']:7.3f} {v['iqr_over_median']:8.3f} "
              f"{v['min_ms']:9.2f} {v['ratio_of_min']:7.3f} {v['cpu_median_ms']:9.2f} {v['cpu_ratio']:7.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
