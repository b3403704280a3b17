"""Many-runs benchmark: a log directory of 1,000 small runs, listed and summarised, next to TensorBoard.

A synthetic hyperparameter search is written three times, from the same numbers:

* ``full``: the run format with everything the Monitor writes for a small 3-layer network
  (loss and lr every step, train/val accuracy every ``--every`` steps, activation statistics
  with 64-bin histograms, parameter statistics and the input batch every ``--every`` steps);
* ``scalars``: the run format with the scalars only;
* ``tb``: TensorBoard event files (``torch.utils.tensorboard.SummaryWriter``) with the same scalars.

Measured, in this process, one after the other (the files are in the page cache for all three):

* first open: ``LogDir.refresh()`` (find and read every run) + ``SummaryCache.summaries()``
  (one summary per run, the diagnosis rules included) + ``summaries_frame`` + ``search_findings``;
* update after one run changes: 10 lines appended to one run, then the same calls with that
  run marked dirty (what the dashboard's file watcher does), median of ``--repeats``;
  and the same with no watcher (``refresh(full=True)``: every run's files are checked);
* TensorBoard: ``EventAccumulator(run).Reload()`` for every run, then the final and best
  ``val_acc`` of each (its summary); the update is ``Reload()`` of every accumulator after
  one run got 10 more steps (TensorBoard reloads all runs on each pass) and of that run alone.

    python bench/compare.py                 # 1,000 runs of 100 steps
    python bench/compare.py --runs 200      # quicker

Results go to ``bench/results/compare.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas  # noqa: F401  (imported up front: a dashboard or CLI process has it loaded before it opens a log dir)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.compare import SummaryCache, search_findings, summaries_frame  # noqa: E402
from core.logdir import LogDir  # noqa: E402

LAYERS = (("fc1", "relu"), ("fc2", "relu"), ("fc3", "linear"))
PARAMS = ("fc1.weight", "fc2.weight", "fc3.weight")
SPACE = {"lr": {"type": "loguniform", "low": 1e-5, "high": 1.0, "log": True},
         "reg": {"type": "loguniform", "low": 1e-6, "high": 1e-1, "log": True}}


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def synth_run(i: int, steps: int, every: int, rng: np.random.Generator):
    """One run's hyperparameters and records (dicts in the run format)."""
    lr = float(10 ** rng.uniform(-5, 0))
    reg = float(10 ** rng.uniform(-6, -1))
    quality = math.exp(-((math.log10(lr) + 1.5) ** 2) / 2)  # best near lr = 0.03
    recs, scal = [], []
    t0 = 1.7e9 + i
    for s in range(steps):
        loss = 2.3 * math.exp(-quality * s / 30) + 0.05 + 0.02 * rng.random()
        vals = {"loss": loss, "lr": lr}
        if s % every == every - 1 or s == steps - 1:
            vals["train_acc"] = min(1.0, 0.1 + quality * s / steps + 0.01 * rng.random())
            vals["val_acc"] = 0.9 * vals["train_acc"]
        scal.append((s, vals))
        recs.append({"kind": "scalars", "step": s, "time": t0 + s * 0.01, "values": vals})
        if s % every == 0:
            n = len(LAYERS)
            hist = rng.integers(0, 50, size=(n, 64)).tolist()
            recs.append({"kind": "acts", "step": s, "time": t0 + s * 0.01, "layers": [x for x, _ in LAYERS],
                         "mean": rng.random(n).tolist(), "std": rng.random(n).tolist(),
                         "min": (-rng.random(n)).tolist(), "max": rng.random(n).tolist(),
                         "zero_frac": [0.5, 0.5, 0.0], "dead_frac": [0.01, 0.02, None], "sat_frac": [None] * n,
                         "nan": [0] * n, "inf": [0] * n, "hist_lo": [-1.0] * n, "hist_hi": [1.0] * n, "hist": hist})
            recs.append({"kind": "params", "step": s, "time": t0 + s * 0.01, "params": list(PARAMS),
                         "w_norm": [1.0] * n, "w_std": [0.1] * n, "upd_norm": [lr * 0.1] * n,
                         "upd_ratio": [lr * 0.1] * n, "grad_norm": [0.1] * n, "w_nan": [0] * n, "w_inf": [0] * n,
                         "grad_nan": [0] * n, "grad_inf": [0] * n})
            recs.append({"kind": "input", "step": s, "time": t0 + s * 0.01, "mean": 0.0, "std": 1.0, "min": -3.0,
                         "max": 3.0, "nan": 0, "inf": 0})
    return {"lr": lr, "reg": reg}, recs, scal


def write_babysitter(root: Path, name: str, hp: dict, recs: list[dict], scalars_only: bool) -> None:
    d = root / name
    d.mkdir(parents=True)
    meta = {"format": "babysitter", "format_version": 1, "run": name, "created": 1.7e9, "status": "finished",
            "ended": 1.7e9 + 10, "error": None, "hparams": hp, "search_space": SPACE,
            "layers": [{"name": n, "kind": k} for n, k in LAYERS], "num_classes": 10, "framework": "numpy",
            "every": 20}
    (d / "meta.json").write_text(_dumps(meta))
    keep = [r for r in recs if r["kind"] == "scalars"] if scalars_only else recs
    (d / "scalars.r0.jsonl").write_text("".join(_dumps(r) + "\n" for r in keep))


def write_tb(root: Path, name: str, scal) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(root / name), flush_secs=3600)
    for s, vals in scal:
        for k, v in vals.items():
            w.add_scalar(k, v, s)
    w.close()


def append_babysitter(run_dir: Path, first_step: int, n: int = 10) -> None:
    with open(run_dir / "scalars.r0.jsonl", "a") as f:
        for s in range(first_step, first_step + n):
            f.write(_dumps({"kind": "scalars", "step": s, "time": 1.8e9 + s, "values": {"loss": 0.1, "val_acc": 0.95}})
                    + "\n")


def babysitter_open(path: Path):
    t0 = time.perf_counter()
    ld = LogDir(path)
    ld.refresh()
    t_list = time.perf_counter() - t0
    cache = SummaryCache()
    summaries = cache.summaries(ld.runs())
    df = summaries_frame(summaries)
    edges = search_findings(summaries)
    return ld, cache, df, edges, t_list, time.perf_counter() - t0


def babysitter_update(ld: LogDir, cache: SummaryCache, run_name: str, step: int, *, watcher: bool) -> float:
    append_babysitter(ld.path / run_name, step)
    t0 = time.perf_counter()
    if watcher:
        ld.mark_dirty(run_name)
        ld.refresh()
    else:
        ld.refresh(full=True)
    summaries = cache.summaries(ld.runs())
    summaries_frame(summaries)
    search_findings(summaries)
    return time.perf_counter() - t0


def tb_open(path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    t0 = time.perf_counter()
    accs = {}
    rows = []
    for d in sorted(os.listdir(path)):
        acc = EventAccumulator(str(path / d))
        acc.Reload()
        accs[d] = acc
        v = [e.value for e in acc.Scalars("val_acc")]
        rows.append((d, v[-1], max(v)))
    return accs, rows, time.perf_counter() - t0


def tb_update(path: Path, accs: dict, name: str, step: int, *, all_runs: bool) -> float:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(path / name), flush_secs=3600)
    for s in range(step, step + 10):
        w.add_scalar("loss", 0.1, s)
        w.add_scalar("val_acc", 0.95, s)
    w.close()
    t0 = time.perf_counter()
    for d, acc in (accs.items() if all_runs else [(name, accs[name])]):
        acc.Reload()
        v = [e.value for e in acc.Scalars("val_acc")]
        _ = (v[-1], max(v))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-tb", action="store_true", help="skip TensorBoard")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "compare.json"))
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bs-compare-"))
    try:
        rng = np.random.default_rng(0)
        full, scal_dir, tb_dir = tmp / "full", tmp / "scalars", tmp / "tb"
        t0 = time.perf_counter()
        lines = 0
        for i in range(a.runs):
            hp, recs, scal = synth_run(i, a.steps, a.every, rng)
            name = f"search-t{i:04d}"
            write_babysitter(full, name, hp, recs, False)
            write_babysitter(scal_dir, name, hp, recs, True)
            lines += len(recs)
            if not a.no_tb:
                write_tb(tb_dir, name, scal)
        print(f"wrote {a.runs} runs x 3 formats ({lines} records in the full format) in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        res: dict = {"load_average_1min": round(os.getloadavg()[0], 2), "runs": a.runs, "steps": a.steps, "every": a.every, "records_full": lines,
                     "bytes_full": sum(f.stat().st_size for f in full.rglob("*") if f.is_file()),
                     "bytes_scalars": sum(f.stat().st_size for f in scal_dir.rglob("*") if f.is_file()),
                     "python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}
        if not a.no_tb:
            res["bytes_tb"] = sum(f.stat().st_size for f in tb_dir.rglob("*") if f.is_file())
        for label, path in (("full", full), ("scalars", scal_dir)):
            ld, cache, df, edges, t_list, t_open = babysitter_open(path)
            assert len(df) == a.runs and cache.computed == a.runs
            upd_w, upd_full = [], []
            target = df["run"].iloc[len(df) // 2]
            for r in range(a.repeats):
                upd_w.append(babysitter_update(ld, cache, target, 10_000 + 20 * r, watcher=True))
            for r in range(a.repeats):
                upd_full.append(babysitter_update(ld, cache, target, 20_000 + 20 * r, watcher=False))
            assert cache.computed == a.runs + 2 * a.repeats  # only the changed run was summarised again
            res[f"babysitter_{label}"] = {
                "list_s": round(t_list, 3), "first_open_s": round(t_open, 3),
                "update_one_run_watcher_s": round(statistics.median(upd_w), 4),
                "update_one_run_full_rescan_s": round(statistics.median(upd_full), 4),
                "edge_findings": [e.param for e in edges],
            }
            print(label, res[f"babysitter_{label}"], file=sys.stderr)
        if not a.no_tb:
            accs, rows, t_tb = tb_open(tb_dir)
            assert len(rows) == a.runs
            name = sorted(accs)[a.runs // 2]
            up_all = [tb_update(tb_dir, accs, name, 10_000 + 20 * r, all_runs=True) for r in range(a.repeats)]
            up_one = [tb_update(tb_dir, accs, name, 20_000 + 20 * r, all_runs=False) for r in range(a.repeats)]
            res["tensorboard_scalars"] = {
                "first_open_s": round(t_tb, 3),
                "update_reload_all_s": round(statistics.median(up_all), 4),
                "update_reload_one_s": round(statistics.median(up_one), 4),
            }
            print("tb", res["tensorboard_scalars"], file=sys.stderr)
            bs, tb = res["babysitter_scalars"], res["tensorboard_scalars"]
            res["ratios"] = {
                "first_open_tb_over_babysitter_same_scalars": round(tb["first_open_s"] / bs["first_open_s"], 2),
                "update_tb_reload_all_over_babysitter_watcher":
                    round(tb["update_reload_all_s"] / bs["update_one_run_watcher_s"], 1),
            }
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
        print(json.dumps(res, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
