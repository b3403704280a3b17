"""A million-step run: how long the dashboard takes to show it, and how much memory the server holds.

One synthetic run is written directly in the run format (docs/format.md) with numpy and
orjson: ``--scalar-steps`` lines of scalars (``loss``, ``lr``, ``train_acc``; a stretch of
NaN losses near the end, tagged in ``nonfinite``, and a few ``finding`` records spread over
the file), and, every ``scalar_steps / logged_steps`` steps, an ``input``, an ``acts``
(``--layers`` layers, the statistics of the format and 64-bin histograms) and a
``params`` record (a weight and a bias per layer). The run is cached under
``--cache`` (default ``$TMPDIR/babysitter-bench``) in a folder named after its parameters,
since writing the full size takes minutes.

Then, for the code under test (``--code``, default this checkout), the real dashboard
(``python -m babysitter dashboard``) is started on 127.0.0.1 with an empty summary index,
once per page, and once ``/`` answers, the page is driven over HTTP as a browser does
(tests/reliability/_dashclient.py: route, live tick, then every page callback). *Time to
interactive* is from the first request for the page to the last callback response, all of
which carry the page's figures; it includes reading the run, which no earlier request made.
For each page: that time, the CPU seconds the server and its child processes used meanwhile
(steadier than the time on a busy machine), the server's peak resident memory (``VmHWM`` of the server process,
and of any child it started), the points of the largest figure sent and whether the page
says that it shows a sample of the run. Then the other page of the same server is visited
too (the run already open) and timed the same way.

    python bench/longrun.py                                   # 1,000,000 steps, 200 layers x 10,000 logged steps
    python bench/longrun.py --scalar-steps 100000 --layers 50 --logged-steps 1000   # quick
    python bench/longrun.py --code /path/to/other/checkout    # another revision, same run

Results go to ``bench/results/longrun.json`` (``--out``); the load average from ``uptime``
is recorded at the start and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale import children, rss_mb, write_results  # noqa: E402
from tests._server import free_port  # noqa: E402
from tests.reliability._dashclient import PageDriver, http_transport, parse_outputs  # noqa: E402

BINS = 64
RUN = "longrun"
FORMAT = "v1"  # part of the cache key: change it when the generated run changes
PAGES = {"overview": f"/run/{RUN}", "layers": f"/run/{RUN}/layers"}


class PageOnly(PageDriver):
    """``PageDriver`` that makes only the callbacks of the page visited (their outputs are on it), as Dash does."""

    def page_callbacks(self, comps: dict[str, dict]) -> None:
        for dep in self.deps:
            ins = [x["id"] for x in dep["inputs"]]
            outs = [o["id"] for o in parse_outputs(dep["output"])]
            if any(i.startswith("{") for i in ins + outs) or ins[0] in ("app-url", "app-tick"):
                continue
            if all(o in comps for o in outs) and all(i in comps for i in ins) and not set(outs) <= set(self.shell):
                self._call(dep, comps, f"{dep['inputs'][0]['id']}.{dep['inputs'][0]['property']}")


def _dump(rec: dict) -> bytes:
    return orjson.dumps(rec, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def write_run(folder: Path, scalar_steps: int, layers: int, logged_steps: int, seed: int = 0) -> None:
    """Write the run into ``folder`` (created; must not exist)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    every = max(1, scalar_steps // logged_steps)
    names = [f"block{i:03d}.act" for i in range(layers)]
    kinds = ["relu" if i % 3 else "tanh" for i in range(layers)]
    params = [p for i in range(layers) for p in (f"block{i:03d}.weight", f"block{i:03d}.bias")]
    t0 = 1.7e9
    meta = {"format": "babysitter", "format_version": 1, "run": RUN, "created": t0, "status": "finished",
            "ended": t0 + scalar_steps * 0.01, "error": None, "hparams": {"lr": 3e-4, "layers": layers},
            "num_classes": 10, "framework": "numpy", "every": every,
            "layers": [{"name": n, "kind": k, "shape": [256]} for n, k in zip(names, kinds)]}
    (folder / "meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    nan_from = int(scalar_steps * 0.97)  # the loss diverges near the end: a NaN stretch of 1,000 steps
    nan_to = nan_from + min(1000, scalar_steps // 100)
    findings = {int(scalar_steps * f): f for f in (0.001, 0.25, 0.5, 0.75)}
    findings[nan_from] = "nan"
    steps = np.arange(scalar_steps)
    loss = 2.3 * np.exp(-steps / (scalar_steps / 4)) + 0.05 + 0.05 * rng.standard_normal(scalar_steps)
    acc = np.clip(1 - loss / 2.4, 0, 1)
    lr = 3e-4 * np.minimum(1, steps / 1000 + 1e-3)
    with open(folder / "scalars.r0.jsonl", "wb") as f:
        buf = []
        for s in range(scalar_steps):
            t = t0 + s * 0.01
            if nan_from <= s < nan_to:
                buf.append(b'{"kind":"scalars","step":%d,"time":%.2f,"values":{"loss":null,"lr":%.6g,"train_acc":%.6g},'
                           b'"nonfinite":{"loss":"nan"}}\n' % (s, t, lr[s], acc[s]))
            else:
                buf.append(b'{"kind":"scalars","step":%d,"time":%.2f,"values":{"loss":%.6g,"lr":%.6g,"train_acc":%.6g}}\n'
                           % (s, t, loss[s], lr[s], acc[s]))
            if s in findings:
                rule = "nan_loss" if findings[s] == "nan" else "slow_start"
                buf.append(_dump({"kind": "finding", "step": s, "time": t, "rule": rule,
                                  "severity": "error" if rule == "nan_loss" else "warning", "layers": [],
                                  "message": f"{rule} held at step {s} (written by the training process).",
                                  "fix": "Lower the learning rate.", "value": None, "threshold": None}))
            if len(buf) >= 50_000:
                f.write(b"".join(buf))
                buf = []
        f.write(b"".join(buf))
    with open(folder / "layers.r0.jsonl", "wb") as f:
        for i in range(logged_steps):
            s = i * every
            t = t0 + s * 0.01
            drift = i / max(1, logged_steps)
            mean = rng.normal(0.3 + drift, 0.05, layers)
            std = np.abs(rng.normal(0.5, 0.05, layers))
            lo, hi = mean - 3 * std, mean + 3 * std
            hist = rng.multinomial(4096, np.full(BINS, 1 / BINS), size=layers)
            relu = np.array([k == "relu" for k in kinds])
            f.write(_dump({"kind": "input", "step": s, "time": t, "mean": 0.0, "std": 1.0, "min": -3.0, "max": 3.0,
                           "nan": 0, "inf": 0}))
            f.write(_dump({
                "kind": "acts", "step": s, "time": t, "layers": names, "mean": mean, "std": std, "min": lo, "max": hi,
                "zero_frac": rng.uniform(0, 0.5, layers),
                "dead_frac": [float(x) if r else None for x, r in zip(rng.uniform(0, 0.05, layers), relu)],
                "sat_frac": [None if r else float(x) for x, r in zip(rng.uniform(0, 0.05, layers), relu)],
                "nan": np.zeros(layers, np.int64), "inf": np.zeros(layers, np.int64),
                "unit_std": np.abs(rng.normal(0.1, 0.01, layers)), "hist_lo": lo, "hist_hi": hi, "hist": hist}))
            k = len(params)
            w = np.abs(rng.normal(8, 1, k))
            u = w * np.abs(rng.normal(1e-3, 2e-4, k))
            f.write(_dump({"kind": "params", "step": s, "time": t, "params": params, "w_norm": w,
                           "w_std": w / 64, "upd_norm": u, "upd_ratio": u / w, "grad_norm": np.abs(rng.normal(0.1, 0.02, k)),
                           "w_nan": np.zeros(k, np.int64), "w_inf": np.zeros(k, np.int64),
                           "grad_nan": np.zeros(k, np.int64), "grad_inf": np.zeros(k, np.int64)}))


def cached_run(cache: Path, scalar_steps: int, layers: int, logged_steps: int) -> Path:
    """The log directory holding the run of these parameters, written on first use."""
    logdir = cache / f"longrun-{FORMAT}-s{scalar_steps}-l{layers}-k{logged_steps}"
    if (logdir / RUN / "meta.json").exists():
        return logdir
    tmp = cache / f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t = time.monotonic()
    write_run(tmp / RUN, scalar_steps, layers, logged_steps)
    shutil.rmtree(logdir, ignore_errors=True)
    tmp.rename(logdir)
    print(f"wrote the run in {time.monotonic() - t:.0f} s: {logdir}", flush=True)
    return logdir


def status_mb(pid: int) -> dict[str, float]:
    """Peak (``VmHWM``) and current (``VmRSS``) resident memory of ``pid``, in MB."""
    return dict(zip(("peak", "now"), rss_mb(pid)))


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used so far; NaN once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def _count(v) -> int:
    if isinstance(v, list):
        return len(v)
    if isinstance(v, dict) and "bdata" in v:  # plotly's typed array: base64 of the values
        import base64

        shape = str(v.get("shape", "")).replace(" ", "")
        if shape:
            return int(np.prod([int(x) for x in shape.split(",") if x]))
        return len(base64.b64decode(v["bdata"])) // np.dtype(v.get("dtype", "f8")).itemsize
    return 0


def figure_points(comps: dict) -> dict[str, int]:
    """Points sent per figure (the longest ``x``/``y``/``z`` of each trace, summed over traces)."""
    out = {}
    for cid, props in comps.items():
        fig = props.get("figure")
        if isinstance(fig, dict):
            out[cid] = sum(max(_count(tr.get(k)) for k in ("x", "y", "z"))
                           for tr in fig.get("data") or [] if isinstance(tr, dict))
    return out


def page_text(comps: dict, shell: dict) -> str:
    return json.dumps({k: v for k, v in comps.items() if k not in shell or k == "app-page"}, ensure_ascii=False)


class Server:
    def __init__(self, code: Path, logdir: Path, cache: Path) -> None:
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(code), BABYSITTER_CACHE=str(cache), PYTHONUNBUFFERED="1")
        self.log = open(cache / "server.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "babysitter", "dashboard", str(logdir), "--port",
                                      str(self.port)], cwd=code, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_up(self, timeout: float = 120) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the dashboard exited")
            try:
                with urllib.request.urlopen(self.base + "/", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the dashboard did not answer")

    def memory(self) -> dict:
        return {"server": status_mb(self.proc.pid),
                "children": [status_mb(c) for c in descendants(self.proc.pid)]}

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.log.close()


def visit(srv: Server, page: str, timeout: float) -> dict:
    """Time one page of ``srv`` to interactive; what it sent and the server's memory after it."""
    get, http_post = http_transport(srv.base, timeout=timeout)
    calls: list[tuple[str, float]] = []

    def post(path: str, body: dict) -> Any:
        t0 = time.perf_counter()
        got = http_post(path, body)
        calls.append((body["output"][:70], round(time.perf_counter() - t0, 3)))
        return got

    drv = PageOnly(get, post)  # the page shell, as a browser loads it before the first callback
    kids = {k: cpu_s(k) for k in descendants(srv.proc.pid)}
    cpu0 = cpu_s(srv.proc.pid)
    t = time.perf_counter()
    comps = drv.visit(PAGES[page])
    took = time.perf_counter() - t
    kids_cpu = sum(cpu_s(k) - kids.get(k, 0.0) for k in set(kids) | set(descendants(srv.proc.pid)))
    cpu = {"server": round(cpu_s(srv.proc.pid) - cpu0, 2), "children": round(kids_cpu, 2)}  # a child started meanwhile: all of its
    pts = figure_points(comps)
    text = page_text(comps, drv.shell)
    return {"page": page, "interactive_s": round(took, 3), "cpu_s": cpu, "callbacks": drv.calls, "callback_s": calls, "errors": drv.errors[:3],
            "figures": len(pts), "max_figure_points": max(pts.values(), default=0),
            "says_sampled": "sampled" in text, "sampled_note": _note(text), "memory_mb": srv.memory()}


def _note(text: str) -> str | None:
    i = text.find("sampled")
    return None if i < 0 else text[max(0, i - 160): i + 60]


def measure(code: Path, logdir: Path, first: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="longrun-cache-") as cache:
        srv = Server(code, logdir, Path(cache))
        try:
            srv.wait_up()
            up = srv.memory()
            res = {"first": first, "memory_at_start_mb": up, "visits": [visit(srv, first, timeout)]}
            other = next(p for p in PAGES if p != first)
            res["visits"].append(visit(srv, other, timeout))
            time.sleep(2)  # background summaries started by the visits
            res["memory_end_mb"] = srv.memory()
            return res
        except Exception as err:
            return {"first": first, "error": f"{type(err).__name__}: {err}", "memory_end_mb": srv.memory()}
        finally:
            srv.stop()


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scalar-steps", type=int, default=1_000_000)
    ap.add_argument("--layers", type=int, default=200)
    ap.add_argument("--logged-steps", type=int, default=10_000)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "babysitter-bench"))
    ap.add_argument("--code", default=str(ROOT), help="checkout whose dashboard is measured")
    ap.add_argument("--pages", default="overview,layers", help="first page of each fresh server, comma-separated")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one request may take")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "longrun.json"))
    args = ap.parse_args(argv)
    load_start = uptime()
    logdir = cached_run(Path(args.cache), args.scalar_steps, args.layers, args.logged_steps)
    files = {p.name: p.stat().st_size for p in sorted((logdir / RUN).iterdir())}
    print("files:", {k: f"{v / 1e6:.1f} MB" for k, v in files.items()}, "| load:", load_start, flush=True)
    code = Path(args.code).resolve()
    rev = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=False).stdout.strip()
    results = []
    for first in args.pages.split(","):
        results.append(measure(code, logdir, first, args.timeout))
        print(json.dumps(results[-1], indent=1), flush=True)
    write_results(args.out, {"scalar_steps": args.scalar_steps, "layers": args.layers,
                             "logged_steps": args.logged_steps, "file_bytes": files, "code": str(code), "rev": rev,
                             "cpus": os.cpu_count(), "uptime_start": load_start, "uptime_end": uptime(),
                             "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
