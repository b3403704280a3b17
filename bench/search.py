"""Search benchmark: wall time of one 40-trial coarse search with 1, 2 and 4 worker processes, pruned or not.

The search is the lecture's coarse step on the digits network (``examples/digits_numpy``,
6 epochs per trial, 64 hidden units): ``lr`` log-uniform in [1e-4, 100] and ``reg`` in
[1e-6, 1], 40 trials, seed 0, so every configuration draws the same 40 trials (trial ``k``'s
values depend on the seed and ``k`` only). The high end of the learning-rate range blows
the loss up: with pruning (``prune=True``, the default) the diagnoses stop those trials
within a few logged steps; without (``prune=False``, and ``on_nan="warn"``: a NaN loss does
not stop the training either) they train all 6 epochs.

Each configuration starts N fresh worker processes (``python bench/search.py --worker``) on
a fresh journal file and log directory; once every worker has imported its modules and
loaded the data, all are told to start at the same moment, and the wall time runs until
the last one exits (so interpreter start and the scikit-learn import, 2-3 s per process
here, are not counted). Each worker also reports the CPU time its search took; their sum
is the work done, which other jobs on the machine disturb less than the wall time. The
configurations are run round-robin, ``--repeats`` times in rotating order; the figure is the
fastest repetition of each, as a ratio to 1 worker without pruning from the same run.

    python bench/search.py                  # 6 configurations x 3 repetitions, about 5 minutes on 2 cores
    python bench/search.py --repeats 1      # quicker

Results go to ``bench/results/search.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRIALS = 40
EPOCHS = 6  # per trial: a coarse search trains briefly
WORKERS = (1, 2, 4)


def worker(args: argparse.Namespace) -> int:
    import logging

    import optuna

    from examples.search_digits import make_train
    from monitor.search import LogUniform, random_search

    from examples.digits_numpy import load_data

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.WARNING)
    load_data(0)  # imports scikit-learn (seconds): done before the start signal, like the other imports
    print("ready", flush=True)
    sys.stdin.readline()  # the start signal: every worker starts the search at the same moment
    cpu0 = time.process_time()
    space = {"lr": LogUniform(1e-4, 1e2), "reg": LogUniform(1e-6, 1.0)}
    res = random_search(make_train(EPOCHS, on_nan="warn"), space, args.trials, logdir=args.logdir, name="coarse",
                        seed=0, storage=args.storage, prune=bool(args.prune))
    print(json.dumps({"pid": os.getpid(), "statuses": [t.status for t in res.trials],
                      "steps": sum(t.steps or 0 for t in res.trials), "cpu_s": time.process_time() - cpu0}))
    return 0


def run_config(n: int, prune: bool, trials: int, tmp: Path) -> dict:
    d = Path(tempfile.mkdtemp(dir=tmp))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--worker", "--trials", str(trials), "--logdir", str(d / "runs"),
           "--storage", str(d / "search.journal"), "--prune", str(int(prune))]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(n)]
    for p in procs:
        if p.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
            raise SystemExit(f"worker failed to start:\n{p.communicate()[1]}")
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t0
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"worker failed:\n{err}")
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    last = reports[0]
    runs = len([e for e in os.listdir(d / "runs")])
    shutil.rmtree(d, ignore_errors=True)
    return {"workers": n, "prune": prune, "wall_s": wall, "cpu_s": sum(r["cpu_s"] for r in reports), "runs": runs,
            "pruned": last["statuses"].count("pruned"), "crashed": last["statuses"].count("crashed"),
            "steps_trained": last["steps"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--trials", type=int, default=TRIALS)
    ap.add_argument("--logdir")
    ap.add_argument("--storage")
    ap.add_argument("--prune", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "search.json"))
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a)
    configs = [(n, p) for p in (False, True) for n in WORKERS]
    results: dict[tuple[int, bool], list[dict]] = {c: [] for c in configs}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for n, p in order:
                res = run_config(n, p, a.trials, Path(tmp))
                results[(n, p)].append(res)
                print(f"  rep {r}: {n} worker(s), prune={p}: {res['wall_s']:.1f} s "
                      f"({res['pruned']} pruned, {res['steps_trained']} steps)", flush=True)
    best = {c: min(v, key=lambda x: x["wall_s"]) for c, v in results.items()}
    base = best[(1, False)]["wall_s"]
    cpu_base = min(x["cpu_s"] for x in results[(1, False)])
    print(f"\n{a.trials}-trial coarse search, fastest of {a.repeats}; ratio to 1 worker without pruning")
    print(f"{'workers':>7}  {'pruning':>7}  {'wall':>7}  {'ratio':>5}  {'CPU (all workers)':>17}  {'ratio':>5}  "
          f"{'pruned':>6}  {'steps trained':>13}")
    rows = []
    for (n, p), b in best.items():
        ratio = b["wall_s"] / base
        cpu = min(x["cpu_s"] for x in results[(n, p)])
        print(f"{n:>7}  {'on' if p else 'off':>7}  {b['wall_s']:>6.1f}s  {ratio:>5.2f}  {cpu:>16.1f}s  "
              f"{cpu / cpu_base:>5.2f}  {b['pruned']:>6}  {b['steps_trained']:>13}")
        rows.append({**b, "ratio": ratio, "min_cpu_s": cpu, "cpu_ratio": cpu / cpu_base,
                     "all_wall_s": [x["wall_s"] for x in results[(n, p)]]})
    out = {"trials": a.trials, "repeats": a.repeats, "cpus": os.cpu_count(), "python": platform.python_version(),
           "load_avg_start": load0, "load_avg_end": os.getloadavg()[0], "results": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"cpus: {os.cpu_count()}, load average {load0:.1f} -> {os.getloadavg()[0]:.1f}; written to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
