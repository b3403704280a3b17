"""Ingest benchmark: how fast and how lean is loading a run, next to TensorBoard.

A synthetic run of ``--layers`` layers x ``--steps`` logged steps (64-bin activation
histograms and the 9 per-layer statistics of the format, plus the loss) is written once
as JSON Lines in the run format and once as TensorBoard event files (``SummaryWriter``:
one histogram and 9 scalars per layer per step, and the loss, from the same numbers).
Each measurement runs in its own subprocess so peak memory (``VmHWM``, peak resident set) is its own:

* ``core`` first load: ``core.Run(path).update()`` (median of ``--repeat`` processes; at
  ``--tb-steps`` alternating with TensorBoard's, so both are measured under the same load);
* ``core`` incremental update: one more step appended, then ``run.update()`` (median of 20);
* TensorBoard: ``EventAccumulator(path, size_guidance={every kind: 0}).Reload()`` (all samples kept;
  median of ``--repeat`` processes);
* plain parses of the same JSON Lines with ``json.loads`` and ``orjson.loads`` (time only).

TensorBoard is slow at full size, so both formats are also written at ``--tb-steps``
steps and compared there side by side (same data, same machine, same run of this
script); the full-size figures are for core alone.

    python bench/ingest.py                      # 100 layers x 2000 steps, TB at 200 steps
    python bench/ingest.py --steps 500 --tb-steps 50   # quicker
    python bench/ingest.py --baseline main~3    # also the reader of another revision, alternately

With ``--baseline REV`` the reader of git revision ``REV`` (exported with ``git archive``
into a temporary folder) loads the same full-size run in its own subprocesses, alternating
with the current code (baseline, current, baseline, ...), and both times and their ratio
are printed: the two are measured in one sitting, under the same load.

Results go to ``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIELDS = ("mean", "std", "min", "max", "zero_frac", "dead_frac", "sat_frac", "nan", "inf")
BINS = 64


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a child would report
    # its parent's peak (the parent imported torch to write the event files).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- synthetic data -------------------------------------------------------------------------


def step_data(rng: np.random.Generator, layers: int, step: int) -> dict:
    """One logged step's numbers (shared by both writers)."""
    return {
        "step": step,
        "fields": {f: rng.random(layers) for f in FIELDS},
        "lo": -rng.random(layers) - 0.5,
        "hi": rng.random(layers) + 0.5,
        "hist": rng.integers(0, 2000, size=(layers, BINS)),
        "loss": float(2.3 * np.exp(-step / 500)),
    }


def write_jsonl(run: Path, layers: int, steps: int, seed: int = 0, start: int = 0) -> None:
    run.mkdir(parents=True, exist_ok=True)
    names = [f"layer{i:03d}" for i in range(layers)]
    if not (run / "meta.json").exists():
        meta = {"format": "babysitter", "format_version": 1, "run": run.name, "status": "running",
                "layers": [{"name": n, "kind": "relu"} for n in names]}
        (run / "meta.json").write_bytes(orjson.dumps(meta))
    rng = np.random.default_rng(seed + start)
    with open(run / "layers.r0.jsonl", "ab") as fl, open(run / "scalars.r0.jsonl", "ab") as fs:
        for s in range(start, start + steps):
            d = step_data(rng, layers, s)
            rec = {"kind": "acts", "step": s, "time": 1.7e9 + s, "layers": names,
                   **{f: d["fields"][f].round(6).tolist() for f in FIELDS},
                   "hist_lo": d["lo"].round(6).tolist(), "hist_hi": d["hi"].round(6).tolist(),
                   "hist": d["hist"].tolist()}
            fl.write(orjson.dumps(rec) + b"\n")
            fs.write(orjson.dumps({"kind": "scalars", "step": s, "time": 1.7e9 + s, "values": {"loss": d["loss"]}})
                     + b"\n")


def write_tb(path: Path, layers: int, steps: int, seed: int = 0) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(path), max_queue=10_000, flush_secs=3600)
    rng = np.random.default_rng(seed)
    for s in range(steps):
        d = step_data(rng, layers, s)
        for i in range(layers):
            counts = d["hist"][i]
            lo, hi = float(d["lo"][i]), float(d["hi"][i])
            limits = np.linspace(lo, hi, BINS + 1)[1:]
            centers = limits - (hi - lo) / BINS / 2
            w.add_histogram_raw(f"layer{i:03d}/hist", lo, hi, int(counts.sum()), float((counts * centers).sum()),
                                float((counts * centers ** 2).sum()), limits.tolist(), counts.tolist(),
                                global_step=s, walltime=1.7e9 + s)
            for f in FIELDS:
                w.add_scalar(f"layer{i:03d}/{f}", float(d["fields"][f][i]), global_step=s, walltime=1.7e9 + s)
        w.add_scalar("loss", d["loss"], global_step=s, walltime=1.7e9 + s)
    w.close()


# -- measurements (each in a child process) ----------------------------------------------------


def child(kind: str, path: str, layers: int) -> dict:
    base = rss_mb()
    if kind == "core_load":
        from core import Run
        base = rss_mb()
        t = time.perf_counter()
        run = Run(path)
        n = run.update()
        dt = time.perf_counter() - t
        assert len(run.acts) > 0 and len(run.acts.names) == layers, "core read nothing"
        return {"seconds": dt, "records": n, "peak_rss_mb": peak_mb(), "base_rss_mb": base,
                "held_mb": run.memory_bytes() / 2**20, "hist_rows_kept": int(run.acts.histograms()[0].shape[0])}
    if kind == "core_incremental":
        from core import Run
        run = Run(path)
        run.update()
        times = []
        last = run.last_step
        for k in range(20):
            write_jsonl(Path(path), layers, 1, start=last + 1 + k)
            t = time.perf_counter()
            n = run.update()
            times.append(time.perf_counter() - t)
            assert n == 2, n
        return {"median_seconds": statistics.median(times), "max_seconds": max(times), "samples": len(times)}
    if kind == "tb_load":
        from tensorboard.backend.event_processing import event_accumulator as ea
        base = rss_mb()
        guidance = {ea.COMPRESSED_HISTOGRAMS: 0, ea.IMAGES: 0, ea.AUDIO: 0, ea.SCALARS: 0,
                    ea.HISTOGRAMS: 0, ea.TENSORS: 0}
        t = time.perf_counter()
        acc = ea.EventAccumulator(path, size_guidance=guidance)
        acc.Reload()
        dt = time.perf_counter() - t
        tags = acc.Tags()
        n_hist = sum(len(acc.Histograms(tg)) for tg in tags["histograms"])
        n_scal = sum(len(acc.Scalars(tg)) for tg in tags["scalars"])
        assert n_hist > 0, "TensorBoard read no histograms"
        return {"seconds": dt, "histograms": n_hist, "scalars": n_scal, "peak_rss_mb": peak_mb(), "base_rss_mb": base}
    if kind in ("json_parse", "orjson_parse"):
        loads = json.loads if kind == "json_parse" else orjson.loads
        files = sorted(Path(path).glob("*.jsonl"))
        t = time.perf_counter()
        n = 0
        for f in files:
            with open(f, "rb") as fh:
                for line in fh:
                    loads(line)
                    n += 1
        return {"seconds": time.perf_counter() - t, "records": n}
    raise SystemExit(f"unknown measurement {kind!r}")


def measure(kind: str, path: Path, layers: int, code: Path | None = None) -> dict:
    extra = ["--code", str(code)] if code is not None else []
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--path", str(path), "--layers", str(layers),
                          *extra], capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{kind} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict]) -> dict:
    """The run with the median time, with every run's time (this machine is noisy)."""
    runs = sorted(runs, key=lambda r: r["seconds"])
    out = dict(runs[len(runs) // 2])
    out["all_seconds"] = [r["seconds"] for r in runs]
    return out


def measure_median(kind: str, path: Path, layers: int, repeat: int) -> dict:
    """``repeat`` fresh child processes; the one with the median time."""
    return median_run([measure(kind, path, layers) for _ in range(repeat)])


def side_by_side(jsonl: Path, tb: Path, layers: int, repeat: int) -> tuple[dict, dict]:
    """core and TensorBoard loading the same data, alternating (core, TensorBoard, core, ...): one load, one sitting."""
    core_runs, tb_runs = [], []
    for _ in range(repeat):
        core_runs.append(measure("core_load", jsonl, layers))
        tb_runs.append(measure("tb_load", tb, layers))
    return median_run(core_runs), median_run(tb_runs)


def export_revision(rev: str, dest: Path) -> Path:
    """The tree of git revision ``rev`` of this repository, unpacked into ``dest``."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def alternate(path: Path, layers: int, baseline: Path, repeat: int) -> dict:
    """First loads of ``path`` by the baseline's reader and this tree's, alternating; medians and their ratio."""
    old, new = [], []
    for _ in range(repeat):
        old.append(measure("core_load", path, layers, baseline))
        new.append(measure("core_load", path, layers))
    med = lambda rs: statistics.median(r["seconds"] for r in rs)  # noqa: E731
    return {"baseline_seconds": [r["seconds"] for r in old], "current_seconds": [r["seconds"] for r in new],
            "baseline_median": med(old), "current_median": med(new), "speedup": med(old) / med(new),
            "baseline_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in old),
            "current_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in new)}


def dir_mb(p: Path) -> float:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--tb-steps", type=int, default=200, help="steps for the side-by-side TensorBoard comparison")
    ap.add_argument("--repeat", type=int, default=3, help="child processes per load measurement (median kept)")
    ap.add_argument("--baseline", metavar="REV", help="also time the reader of git revision REV, alternately")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ingest.json"))
    ap.add_argument("--code", help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.code:
            sys.path.insert(0, args.code)  # the baseline's core, ahead of this tree's
        print(json.dumps(child(args.child, args.path, args.layers)))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bs-ingest-"))
    try:
        res: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                 "load_avg_at_start": os.getloadavg()[0]},
                     "layers": args.layers, "bins": BINS}
        # Side by side at tb-steps.
        small_jsonl, small_tb = tmp / "small" / "run", tmp / "small_tb"
        t = time.perf_counter()
        write_jsonl(small_jsonl, args.layers, args.tb_steps)
        write_tb(small_tb, args.layers, args.tb_steps)
        print(f"wrote {args.tb_steps}-step data in {time.perf_counter() - t:.1f} s", flush=True)
        core_s, tb_s = side_by_side(small_jsonl, small_tb, args.layers, args.repeat)
        res["side_by_side"] = {
            "steps": args.tb_steps, "jsonl_mb": dir_mb(small_jsonl), "tb_event_mb": dir_mb(small_tb),
            "core": core_s, "tensorboard": tb_s,
            "speedup_core_vs_tb": tb_s["seconds"] / core_s["seconds"],
            "peak_rss_growth_core_mb": core_s["peak_rss_mb"] - core_s["base_rss_mb"],
            "peak_rss_growth_tb_mb": tb_s["peak_rss_mb"] - tb_s["base_rss_mb"],
        }
        print(f"side by side at {args.layers}x{args.tb_steps}: core {core_s['seconds']:.3f} s, "
              f"TensorBoard {tb_s['seconds']:.2f} s ({res['side_by_side']['speedup_core_vs_tb']:.0f}x)", flush=True)
        # Full size, core only.
        big = tmp / "big" / "run"
        t = time.perf_counter()
        write_jsonl(big, args.layers, args.steps)
        print(f"wrote {args.steps}-step data ({dir_mb(big):.0f} MB) in {time.perf_counter() - t:.1f} s", flush=True)
        full = measure_median("core_load", big, args.layers, args.repeat)
        js = measure("json_parse", big, args.layers)
        oj = measure("orjson_parse", big, args.layers)
        inc = measure("core_incremental", big, args.layers)
        if args.baseline:
            base = alternate(big, args.layers, export_revision(args.baseline, tmp / "baseline"), args.repeat)
            base["revision"] = args.baseline
            res["baseline"] = base
            print(f"first load {args.layers}x{args.steps}, alternating: {args.baseline} {base['baseline_median']:.2f} s "
                  f"(peak RSS {base['baseline_peak_rss_mb']:.0f} MB), current {base['current_median']:.2f} s "
                  f"(peak RSS {base['current_peak_rss_mb']:.0f} MB): {base['speedup']:.2f}x", flush=True)
        res["full"] = {"steps": args.steps, "jsonl_mb": dir_mb(big), "core_first_load": full,
                       "core_incremental_update": inc, "json_parse": js, "orjson_parse": oj,
                       "orjson_vs_json_speedup": js["seconds"] / oj["seconds"],
                       "core_per_record_us": 1e6 * full["seconds"] / full["records"],
                       "tb_per_record_us_at_side_by_side": 1e6 * tb_s["seconds"] / (2 * args.tb_steps)}
        res["targets"] = {
            "first_load_150x_faster_than_tb": res["side_by_side"]["speedup_core_vs_tb"] >= 150,
            "first_load_under_2s": full["seconds"] < 2.0,
            "peak_memory_under_300mb": full["peak_rss_mb"] < 300,
            "incremental_under_50ms": inc["median_seconds"] < 0.05,
        }
        print(f"full {args.layers}x{args.steps}: first load {full['seconds']:.2f} s, peak RSS "
              f"{full['peak_rss_mb']:.0f} MB (base {full['base_rss_mb']:.0f} MB), held {full['held_mb']:.0f} MB; "
              f"incremental {1e3 * inc['median_seconds']:.1f} ms median; json {js['seconds']:.2f} s vs orjson "
              f"{oj['seconds']:.2f} s ({res['full']['orjson_vs_json_speedup']:.1f}x)", flush=True)
        print("targets:", res["targets"])
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
        print("results:", args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
