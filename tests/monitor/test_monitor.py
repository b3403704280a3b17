"""monitor.Monitor with the numpy path: naming, options, lifecycle, strict JSON output, I/O failures."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from core import ConfigError, LogDir, Run, RunExistsError, activation_stats, param_stats
from monitor import Monitor, MonitoringWarning, TrainingDivergedError, validate_run_name

REPO = Path(__file__).resolve().parents[2]


def _py(code: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _train(mon: Monitor, steps: int = 12, seed: int = 0) -> None:
    """A few SGD steps of a tiny numpy ReLU net, instrumented the documented way."""
    g = np.random.default_rng(seed)
    X = g.standard_normal((16, 4))
    y = g.integers(0, 3, 16)
    W1 = g.standard_normal((4, 8)) * 0.5
    W2 = g.standard_normal((8, 3)) * 0.5
    lr = 0.1
    mon.set_layers([("fc1", "relu"), ("fc2", "linear")])
    for step in range(steps):
        mon.input(step, X)
        h = np.maximum(0, X @ W1)
        mon.activation(step, "fc1", h, kind="relu")
        s = h @ W2
        mon.activation(step, "fc2", s)
        p = np.exp(s - s.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.log(p[np.arange(16), y]).mean()
        ds = p.copy()
        ds[np.arange(16), y] -= 1
        ds /= 16
        dW2 = h.T @ ds
        dW1 = X.T @ ((ds @ W2.T) * (h > 0))
        W1 -= lr * dW1
        W2 -= lr * dW2
        mon.weights(step, "W1", W1, update=-lr * dW1, grad=dW1)
        mon.weights(step, "W2", W2, update=-lr * dW2, grad=dW2)
        mon.log(step, loss=loss, lr=lr)


def _all_lines(run_dir: Path, strict_json) -> list[dict]:
    out = []
    for f in sorted(run_dir.iterdir()):
        if f.name.endswith(".jsonl"):
            data = f.read_bytes()
            assert data.endswith(b"\n")
            for line in data.decode("utf-8").splitlines():
                out.append(strict_json(line))
    return out


# -- naming ----------------------------------------------------------------------------------


def test_generated_name(tmp_path):
    with Monitor(tmp_path, heartbeat=0) as mon:
        mon.log(0, loss=1.0)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", mon.run_dir.name)
    assert mon.run_dir.parent == tmp_path


def test_two_generated_names_differ(tmp_path):
    a, b = Monitor(tmp_path, heartbeat=0), Monitor(tmp_path, heartbeat=0)
    with a, b:
        assert a.run_dir != b.run_dir


def test_given_name_and_suffix_when_it_exists(tmp_path):
    dirs = []
    for _ in range(3):
        with Monitor(tmp_path, "exp", heartbeat=0) as mon:
            mon.log(0, loss=1.0)
        dirs.append(mon.run_dir.name)
    assert dirs == ["exp", "exp-2", "exp-3"]
    # Nothing was overwritten: each run kept its own single record.
    for d in dirs:
        assert len((tmp_path / d / "scalars.r0.jsonl").read_text().splitlines()) == 1


def test_on_exists_error(tmp_path):
    (tmp_path / "exp").mkdir()
    mon = Monitor(tmp_path, "exp", on_exists="error", heartbeat=0)
    with pytest.raises(RunExistsError, match=r"exp exists already.*pick another name"):
        mon.open()
    assert list((tmp_path / "exp").iterdir()) == []


@pytest.mark.parametrize("name", ["my run 1", "ünïcødé-实验-🚀", "<img src=x onerror=alert(1)>", "a'b\"c;$(x)"])
def test_odd_run_names_work(tmp_path, name):
    with Monitor(tmp_path, name, hparams={"note": name}, heartbeat=0) as mon:
        mon.log(0, loss=1.0)
    assert mon.run_dir == tmp_path / name
    ld = LogDir(tmp_path)
    ld.refresh()
    assert ld.names() == [name]
    run = ld.get(name)
    assert run.meta.run == name and run.meta.hparams == {"note": name}
    assert run.scalar("loss").values.tolist() == [1.0]
    assert run.status() == "finished"


@pytest.mark.parametrize("name, match", [
    ("../x", "one folder name"),
    ("a/b", "one folder name"),
    ("a\\b", "one folder name"),
    ("a\x00b", "one folder name"),
    ("..", "one folder name"),
    (".", "one folder name"),
    ("", "non-empty string"),
    ("   ", "non-empty string"),
    ("x" * 201, "keep it under 200"),
])
def test_bad_run_names(tmp_path, name, match):
    with pytest.raises(ConfigError, match=match):
        Monitor(tmp_path, name)
    with pytest.raises(ConfigError, match=match):
        validate_run_name(name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"every": 0}, r"every must be a positive integer"),
    ({"every": 2.5}, r"every must be a positive integer"),
    ({"every": True}, r"every must be a positive integer"),
    ({"rank": -1}, r"rank must be a non-negative integer"),
    ({"rank": 1.0}, r"rank must be a non-negative integer"),
    ({"bins": 1}, r"bins must be an integer in 2\.\.1024"),
    ({"bins": 4096}, r"bins must be an integer in 2\.\.1024"),
    ({"on_nan": "explode"}, r"on_nan must be one of \('warn', 'raise', 'ignore'\)"),
    ({"on_exists": "overwrite"}, r"on_exists must be one of \('suffix', 'error'\)"),
    ({"num_classes": 0}, r"num_classes must be a positive integer or None"),
    ({"num_classes": "10"}, r"num_classes must be a positive integer or None"),
    ({"heartbeat": -1}, r"heartbeat must be >= 0 seconds"),
    ({"heartbeat": "5"}, r"heartbeat must be >= 0 seconds"),
    ({"heartbeat": float("nan")}, r"heartbeat must be >= 0 seconds"),
    ({"rank": True, "name": "r"}, r"rank must be a non-negative integer"),
    ({"rank": 2}, r"a rank > 0 must be given the run name"),
])
def test_constructor_config_errors(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Monitor(tmp_path / "logs", **kwargs)
    assert not (tmp_path / "logs").exists()  # the constructor only checks; it creates nothing


def test_unknown_layer_kind(tmp_path):
    with Monitor(tmp_path, heartbeat=0) as mon:
        with pytest.raises(ConfigError, match=r"kind must be one of .*'relu'.*got 'rellu'"):
            mon.activation(0, "fc1", np.ones((2, 2)), kind="rellu")
        with pytest.raises(ConfigError, match="kind must be one of"):
            mon.set_layers([("fc1", "magic")])


def test_logdir_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    mon = Monitor(tmp_path / "file" / "logs")
    with pytest.raises(ConfigError, match="cannot create log directory"):
        mon.open()


# -- what is written -------------------------------------------------------------------------


def test_every_line_is_strict_json_and_reads_back(tmp_path, strict_json):
    with Monitor(tmp_path, "r", every=5, num_classes=3, hparams={"lr": 0.1, "nan": float("nan")},
                 heartbeat=0) as mon:
        _train(mon, steps=12)
        mon.log(12, loss=float("nan"), val_loss=float("inf"), other=float("-inf"))
    run_dir = tmp_path / "r"
    lines = _all_lines(run_dir, strict_json)
    meta = strict_json((run_dir / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["status"] == "finished" and meta["hparams"]["nan"] is None
    assert {ln["kind"] for ln in lines} == {"scalars", "acts", "params", "input", "finding"}
    nan_line = [ln for ln in lines if ln["kind"] == "scalars" and ln["step"] == 12][0]
    assert nan_line["values"] == {"loss": None, "val_loss": None, "other": None}
    assert nan_line["nonfinite"] == {"loss": "nan", "val_loss": "inf", "other": "-inf"}
    assert sorted(os.listdir(run_dir)) == ["layers.r0.jsonl", "meta.json", "scalars.r0.jsonl"]

    run = Run(run_dir)
    run.update()
    assert run.all_problems() == []
    # Statistics at the first step and every 5 steps after.
    assert run.acts.step_array().tolist() == [0, 5, 10]
    assert run.params.step_array().tolist() == [0, 5, 10]
    assert run.input_stats()["step"].tolist() == [0, 5, 10]
    assert run.scalar("loss").steps.tolist() == list(range(13))
    assert run.layer_order() == ["fc1", "fc2"] and run.layer_kinds() == {"fc1": "relu", "fc2": "linear"}
    assert [f.rule for f in run.findings] == ["nan_loss"]
    assert math_isnan(run.scalar("loss").values[-1])


def math_isnan(x: float) -> bool:
    return x != x


def test_written_statistics_equal_the_reference(tmp_path):
    g = np.random.default_rng(1)
    h = np.maximum(0, g.standard_normal((32, 10)))
    h[:, :3] = 0
    W = g.standard_normal((10, 10))
    upd, grad = g.standard_normal((10, 10)) * 1e-3, g.standard_normal((10, 10))
    with Monitor(tmp_path, "r", bins=16, heartbeat=0) as mon:
        mon.activation(0, "fc1", h, kind="relu")
        mon.weights(0, "W1", W, update=upd, grad=grad)
        mon.log(0, loss=1.0)
    run = Run(tmp_path / "r")
    run.update()
    want = activation_stats(h, "relu", bins=16)
    for f in ("mean", "std", "min", "max", "zero_frac", "dead_frac"):
        assert run.acts.field(f)[0, 0] == pytest.approx(want[f]), f
    assert run.acts.field("dead_frac")[0, 0] == pytest.approx(0.3)
    _, lo, hi, counts = run.acts.histograms()
    assert counts[0, 0].tolist() == want["hist"] and lo[0, 0] == want["hist_lo"]
    pw = param_stats(W, upd, grad)
    for f in ("w_norm", "upd_ratio", "grad_norm"):
        assert run.params.field(f)[0, 0] == pytest.approx(pw[f]), f


def test_unlogged_steps_write_nothing(tmp_path):
    with Monitor(tmp_path, "r", every=100, heartbeat=0) as mon:
        for step in range(1, 150):
            assert mon.stats_due(step) == (step in (1, 100))
            mon.activation(step, "a", np.ones((2, 2)))
            mon.log(step, loss=1.0)
    run = Run(tmp_path / "r")
    run.update()
    assert run.acts.step_array().tolist() == [1, 100]


def test_rank_writes_its_own_files(tmp_path):
    with Monitor(tmp_path, "ddp", heartbeat=0) as m0, Monitor(tmp_path, "ddp", rank=1, heartbeat=0) as m1:
        m0.log(0, loss=1.0)
        m1.log(0, loss=3.0)
    assert sorted(os.listdir(tmp_path / "ddp")) == ["meta.json", "scalars.r0.jsonl", "scalars.r1.jsonl"]
    run = Run(tmp_path / "ddp")
    run.update()
    assert run.scalar("loss", rank=1).values.tolist() == [3.0]


def test_set_meta_and_layers(tmp_path):
    with Monitor(tmp_path, "r", heartbeat=0) as mon:
        mon.set_meta(framework="jax", hparams={"lr": 1e-3}, custom={"a": 1})
        mon.set_layers([{"name": "conv1", "kind": "conv", "shape": [8, 4, 4]}, ("relu1", "relu")])
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["framework"] == "jax" and meta["hparams"] == {"lr": 1e-3} and meta["custom"] == {"a": 1}
    assert meta["layers"] == [{"name": "conv1", "kind": "conv", "shape": [8, 4, 4]}, {"name": "relu1", "kind": "relu"}]


def test_heartbeat_file(tmp_path):
    with Monitor(tmp_path, "r", heartbeat=5.0) as mon:
        mon.log(0, loss=1.0)
        assert (mon.run_dir / "heartbeat").exists()


def test_a_step_recorded_first_starts_the_cadence(tmp_path):
    """The first statistics step is the first step that writes statistics, by any path."""
    with Monitor(tmp_path, "r", every=4, heartbeat=0) as mon:
        assert all(mon.stats_due(s) for s in (3, 5, 6))  # nothing recorded yet: any step is the first
        mon.write_stats("input", 5, {"mean": 0.0, "std": 1.0})
        assert [s for s in range(5, 14) if mon.stats_due(s)] == [5, 8, 12]
        mon.activation(6, "a", np.ones((2, 2)))  # not due: ignored
        mon.activation(8, "a", np.ones((2, 2)))
    run = Run(tmp_path / "r")
    run.update()
    assert run.acts.step_array().tolist() == [8]


def test_layer_records_of_each_kind_have_the_format_fields_in_one_order(tmp_path):
    """One record builder: numpy statistics and adapter statistics give records of the same keys."""
    from core.schema import ACT_FIELDS, ACT_HIST_FIELDS, INPUT_FIELDS, PARAM_FIELDS

    with Monitor(tmp_path, "r", heartbeat=0) as mon:
        _train(mon, steps=1)
        mon.write_stats("acts", 1, {"x": {"mean": 1.0, "hist": [1, 2]}})  # a missing field is written as null
        with pytest.raises(ConfigError, match="kind must be one of"):
            mon.write_stats("scalars", 1, {})
    lines = [json.loads(line) for f in sorted((tmp_path / "r").glob("layers*.jsonl")) for line in f.read_text().splitlines()]
    keys = {(r["kind"], tuple(r)) for r in lines}
    assert keys == {("input", ("kind", "step", "time", *INPUT_FIELDS)),
                    ("acts", ("kind", "step", "time", "layers", *ACT_FIELDS, *ACT_HIST_FIELDS)),
                    ("params", ("kind", "step", "time", "params", *PARAM_FIELDS))}
    assert lines[-1]["layers"] == ["x"] and lines[-1]["std"] == [None] and lines[-1]["hist"] == [[1, 2]]


class _Adapter:
    """A framework adapter as monitor/_adapter.py declares it: adds a value, holds odd steps back."""

    def __init__(self):
        self.monitor, self.held, self.closed = None, [], 0

    def attach(self, monitor):
        self.monitor = monitor

    def on_scalars(self, step, values):
        values = {**values, "extra": 1.0}
        if step % 2:
            self.held.append((step, values))
            return None
        return values

    def close(self):
        self.closed += 1
        for step, values in self.held:
            self.monitor.write_scalars(step, values)
        self.held = []
        self.monitor.detach(self)


def test_an_adapter_sees_the_scalars_first_and_is_closed_with_the_monitor(tmp_path):
    a = _Adapter()
    with Monitor(tmp_path, "r", heartbeat=0) as mon:
        mon.attach(a)
        mon.attach(a)  # attached once
        assert mon.adapters == [a] and a.monitor is mon
        for step in range(3):
            mon.log(step, loss=1.0)
        assert [s for s, _ in a.held] == [1]
    assert a.closed == 1 and mon.adapters == []
    recs = [json.loads(line) for line in (tmp_path / "r" / "scalars.r0.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [0, 2, 1]  # the held record written at close
    assert all(r["values"] == {"loss": 1.0, "extra": 1.0} for r in recs)
    with pytest.raises(ConfigError, match="closed"):
        mon.attach(_Adapter())


# -- NaN loss --------------------------------------------------------------------------------


def test_nan_loss_raise(tmp_path):
    with Monitor(tmp_path, "r", on_nan="raise", heartbeat=0) as mon:
        mon.log(0, loss=2.0)
        with pytest.raises(TrainingDivergedError, match=r"loss is nan at step 1.*Lower the learning rate"):
            mon.log(1, loss=float("nan"))
    run = Run(tmp_path / "r")
    run.update()
    assert [(f.rule, f.step) for f in run.findings] == [("nan_loss", 1)]


def test_nan_loss_warns_once(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="monitor"):
        with Monitor(tmp_path, "r", heartbeat=0) as mon:
            for step in range(5):
                mon.log(step, loss=float("inf"))
    assert sum("training diverged" in r.getMessage() for r in caplog.records) == 1
    run = Run(tmp_path / "r")
    run.update()
    assert len(run.findings) == 1 and run.scalar("loss").values.tolist() == [float("inf")] * 5


# -- lifecycle -------------------------------------------------------------------------------


def test_context_manager_finished(tmp_path):
    with Monitor(tmp_path, "r", heartbeat=0) as mon:
        mon.log(0, loss=1.0)
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["error"] is None and meta["ended"] >= meta["created"]
    mon.close()  # twice is fine
    mon.log(1, loss=1.0)  # after close: ignored
    assert len((tmp_path / "r" / "scalars.r0.jsonl").read_text().splitlines()) == 1


def test_context_manager_crashed_reraises(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with Monitor(tmp_path, "r", heartbeat=0) as mon:
            mon.log(0, loss=1.0)
            1 / 0
    run = Run(tmp_path / "r")
    run.update()
    assert run.status() == "crashed"
    assert run.meta.error == "ZeroDivisionError: division by zero"


def test_ctrl_c_inside_the_with_block_marks_the_run_stopped_not_crashed(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with Monitor(tmp_path, "r", heartbeat=0) as mon:
            mon.log(0, loss=1.0)
            raise KeyboardInterrupt
    run = Run(tmp_path / "r")
    run.update()
    assert run.status() == "stopped" and run.meta.error is None
    assert json.loads((tmp_path / "r" / "meta.json").read_text())["stop_reason"] == "interrupted"


@pytest.mark.parametrize("with_block", [True, False])
def test_a_training_script_stopped_with_ctrl_c_is_stopped_not_crashed(tmp_path, with_block):
    import signal

    loop = '''
            for step in range(10**6):
                mon.log(step, loss=1.0)
                if step == 0:
                    print("ready", flush=True)
                time.sleep(0.01)'''
    body = (f"with Monitor('logs', 'r', heartbeat=0) as mon:{textwrap.indent(textwrap.dedent(loop), '    ')}"
            if with_block else f"mon = Monitor('logs', 'r', heartbeat=0){textwrap.dedent(loop)}")
    code = "import time\nfrom monitor import Monitor\n" + body + "\n"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    meta = json.loads((tmp_path / "logs" / "r" / "meta.json").read_text())
    assert meta["status"] == "stopped" and meta["stop_reason"] == "interrupted" and meta["error"] is None
    run = Run(tmp_path / "logs" / "r")
    run.update()
    assert run.status() == "stopped" and len(run.scalar("loss")) >= 1


def test_uncaught_exception_in_a_script_marks_crashed(tmp_path):
    res = _py("""
        from monitor import Monitor
        mon = Monitor("logs", "r", heartbeat=0)
        mon.log(0, loss=1.0)
        raise RuntimeError("boom at step 0")
    """, tmp_path)
    assert res.returncode == 1 and "boom at step 0" in res.stderr
    meta = json.loads((tmp_path / "logs" / "r" / "meta.json").read_text())
    assert meta["status"] == "crashed" and meta["error"] == "RuntimeError: boom at step 0"


def test_normal_exit_without_close_marks_finished(tmp_path):
    res = _py("""
        from monitor import Monitor
        mon = Monitor("logs", "r")
        for step in range(3):
            mon.log(step, loss=1.0)
    """, tmp_path)
    assert res.returncode == 0, res.stderr
    run = Run(tmp_path / "logs" / "r")
    run.update()
    assert run.meta.status == "finished" and run.status() == "finished"
    assert run.scalar("loss").steps.tolist() == [0, 1, 2]


def test_dropped_monitor_is_still_marked_finished_at_exit(tmp_path):
    """Regression: a Monitor dropped without close() (heartbeat off) was garbage-collected and left "running"."""
    res = _py("""
        import gc
        from monitor import Monitor
        def train():
            mon = Monitor("logs", "r", heartbeat=0)
            mon.log(0, loss=1.0)
        train()
        gc.collect()
    """, tmp_path)
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "logs" / "r" / "meta.json").read_text())
    assert meta["status"] == "finished"


# -- I/O failure -----------------------------------------------------------------------------


def test_io_error_warns_once_and_training_continues(tmp_path):
    mon = Monitor(tmp_path, "r", every=1, heartbeat=0)
    mon.activation(0, "fc1", np.ones((4, 3)), kind="relu")
    mon.flush()  # step 0's statistics are on disk
    # The scalars file does not exist yet: point it at a device that is always full.
    os.symlink("/dev/full", mon.run_dir / "scalars.r0.jsonl")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = 0
        for step in range(1, 20):
            mon.activation(step, "fc1", np.ones((4, 3)), kind="relu")
            mon.log(step, loss=1.0 / step)
            done += 1
        mon.close()
    ours = [w for w in caught if issubclass(w.category, MonitoringWarning)]
    assert len(ours) == 1 and len(caught) == 1
    assert "stopped monitoring" in str(ours[0].message) and "Training continues" in str(ours[0].message)
    assert done == 19 and mon.failed
    run = Run(tmp_path / "r")
    run.update()
    # Step 1's statistics went out before its scalars line failed; nothing after; all intact.
    assert run.acts.step_array().tolist() == [0, 1]
    assert run.all_problems() == []


# -- imports ---------------------------------------------------------------------------------


def test_import_without_torch(tmp_path):
    res = _py("""
        import sys
        sys.modules["torch"] = None  # any "import torch" now fails
        import monitor, core
        from monitor import Monitor
        with Monitor("logs", "r", heartbeat=0) as mon:
            mon.activation(0, "a", [[1.0, -1.0]], kind="relu")
            mon.log(0, loss=1.0)
        print("ok")
    """, tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_import_direction(tmp_path):
    res = _py("""
        import sys
        import core
        after_core = sorted(m for m in sys.modules if m.split(".")[0] in ("monitor", "dashboard", "torch"))
        import monitor
        after_monitor = sorted(m for m in sys.modules if m.split(".")[0] in ("dashboard", "torch", "dash"))
        print(after_core, after_monitor)
    """, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[] []"


def test_hparams_of_any_type_are_stored(tmp_path):
    """Regression: a hyperparameter dict with an int key used to stop monitoring at the first meta.json write."""
    hp = {1: "one", "path": Path("/data"), "dtype": np.dtype("float32"), "arr": np.arange(3), "np": np.float32(0.5)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitoringWarning)
        with Monitor(tmp_path, "r", hparams=hp, heartbeat=0) as mon:
            mon.log(0, loss=1.0)
    assert not mon.failed
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["hparams"] == {"1": "one", "path": "/data", "dtype": "float32", "arr": [0, 1, 2], "np": 0.5}


def test_a_value_that_is_not_a_number_is_warned_about_once_and_counted_at_close(tmp_path, caplog):
    # A placeholder left in the training loop (``val_acc=...``) would repeat its warning at every step.
    with caplog.at_level(logging.WARNING, logger="monitor._monitor"):
        with Monitor(tmp_path, "r", heartbeat=0) as mon:
            for step in range(5):
                mon.log(step, loss=1.0, val_acc=..., note="text\x1b[31m")
    said = [r.getMessage() for r in caplog.records]
    assert sum("'val_acc'=Ellipsis is not a number" in m for m in said) == 1
    assert sum("is not a number" in m for m in said) == 2  # once per key
    closing = [m for m in said if "skipped as not numbers" in m]
    assert len(closing) == 1 and "'note' 5 times" in closing[0] and "'val_acc' 5 times" in closing[0]
    assert "\x1b" not in "".join(said)  # the key is shown escaped
    run = Run(tmp_path / "r")
    run.update()
    assert len(run.scalar("loss")) == 5 and "val_acc" not in run.scalar_names()
