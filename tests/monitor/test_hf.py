"""The Hugging Face callback on real ``Trainer.train`` runs of a tiny BERT built from a config
(nothing downloaded; token ids the test makes): the run folder, silent diagnoses on the
healthy model and planted problems found, training unchanged by the callback, gradient
accumulation with bf16 and clipping, and two processes under torchrun."""

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

ROOT = Path(__file__).resolve().parents[2]


ex = load_example("hf_text_classifier")
_read = read_clean


def _findings_of_a_healthy_run(run_dir: Path) -> list:
    """Every finding of the run (the attention's query/key projections, whose gradients are
    1e-5..1e-4 of the classifier's while the softmax is near uniform, are not judged by
    ``vanishing_gradients``)."""
    return diagnose(run_dir)


def test_train_records_every_step_eval_metrics_and_hparams_and_check_is_silent(tmp_path):
    res = ex.train(tmp_path, "bert", epochs=3)
    run = _read(res["run_dir"])
    meta = json.loads((res["run_dir"] / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["framework"] == "transformers"
    assert meta["num_classes"] == 2  # config.num_labels of a sequence classifier
    hp = meta["hparams"]
    assert hp["learning_rate"] == 1e-3 and hp["gradient_accumulation_steps"] == 1 and hp["model_type"] == "bert"
    steps = res["trainer"].state.global_step
    assert steps == 48
    loss = run.scalar("loss")
    assert loss.steps.tolist() == list(range(steps))  # every step, not only every logging_steps
    assert abs(loss.values[0] - 0.693) < 0.05  # log(2) for a fresh 2-class model
    acc = run.scalar("eval_accuracy")
    assert acc.steps.tolist() == [15, 31, 47] and acc.values[-1] > 0.9
    assert len(run.scalar("eval_loss")) == 3
    assert run.scalar("grad_norm").steps.tolist() == [9, 19, 29, 39]  # the Trainer's logging_steps=10
    lr = run.scalar("lr")
    assert lr.values[0] == 1e-3 and lr.values[-1] < 1e-4  # the linear schedule, as the optimizer used it
    assert "bert.encoder.layer.0.intermediate.intermediate_act_fn" in run.acts.names
    assert run.acts.step_array().tolist() == [0, 10, 20, 30, 40]
    assert len(run.input_since(0)["step"]) == 0  # token ids and the Trainer's 0-d num_items_in_batch: no input
    assert _findings_of_a_healthy_run(res["run_dir"]) == []


def test_training_is_identical_with_and_without_the_callback(tmp_path):
    plain = ex.train(None, max_steps=8, out_dir=tmp_path / "out")["model"].state_dict()
    watched = ex.train(tmp_path, max_steps=8)["model"].state_dict()
    assert plain.keys() == watched.keys()
    for k in plain:
        assert torch.equal(plain[k], watched[k]), k


@pytest.mark.parametrize("planted, epochs, rules, layer", [
    # AdamW at lr=1000 blows the loss up 2,000x at step 1 (loss_explosion) and may reach NaN (nan_loss).
    ({"lr": 1000.0}, 1, ("loss_explosion", "nan_loss"), None),
    ({"plant": "dead"}, 2, ("dead_relu",), "bert.encoder.layer.0.intermediate.intermediate_act_fn"),
])
def test_check_finds_the_planted_problem(tmp_path, planted, epochs, rules, layer):
    res = ex.train(tmp_path, epochs=epochs, **planted)
    found = [f for f in diagnose(res["run_dir"]) if f.rule in rules]
    assert found and (layer is None or layer in found[0].layers)


def test_accumulation_bf16_and_clipping_record_optimizer_steps_and_the_pre_clip_norm(tmp_path):
    res = ex.train(tmp_path, epochs=3, accumulate=2, bf16=True, max_grad_norm=0.01)
    run = _read(res["run_dir"])
    assert res["trainer"].state.global_step == 24
    assert run.scalar("loss").steps.tolist() == list(range(24))
    assert run.acts.step_array().tolist() == [0, 10, 20]
    gn = run.scalar("grad_norm")
    assert gn.steps.tolist() == [9, 19] and (gn.values > 0.01).all()  # before max_grad_norm clipped it
    hp = json.loads((res["run_dir"] / "meta.json").read_text())["hparams"]
    assert hp["bf16"] is True and hp["max_grad_norm"] == 0.01 and hp["gradient_accumulation_steps"] == 2


def test_an_exception_inside_train_marks_the_run_crashed_when_the_process_ends(tmp_path):
    code = f"""
import sys; sys.path.insert(0, {str(ROOT / 'examples')!r})
import hf_text_classifier as ex
from transformers import TrainerCallback
class Boom(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 3:
            raise ValueError("boom")
try:
    ex.train({str(tmp_path)!r}, "boom", epochs=1, extra_callbacks=(Boom(),))
except ValueError:
    pass  # caught: the process then ends normally
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((tmp_path / "boom" / "meta.json").read_text())
    assert meta["status"] == "crashed" and "inside Trainer.train()" in meta["error"]


def test_two_processes_under_torchrun_write_one_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "examples" / "hf_text_classifier.py"), "--logdir", str(tmp_path),
                           "--name", "ddp", "--epochs", "1"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "ddp"
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["world_size"] == 2 and meta["hparams"]["world_size"] == 2
    for rank in (0, 1):
        run = Run(run_dir, stats_rank=rank)
        run.update()
        assert run.scalar("loss", rank).steps.tolist() == list(range(8))  # 256 examples per rank, batch 32
        assert run.acts.step_array().tolist() == [0]
    assert _findings_of_a_healthy_run(run_dir) == []
