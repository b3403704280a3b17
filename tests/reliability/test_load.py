"""20 browser-like clients poll the live dashboard for a minute while a large run grows.

The run has 100 layers and 100 parameters with 5,000 logged steps already written (every
step: activation statistics with 64-bin histograms, parameter statistics, the loss), and
grows by one step a second while the clients poll. Each client is a thread doing what an
open page does once a second: the live-refresh callback (``POST /_dash-update-component``
with the Interval payload, shape taken from the running app's ``/_dash-layout`` and
``/_dash-dependencies``), and, when the version changed, the page's figure callbacks; the
clients are spread over the Overview, Layers and Updates pages. Loopback only, 20 clients,
``LOAD_SECONDS`` (60). No request may fail; the figures go to test-artifacts/load.json.
Run with:  bash test.sh -m load
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ._dashclient import PageDriver, http_transport
from .test_security import _start, _stop, _wait_up

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 20
SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))

HISTORY = int(os.environ.get("LOAD_HISTORY", "5000"))
LAYERS = 100

TRAIN = """
import sys, time, numpy as np
from core.schema import ACT_FIELDS, PARAM_FIELDS
from monitor import Monitor
rng = np.random.default_rng(0)
L, history, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
names = [f"layer{i}" for i in range(L)]
params = [n + ".weight" for n in names]

def step(mon, s):
    acts = {f: rng.random(L).tolist() for f in ACT_FIELDS}
    acts.update(hist_lo=(-rng.random(L)).tolist(), hist_hi=rng.random(L).tolist(),
                hist=rng.integers(0, 500, (L, 64)).tolist())
    mon.write_stats("acts", s, {n: {f: acts[f][i] for f in acts} for i, n in enumerate(names)})
    cols = {f: (rng.random(L) * 1e-3).tolist() for f in PARAM_FIELDS}
    mon.write_stats("params", s, {n: {f: cols[f][i] for f in cols} for i, n in enumerate(params)})
    mon.log(s, loss=1.0 / (s + 1), val_acc=min(1.0, s / history), lr=0.1)

with Monitor(sys.argv[1], "live", every=1, heartbeat=1) as mon:
    for s in range(history):
        step(mon, s)
    print("HISTORY_WRITTEN", flush=True)
    end = time.time() + seconds
    s = history
    while time.time() < end:
        step(mon, s)
        s += 1
        time.sleep(1.0)
"""
PAGES = ("/run/live", "/run/live/layers", "/run/live/updates")


@pytest.mark.load
def test_twenty_clients_poll_a_live_run_of_100_layers_and_5000_steps_for_a_minute(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    train = subprocess.Popen([sys.executable, "-c", TRAIN, str(tmp_path), str(LAYERS), str(HISTORY),
                              str(SECONDS + 120)], env=env, stdout=subprocess.PIPE, text=True)
    assert train.stdout.readline().strip() == "HISTORY_WRITTEN"
    proc, port = _start(tmp_path)
    latencies: list[float] = []
    errors: list[str] = []
    calls = [0]
    lock = threading.Lock()
    try:
        _wait_up(proc, port, timeout=180)  # a busy shared machine may take a while
        base = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        first = PageDriver(*http_transport(base, timeout=300))
        first.visit("/run/live")  # the first visit reads the whole history
        first_load = time.perf_counter() - t0
        assert first.errors == [], first.errors

        def client(i: int) -> None:
            try:
                run_client(i)
            except Exception as err:  # a timeout or a dropped connection is a failure too
                with lock:
                    errors.append(f"client {i}: {type(err).__name__}: {err}")

        def run_client(i: int) -> None:
            driver = PageDriver(*http_transport(base))
            comps = driver.visit(PAGES[i % len(PAGES)])
            end = time.monotonic() + SECONDS
            while time.monotonic() < end:
                t0 = time.perf_counter()
                data = driver.tick(comps)
                dt = time.perf_counter() - t0
                if data and data.get("response"):
                    driver.page_callbacks(comps)
                with lock:
                    latencies.append(dt)
                time.sleep(max(0.0, 1.0 - (time.perf_counter() - t0)))
            with lock:
                errors.extend(driver.errors)
                calls[0] += driver.calls

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=SECONDS + 120)
        assert proc.poll() is None, "the server died"
        last = (tmp_path / "live" / "scalars.r0.jsonl").read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        steps_during = json.loads(last)["step"] + 1 - HISTORY
    finally:
        server_log = _stop(proc)
        train.kill()
        train.wait()
    assert errors == [], (errors[:3], server_log[-3000:])
    lat = np.array(latencies) * 1000
    assert len(lat) >= CLIENTS * 2, "the clients hardly got an answer"
    figures = {"clients": CLIENTS, "seconds": SECONDS, "layers": LAYERS, "history_steps": HISTORY,
               "steps_during_test": steps_during,
               "first_visit_s": round(first_load, 1), "requests": calls[0], "refreshes": len(lat),
               "refresh_p50_ms": round(float(np.percentile(lat, 50)), 1),
               "refresh_p95_ms": round(float(np.percentile(lat, 95)), 1),
               "refresh_max_ms": round(float(lat.max()), 1)}
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("load:", figures)
