"""20 browser-like clients poll the live dashboard for a minute while a training writes.

Each client is a thread doing what an open page does once a second: the live-refresh
callback (``POST /_dash-update-component`` with the Interval payload, shape taken from the
running app's ``/_dash-layout`` and ``/_dash-dependencies``), and, when the version
changed, the page's figure callbacks. Loopback only, 20 clients, ``LOAD_SECONDS`` (60).
No request may fail; the refresh latency (p50/p95) goes to test-artifacts/load.json.
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

TRAIN = """
import sys, time, numpy as np
from monitor import Monitor
rng = np.random.default_rng(0)
with Monitor(sys.argv[1], "live", every=5, heartbeat=1) as mon:
    end = time.time() + float(sys.argv[2])
    step = 0
    while time.time() < end:
        for i in range(6):
            mon.activation(step, f"fc{i}", np.maximum(0, rng.standard_normal((64, 100))), kind="relu")
        mon.log(step, loss=1.0 / (step + 1))
        step += 1
        time.sleep(0.01)
"""


@pytest.mark.load
def test_twenty_clients_poll_a_live_run_for_a_minute(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    train = subprocess.Popen([sys.executable, "-c", TRAIN, str(tmp_path), str(SECONDS + 5)], env=env)
    while not (tmp_path / "live" / "scalars.r0.jsonl").exists():
        time.sleep(0.05)
    proc, port = _start(tmp_path)
    latencies: list[float] = []
    errors: list[str] = []
    calls = [0]
    lock = threading.Lock()
    try:
        _wait_up(proc, port)
        base = f"http://127.0.0.1:{port}"

        def client(i: int) -> None:
            driver = PageDriver(*http_transport(base))
            comps = driver.visit("/run/live" if i % 2 else "/run/live/layers")
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
    finally:
        server_log = _stop(proc)
        train.kill()
        train.wait()
    assert errors == [], (errors[:3], server_log[-3000:])
    lat = np.array(latencies) * 1000
    assert len(lat) >= CLIENTS * 2, "the clients hardly got an answer"
    figures = {"clients": CLIENTS, "seconds": SECONDS, "requests": calls[0], "refreshes": len(lat),
               "refresh_p50_ms": round(float(np.percentile(lat, 50)), 1),
               "refresh_p95_ms": round(float(np.percentile(lat, 95)), 1),
               "refresh_max_ms": round(float(lat.max()), 1)}
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("load:", figures)
