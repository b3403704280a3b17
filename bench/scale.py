"""Ten thousand runs: the dashboard and ``compare`` over a large log directory, cold and warm.

A synthetic search of ``--runs`` small runs (``--steps`` steps of scalars, activation and
parameter statistics every ``--every`` steps; bench/compare.py's generator) is written once.
Then, for the code under test and, with ``--baseline REV``, for that git revision checked
out beside it (the same log directory, one after the other, in this process tree):

* cold: ``babysitter dashboard`` started with an empty summary index; *ready* is the time
  from the start of the process until a visit of ``/`` has answered (route, tick and page
  callbacks, as a browser makes them: tests/reliability/_dashclient.py); then visits of
  ``/`` and ``/compare`` alternately (p50/p95 of ``--requests`` each) while summaries are
  still being filled in; then a new run is written and the time until ``/`` lists it;
  the server's resident memory (peak, and now) and the summary worker's.
* warm: the server started again over the index the cold one filled (same files);
  ready and page times again.
* ``babysitter compare --json`` with the filled index (warm) and with an empty one (cold).

    python bench/scale.py                        # 10,000 runs, this code only
    python bench/scale.py --baseline 81211ba     # and that revision side by side
    python bench/scale.py --runs 2000 --requests 10

Results go to ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare import synth_run, write_babysitter  # noqa: E402
from tests._server import free_port  # noqa: E402
from tests.reliability._dashclient import PageDriver, http_transport  # noqa: E402


def write_logdir(root: Path, runs: int, steps: int, every: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(runs):
        hp, recs, _ = synth_run(i, steps, every, rng)
        write_babysitter(root, f"trial-{i:05d}", hp, recs, scalars_only=False)


def rss_mb(pid: int) -> tuple[float, float]:
    """(peak, current) resident memory of ``pid`` in MB."""
    vals = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                vals[k] = int(v.split()[0]) / 1024
    except OSError:
        pass
    return vals.get("VmHWM", float("nan")), vals.get("VmRSS", float("nan"))


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def write_results(path: str | Path, out: dict) -> None:
    """The bench's results as JSON at ``path`` (its folder made), and where they went."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))
    print(f"written to {path}")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))] if xs else float("nan")


class Server:
    def __init__(self, code: Path, logdir: Path, cache: Path) -> None:
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(code), BABYSITTER_CACHE=str(cache), PYTHONUNBUFFERED="1")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "babysitter", "dashboard", str(logdir), "--port",
                                      str(self.port)], cwd=code, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 600) -> tuple[float, PageDriver]:
        """Seconds from the start until a visit of ``/`` has answered."""
        deadline = self.t0 + timeout
        while time.monotonic() < deadline:
            try:
                drv = PageDriver(*http_transport(self.base, timeout=timeout))
                comps = drv.visit("/")
                if not drv.errors and "runs-table" in comps or "trial-" in json.dumps(comps.get("app-page", {})):
                    return time.monotonic() - self.t0, drv
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the dashboard did not answer")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def visits(drv: PageDriver, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"/": [], "/compare": []}
    for _ in range(n):
        for path in out:
            t = time.perf_counter()
            drv.visit(path)
            out[path].append(time.perf_counter() - t)
    return out


def pending_text(drv: PageDriver) -> str:
    comps = drv.visit("/")
    return str(comps.get("runs-pager", {}).get("children", ""))


def measure(code: Path, logdir: Path, requests: int, label: str) -> dict:
    res: dict = {"code": label}
    with tempfile.TemporaryDirectory(prefix="scale-cache-") as cache:
        srv = Server(code, logdir, Path(cache))
        try:
            ready, drv = srv.wait_ready()
            res["cold_ready_s"] = ready
            res["pending_at_ready"] = pending_text(drv)
            t = visits(drv, requests)
            res["cold_pages"] = {p: {"p50": statistics.median(v), "p95": pct(v, 0.95), "n": len(v)} for p, v in t.items()}
            res["pending_after_pages"] = pending_text(drv)
            name = f"new-run-{time.time_ns()}"
            write_babysitter(logdir, name, {"lr": 0.01}, synth_run(99999, 10, 5, np.random.default_rng(1))[1],
                             scalars_only=True)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 120:
                if name in json.dumps(drv.visit("/").get("runs-table", {})):
                    break
                time.sleep(0.1)
            res["new_run_visible_s"] = time.monotonic() - t0
            # Wait for the background summaries (new code) so the warm start finds a full index.
            t0 = time.monotonic()
            while "background" in pending_text(drv) and time.monotonic() - t0 < 900:
                time.sleep(2)
            res["filled_after_s"] = time.monotonic() - srv.t0
            res["server_rss_mb"] = dict(zip(("peak", "now"), rss_mb(srv.proc.pid)))
            res["worker_rss_mb"] = [dict(zip(("peak", "now"), rss_mb(c))) for c in children(srv.proc.pid)]
        finally:
            srv.stop()
        srv = Server(code, logdir, Path(cache))
        try:
            ready, drv = srv.wait_ready()
            res["warm_ready_s"] = ready
            t = visits(drv, requests)
            res["warm_pages"] = {p: {"p50": statistics.median(v), "p95": pct(v, 0.95), "n": len(v)} for p, v in t.items()}
            res["warm_server_rss_mb"] = dict(zip(("peak", "now"), rss_mb(srv.proc.pid)))
        finally:
            srv.stop()
        env = dict(os.environ, PYTHONPATH=str(code), BABYSITTER_CACHE=cache)
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "babysitter", "compare", str(logdir), "--json"], cwd=code, env=env,
                       stdout=subprocess.DEVNULL, check=True)
        res["compare_json_warm_s"] = time.monotonic() - t0
    with tempfile.TemporaryDirectory(prefix="scale-cache-") as cache:
        env = dict(os.environ, PYTHONPATH=str(code), BABYSITTER_CACHE=cache)
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "babysitter", "compare", str(logdir), "--json"], cwd=code, env=env,
                       stdout=subprocess.DEVNULL, check=True)
        res["compare_json_cold_s"] = time.monotonic() - t0
    for p in logdir.glob("new-run-*"):
        import shutil

        shutil.rmtree(p)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--requests", type=int, default=20, help="visits of / and of /compare, each")
    ap.add_argument("--baseline", help="a git revision measured the same way, before this code")
    ap.add_argument("--baseline-requests", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        logdir = Path(tmp) / "logs"
        t0 = time.monotonic()
        write_logdir(logdir, args.runs, args.steps, args.every)
        print(f"wrote {args.runs} runs in {time.monotonic() - t0:.1f} s", flush=True)
        results = []
        if args.baseline:
            base = Path(tmp) / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.baseline],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                results.append(measure(base, logdir, args.baseline_requests, f"baseline {args.baseline}"))
                print(json.dumps(results[-1], indent=1), flush=True)
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
        results.append(measure(ROOT, logdir, args.requests, "this code"))
        print(json.dumps(results[-1], indent=1), flush=True)
    write_results(args.out, {"runs": args.runs, "steps": args.steps, "every": args.every, "load": os.getloadavg(),
                             "cpus": os.cpu_count(), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
