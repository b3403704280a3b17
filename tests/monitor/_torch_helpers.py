"""What the PyTorch adapter's tests share: reading a run's records, the reference comparison,
the test's own forward hooks, a small MLP, its batches and the three-line training loop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.stats import activation_stats

ACT_KEYS = ("mean", "std", "min", "max", "zero_frac", "dead_frac", "sat_frac", "nan", "inf", "unit_std")


def records(run_dir: Path, kind: str) -> list[dict]:
    out = []
    for f in sorted(run_dir.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            if rec["kind"] == kind:
                out.append(rec)
    return sorted(out, key=lambda r: r["step"])


def acts_by_layer(rec: dict) -> dict[str, dict]:
    return {name: {k: rec[k][i] for k in rec if isinstance(rec[k], list) and k != "layers"}
            for i, name in enumerate(rec["layers"])}


def params_by_name(rec: dict) -> dict[str, dict]:
    return {name: {k: rec[k][i] for k in rec if isinstance(rec[k], list) and k != "params"}
            for i, name in enumerate(rec["params"])}


def close(a, b, rtol=1e-4, atol=1e-6) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


SAMPLED_KEYS = ("zero_frac", "sat_frac")  # over the histogram's subsample (documented)


def assert_acts_match(got: dict, ref: dict, *, sampled: np.ndarray | None = None, kind: str = "linear",
                      where: str = "") -> None:
    """Recorded statistics equal the reference: floats to 1e-4 relative, counts exactly, histogram to a few edge cases.

    With ``sampled`` (the values of the documented subsample), the zero and saturation
    fractions and the histogram counts are compared with the reference on those values.
    """
    ref_s = activation_stats(sampled, kind) if sampled is not None else ref
    for k in ACT_KEYS:
        if k not in ref:
            continue
        want = ref_s[k] if k in SAMPLED_KEYS else ref[k]
        assert close(got.get(k), want, rtol=1e-4, atol=1e-5 if k == "unit_std" else 1e-6), \
            f"{where} {k}: recorded {got.get(k)} reference {want}"
    assert close(got["hist_lo"], ref["hist_lo"]) and close(got["hist_hi"], ref["hist_hi"]), where
    want = ref["hist"]
    if sampled is not None:  # the histogram is over the subsample, on the whole batch's range
        if ref["hist_hi"] > ref["hist_lo"]:
            want = np.histogram(sampled, bins=len(want), range=(ref["hist_lo"], ref["hist_hi"]))[0].tolist()
        else:
            want = [len(sampled)] + [0] * (len(want) - 1)
    got_h = np.asarray(got["hist"])
    assert got_h.sum() == sum(want), f"{where}: histogram total {got_h.sum()} != {sum(want)}"
    # float32 binning may put a value lying on a bin edge in the neighbouring bin
    assert np.abs(got_h - np.asarray(want)).sum() <= max(2, 0.002 * sum(want)), f"{where}: {got_h} vs {want}"


class Capture:
    """The test's own forward hooks: a copy of each watched module's training output."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.out: dict[str, torch.Tensor] = {}
        mods = dict(model.named_modules())
        self.handles = [mods[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def hook(module, args, output):
            if module.training:
                self.out[name] = output.detach().clone()
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def mlp(act: type[nn.Module], width: int = 32, depth: int = 3, d_in: int = 12, classes: int = 4) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), act()]
        d = width
    layers.append(nn.Linear(d, classes))
    return nn.Sequential(*layers)


def batch(step: int, n: int = 64, d_in: int = 12, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(n, d_in, generator=g), torch.randint(0, classes, (n,), generator=g)


def train(model, opt, mon, steps, capture=None, sched=None, data=batch):
    """A plain loop with the three monitor lines; returns the captured outputs per step."""
    seen = []
    for step in range(steps):
        x, y = data(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if mon is not None:
            mon.log(step, loss=loss)
        if capture is not None:
            seen.append(dict(capture.out))
            capture.out.clear()
    return seen


def as_list(vec) -> list[float]:
    return vec.tolist() if isinstance(vec, torch.Tensor) else list(vec)
