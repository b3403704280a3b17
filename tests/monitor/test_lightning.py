"""The Lightning callback on real ``Trainer.fit`` runs (CPU): what lands in the run folder,
that the diagnoses are silent on a healthy CNN and find planted problems, that training is
unchanged by the callback, and the DDP, bf16-mixed, accumulation and several-optimizer cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import Run, diagnose
from tests._examples import load_example, read_clean

import lightning.pytorch as L  # noqa: E402  (installed by the test extra)

ROOT = Path(__file__).resolve().parents[2]


ex = load_example("lightning_digits")
_read = read_clean


def test_fit_records_every_step_under_the_names_the_rules_read_and_check_is_silent(tmp_path):
    res = ex.train(tmp_path, "cnn", epochs=2)
    run = _read(res["run_dir"])
    meta = json.loads((res["run_dir"] / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["framework"] == "lightning" and meta["optimizers"] == ["SGD"]
    assert meta["hparams"]["lr"] == 0.05 and meta["hparams"]["momentum"] == 0.9  # save_hyperparameters()
    assert meta["num_classes"] == 10 and meta["hparams"]["max_epochs"] == 2 and "stop_reason" not in meta
    assert [lay["name"] for lay in meta["layers"]] == ["conv1", "relu1", "fc1", "relu2", "fc2"]
    steps = res["trainer"].global_step
    assert run.scalar("loss").steps.tolist() == list(range(steps))
    assert len(run.scalar("train_acc")) == steps
    val = run.scalar("val_acc")
    assert val.steps.tolist() == [steps // 2 - 1, steps - 1] and val.values[-1] > 0.8
    assert len(run.scalar("val_loss")) == 2
    lr = run.scalar("lr").values  # StepLR every 20 steps, as the optimizer used it
    assert lr[0] == 0.05 and lr[20] == 0.025
    assert run.acts.step_array().tolist() == list(range(0, steps, 10))
    assert diagnose(res["run_dir"]) == []


def test_training_is_identical_with_and_without_the_callback(tmp_path):
    plain = ex.train(None, max_steps=12)["model"].state_dict()
    watched = ex.train(tmp_path, max_steps=12)["model"].state_dict()
    assert plain.keys() == watched.keys()
    for k in plain:
        assert torch.equal(plain[k], watched[k]), k


@pytest.mark.parametrize("planted, rule, layers", [
    ({"lr": 1000.0}, "nan_loss", []),
    ({"plant": "dead"}, "dead_relu", ["relu1", "relu2"]),  # relu2 sees only fc1's biases: dead too
])
def test_check_finds_the_planted_problem(tmp_path, planted, rule, layers):
    res = ex.train(tmp_path, max_steps=35, **planted)
    found = [f for f in diagnose(res["run_dir"]) if f.rule == rule]
    # dead_relu: relu1 every unit dead (an error), relu2 half of them (a warning): two findings
    assert found and sorted(n for f in found for n in f.layers) == layers


def test_bf16_mixed_with_gradient_accumulation_counts_optimizer_steps(tmp_path):
    res = ex.train(tmp_path, epochs=1, accumulate=2, precision="bf16-mixed")
    run = _read(res["run_dir"])
    steps = res["trainer"].global_step
    assert steps == 11  # 22 batches, 2 per optimizer step
    assert run.scalar("loss").steps.tolist() == list(range(steps))
    assert run.acts.step_array().tolist() == [0, 10]
    assert run.params.step_array().tolist() == [0, 10]
    assert (run.params.field("upd_norm") > 0).all()
    assert json.loads((res["run_dir"] / "meta.json").read_text())["hparams"]["precision"] == "bf16-mixed"
    assert diagnose(res["run_dir"]) == []


class TwoOptimizers(L.LightningModule):
    """Manual optimization with one optimizer per half of the network; ``fail_at`` raises ``error`` at that batch."""

    def __init__(self, fail_at: int = -1, error: type[BaseException] = RuntimeError, through_self: bool = True) -> None:
        super().__init__()
        self.error, self.through_self = error, through_self
        self.automatic_optimization = False
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, 2)
        self.fail_at = fail_at

    def forward(self, x):
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise self.error("<b>broken</b> batch")
        x, y = batch
        out = self(x) if self.through_self else self.head(self.body(x))
        loss = torch.nn.functional.cross_entropy(out, y)
        o1, o2 = self.optimizers()
        o1.zero_grad(), o2.zero_grad()
        self.manual_backward(loss)
        o1.step(), o2.step()
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return [torch.optim.SGD(self.body.parameters(), lr=0.1), torch.optim.Adam(self.head.parameters(), lr=0.01)]


class StopAt(L.Callback):
    """Stops the Trainer after batch ``batch`` (as EarlyStopping does, through ``should_stop``)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.batch:
            trainer.should_stop = True


def _fit_two(tmp_path, callbacks=(), **kw):
    from monitor.lightning import BabysitterCallback

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)
    cb = BabysitterCallback(tmp_path, "two", every=5)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, callbacks=[cb, *callbacks], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(TwoOptimizers(**kw), loader)
    return cb


def test_every_optimizer_learning_rate_is_recorded(tmp_path):
    cb = _fit_two(tmp_path)
    run = _read(cb.run_dir)
    assert run.scalar("loss").steps.tolist() == list(range(8))
    assert run.scalar("lr").values.tolist() == [0.1] * 8 and run.scalar("lr/opt1").values.tolist() == [0.01] * 8
    meta = json.loads((cb.run_dir / "meta.json").read_text())
    assert meta["optimizers"] == ["SGD", "Adam"]
    assert set(run.params.names) == {"body.0.weight", "body.0.bias", "head.weight", "head.bias"}


def test_an_exception_in_training_marks_the_run_crashed(tmp_path):
    with pytest.raises(RuntimeError, match="broken"):
        _fit_two(tmp_path, fail_at=6)
    meta = json.loads((tmp_path / "two" / "meta.json").read_text())
    assert meta["status"] == "crashed" and meta["error"] == "RuntimeError: <b>broken</b> batch"
    assert _read(tmp_path / "two").scalar("loss").steps.tolist() == list(range(6))


def test_a_stopped_trainer_is_finished_with_its_reason(tmp_path):
    cb = _fit_two(tmp_path, callbacks=[StopAt(2)])
    meta = json.loads((cb.run_dir / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["stop_reason"] == "early_stopping"
    assert _read(cb.run_dir).scalar("loss").steps.tolist() == [0, 1, 2]


def test_ctrl_c_marks_the_run_stopped_as_interrupted(tmp_path):
    import signal

    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown ends with sys.exit(1)
            _fit_two(tmp_path, fail_at=4, error=KeyboardInterrupt)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT from then on
    meta = json.loads((tmp_path / "two" / "meta.json").read_text())
    assert meta["status"] == "stopped" and meta["stop_reason"] == "interrupted"
    assert not meta.get("error")  # Ctrl-C is the user's choice, not a crash


def test_a_training_step_that_skips_forward_gets_parameters_and_a_warning(tmp_path, caplog):
    cb = _fit_two(tmp_path, through_self=False)
    run = _read(cb.run_dir)
    assert len(run.acts) == 0 and run.params.step_array().tolist() == [0, 5]
    assert "does not call the LightningModule's forward" in caplog.text


def test_ddp_with_two_processes_writes_every_rank_into_one_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "lightning_digits.py"), "--logdir", str(tmp_path),
                           "--name", "ddp", "--strategy", "ddp", "--devices", "2", "--epochs", "1"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["ddp"]
    run_dir = tmp_path / "ddp"
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["world_size"] == 2 and meta["hparams"]["world_size"] == 2
    for rank in (0, 1):
        run = Run(run_dir, stats_rank=rank)
        run.update()
        assert run.scalar("loss", rank).steps.tolist() == list(range(11))  # 700 examples per rank, batch 64
        assert run.acts.step_array().tolist() == [0, 10]
        assert len(run.scalar("val_acc", rank)) == 1
    check = subprocess.run([sys.executable, "-m", "babysitter", "check", "--json", str(run_dir)],
                           capture_output=True, text=True, timeout=120, env=env)
    assert (check.returncode, json.loads(check.stdout)) == (0, [])
