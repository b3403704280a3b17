"""Step-time overhead of watching a PyTorch model: Babysitter against TensorBoard and wandb.

Models (``--models``, default all three), each measured on its own:

* ``mlp``: the lecture's 10-layer MLP (10 x [Linear(500, 500), Tanh], then Linear(500, 10)),
  batch 256, plain SGD.
* ``bn_cnn``: four Conv-BatchNorm-ReLU blocks (16-32 channels) on 3 x 16 x 16 images, batch 64,
  SGD with momentum.
* ``transformer``: token embedding and a 2-layer ``nn.TransformerEncoder`` (d 64, 4 heads,
  FFN 128, sequences of 32 tokens, batch 32, a padding mask passed as a keyword), AdamW.

On the CPU, or on the device ``--device`` names (``cuda``: models and batches moved there,
and the device synchronised before each block's clock is read; ``bench/device_check.sh`` runs
this with the PyTorch tests). Variants, each with its own copy of the model:

* ``none``: the plain training step.
* ``babysitter_every10``: ``Monitor(every=10)`` + ``mon.watch(model, opt)`` + ``mon.log(step, loss=loss)``
  (the default cadence).
* ``babysitter_every1``: the same with statistics at every step.
* ``tensorboard_hist``: ``SummaryWriter.add_histogram`` of every layer's activations and every
  weight at every step (what a user writes to get the same picture from TensorBoard).
* ``wandb_watch``: ``wandb.watch(model, log="all", log_freq=1)`` with ``WANDB_MODE=offline``
  (only when wandb is installed: ``pip install -e ".[bench]"``).
* ``compiled_none`` and ``compiled_babysitter_every10`` (with ``--compile``): the model through
  ``torch.compile`` (inductor) without and with the monitor at the default cadence; the
  latter's ratio is also given to ``compiled_none`` (``ratio_to_compiled``).

The variants run interleaved: round-robin blocks of ``--block`` steps (the order rotates
each repetition), ``--reps`` repetitions; a block's time per step is its wall time divided
by its steps (so the logged steps of the default cadence are counted), and the reported
figure is the median over repetitions. Ratios are to ``none`` from the same run. Also
printed, to judge the noise of a shared machine: the best block of each variant, and the
process CPU time per step (not inflated by time spent waiting for a core).

Usage::

    python bench/overhead.py                 # a few minutes on 2 CPU cores
    python bench/overhead.py --reps 3 --block 10 --no-wandb
    python bench/overhead.py --device cuda --models bn_cnn,transformer --compile

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
VOCAB, SEQ, D_MODEL = 1000, 32, 64


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


def make_cnn(seed: int = 0) -> nn.Sequential:
    """Four Conv-BatchNorm-ReLU blocks (two with stride 2), global pooling, a Linear head."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    c_in = 3
    for c, stride in ((16, 1), (16, 2), (32, 1), (32, 2)):
        layers += [nn.Conv2d(c_in, c, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, CLASSES)]
    return nn.Sequential(*layers)


class TokenTransformer(nn.Module):
    """Embedding, a 2-layer TransformerEncoder (batch first, ReLU FFN called as F.relu), mean pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_MODEL)
        layer = nn.TransformerEncoderLayer(D_MODEL, 4, 2 * D_MODEL, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(D_MODEL, CLASSES)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens), src_key_padding_mask=padding_mask).mean(1))


def make_transformer(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TokenTransformer()


class Workload:
    """A model family: how to build it, its optimizer, one fixed batch and the forward call."""

    def __init__(self, name: str, describe: str, make: Callable[[], nn.Module],
                 opt: Callable[[nn.Module], torch.optim.Optimizer], batch: Callable[[], tuple],
                 device: torch.device) -> None:
        self.name, self.opt, self.device = name, opt, device
        self.describe = f"{describe}, {device.type.upper() if device.type != 'cpu' else 'CPU'}"
        self.make = lambda: make().to(device)
        g = torch.Generator().manual_seed(1)  # the same batch on every device
        args, kwargs, y = batch(g)
        self.args = tuple(a.to(device) for a in args)
        self.kwargs = {k: v.to(device) for k, v in kwargs.items()}
        self.y = y.to(device)

    def sync(self) -> None:
        """Wait for the device's queued work, so that a clock read after it counts that work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


WORKLOADS = {
    "mlp": lambda device: Workload(
        "mlp", f"{DEPTH}x{WIDTH} tanh MLP, batch {BATCH}, SGD", make_model,
        lambda m: torch.optim.SGD(m.parameters(), lr=0.01),
        lambda g: ((torch.randn(BATCH, WIDTH, generator=g),), {}, torch.randint(0, CLASSES, (BATCH,), generator=g)),
        device),
    "bn_cnn": lambda device: Workload(
        "bn_cnn", "4 x Conv-BatchNorm-ReLU (16-32 ch), 3x16x16, batch 64, SGD momentum", make_cnn,
        lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9),
        lambda g: ((torch.randn(64, 3, 16, 16, generator=g),), {}, torch.randint(0, CLASSES, (64,), generator=g)),
        device),
    "transformer": lambda device: Workload(
        "transformer", f"2-layer TransformerEncoder d{D_MODEL}, {SEQ} tokens, batch 32, padding mask, AdamW",
        make_transformer, lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3),
        lambda g: ((torch.randint(0, VOCAB, (32, SEQ), generator=g),),
                   {"padding_mask": torch.arange(SEQ)[None, :] >= torch.randint(SEQ // 2, SEQ + 1, (32, 1),
                                                                                    generator=g)},
                   torch.randint(0, CLASSES, (32,), generator=g)),
        device),
}


class Variant:
    """One way of training: ``step(i)`` runs training step ``i``; ``close()`` ends it."""

    def __init__(self, name: str, step: Callable[[int], None], close: Callable[[], None] = lambda: None) -> None:
        self.name, self.step, self.close = name, step, close
        self.blocks: list[float] = []  # wall seconds per step, one per measured block
        self.cpu_blocks: list[float] = []  # process CPU seconds per step (all threads), same blocks
        self.steps = 0


def _plain_step(model: nn.Module, opt: torch.optim.Optimizer, w: Workload) -> torch.Tensor:
    loss = F.cross_entropy(model(*w.args, **w.kwargs), w.y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def build_variants(workdir: Path, w: Workload, *, use_tb: bool, use_wandb: bool,
                   compile_models: bool = False) -> list[Variant]:
    out: list[Variant] = []

    model = w.make()
    opt = w.opt(model)
    out.append(Variant("none", lambda i, m=model, o=opt: _plain_step(m, o, w)))

    for every in (10, 1):
        model = w.make()
        opt = w.opt(model)
        mon = Monitor(workdir / "babysitter", f"{w.name}_every{every}", every=every)
        mon.watch(model, opt)

        def step(i: int, m=model, o=opt, mon=mon) -> None:
            mon.log(i, loss=_plain_step(m, o, w))

        out.append(Variant(f"babysitter_every{every}", step, mon.close))

    if use_tb:
        from torch.utils.tensorboard import SummaryWriter

        model = w.make()
        opt = w.opt(model)
        writer = SummaryWriter(str(workdir / "tensorboard" / w.name))
        acts: dict[str, torch.Tensor] = {}
        for name, mod in model.named_modules():
            if not list(mod.children()):  # every leaf module's output
                mod.register_forward_hook(
                    lambda m, a, o, n=name: acts.__setitem__(n, o.detach()) if isinstance(o, torch.Tensor) else None)

        def tb_step(i: int, m=model, o=opt, wr=writer) -> None:
            loss = _plain_step(m, o, w)
            wr.add_scalar("loss", loss.item(), i)
            for n, t in acts.items():
                wr.add_histogram(f"act/{n}", t.float(), i)
            for n, p in m.named_parameters():
                wr.add_histogram(f"param/{n}", p.detach(), i)

        out.append(Variant("tensorboard_hist", tb_step, writer.close))

    if use_wandb:
        os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        model = w.make()
        opt = w.opt(model)
        run = wandb.init(project="babysitter-bench", dir=str(workdir), mode="offline", reinit=True)
        wandb.watch(model, log="all", log_freq=1)

        def wb_step(i: int, m=model, o=opt) -> None:
            loss = _plain_step(m, o, w)
            wandb.log({"loss": loss.item()}, step=i)

        out.append(Variant("wandb_watch", wb_step, run.finish))

    if compile_models:
        model = w.make()
        opt = w.opt(model)
        compiled = torch.compile(model)
        out.append(Variant("compiled_none", lambda i, m=compiled, o=opt: _plain_step(m, o, w)))
        model = w.make()
        opt = w.opt(model)
        compiled = torch.compile(model)
        mon = Monitor(workdir / "babysitter", f"{w.name}_compiled", every=10)
        mon.watch(compiled, opt)

        def cstep(i: int, m=compiled, o=opt, mon=mon) -> None:
            mon.log(i, loss=_plain_step(m, o, w))

        out.append(Variant("compiled_babysitter_every10", cstep, mon.close))
    return out


def run_bench(reps: int = 7, block: int = 20, warmup_blocks: int = 1, *, use_tb: bool | None = None,
              use_wandb: bool | None = None, log: Callable[[str], None] = print, model: str = "mlp",
              compile_models: bool = False, device: str = "cpu") -> dict:
    """Run the interleaved benchmark of one model and return its results (seconds per step, ratios to ``none``)."""
    import importlib.util

    if use_wandb is None:  # the comparisons need ``pip install -e ".[bench]"``
        use_wandb = importlib.util.find_spec("wandb") is not None
    if use_tb is None:
        use_tb = importlib.util.find_spec("tensorboard") is not None
    w = WORKLOADS[model](torch.device(device))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="babysitter-bench-") as tmp:
        variants = build_variants(Path(tmp), w, use_tb=use_tb, use_wandb=use_wandb, compile_models=compile_models)
        try:
            for r in range(warmup_blocks + reps):
                shift = r % len(variants)
                for v in variants[shift:] + variants[:shift]:
                    w.sync()
                    c0, t0 = time.process_time(), time.perf_counter()
                    for _ in range(block):
                        v.step(v.steps)
                        v.steps += 1
                    w.sync()
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
        "model": w.describe,
        "reps": reps, "block_steps": block,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": str(w.device),
                    "device_name": torch.cuda.get_device_name(w.device) if w.device.type == "cuda" else None,
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
    if "compiled_none" in result["variants"]:
        c = result["variants"]["compiled_none"]["median_ms"]
        for v in result["variants"].values():
            v["ratio_to_compiled"] = v["median_ms"] / c
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7, help="measured repetitions (default %(default)s)")
    ap.add_argument("--block", type=int, default=20, help="steps per block, a multiple of 10 (default %(default)s)")
    ap.add_argument("--models", default="mlp,bn_cnn,transformer",
                    help=f"comma-separated, of {', '.join(WORKLOADS)} (default %(default)s)")
    ap.add_argument("--compile", action="store_true", help="add the torch.compile variants (minutes of compiling)")
    ap.add_argument("--no-tensorboard", action="store_true", help="leave out the TensorBoard variant")
    ap.add_argument("--no-wandb", action="store_true", help="leave out the wandb variant")
    ap.add_argument("--device", default="cpu", help="where the models train: cpu (default) or cuda")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "overhead.json",
                    help="where the JSON results go (default %(default)s)")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in WORKLOADS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {', '.join(WORKLOADS)}")
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        ap.error(f"--device {args.device!r}: {err}")
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device here")
    results = {}
    for name in models:
        res = results[name] = run_bench(args.reps, args.block, use_tb=False if args.no_tensorboard else None,
                                        use_wandb=False if args.no_wandb else None, model=name,
                                        compile_models=args.compile, device=args.device)
        print(f"\n{res['model']}; {res['reps']} reps of {res['block_steps']}-step blocks; "
              f"torch threads {res['machine']['torch_threads']}, load {res['machine']['loadavg_before'][0]:.2f}")
        print("wall time per step: median over blocks (ratio to none), best block (ratio); process CPU time (ratio)")
        print(f"{'variant':28s} {'ms/step':>9s} {'ratio':>7s} {'IQR/med':>8s} {'best ms':>9s} {'ratio':>7s} "
              f"{'cpu ms':>9s} {'ratio':>7s}")
        for vname, v in res["variants"].items():
            extra = f"  ({v['ratio_to_compiled']:.3f} to compiled_none)" if "ratio_to_compiled" in v else ""
            print(f"{vname:28s} {v['median_ms']:9.2f} {v['ratio']:7.3f} {v['iqr_over_median']:8.3f} "
                  f"{v['min_ms']:9.2f} {v['ratio_of_min']:7.3f} {v['cpu_median_ms']:9.2f} {v['cpu_ratio']:7.3f}{extra}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
