"""A tiny BERT text classifier, built from a config, trained by the Hugging Face ``Trainer``
on generated token ids and recorded with ``BabysitterCallback``.

Nothing is downloaded: the model is ``BertForSequenceClassification`` from a 2-layer,
hidden-size-32 ``BertConfig`` (ReLU feed-forward, so dead units can be judged) and the
data are random token ids whose label is whether the first token is in the lower half of
the vocabulary. One line adds the monitor::

    Trainer(model=model, args=args, ..., callbacks=[BabysitterCallback(logdir="runs")])

Run it (CPU, about 20 s)::

    python examples/hf_text_classifier.py --logdir runs --name hf
    python examples/hf_text_classifier.py --bf16 --accumulate 2 --max-grad-norm 0.5
    torchrun --nproc_per_node 2 examples/hf_text_classifier.py      # two processes, one run folder
    python examples/hf_text_classifier.py --lr 1000                 # diverges: nan_loss
    python examples/hf_text_classifier.py --plant dead              # layer 0's FFN never fires: dead_relu
    babysitter check runs/hf
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VOCAB, SEQ = 64, 16


class TokenDataset(torch.utils.data.Dataset):
    """Random token ids; label 1 when the first token id is below VOCAB / 2."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, VOCAB, (n, SEQ), generator=g)
        self.labels = (self.ids[:, 0] < VOCAB // 2).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": self.labels[i]}


def tiny_bert(plant: str = "none", seed: int = 0) -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=SEQ, hidden_act="relu", num_labels=2)
    model = BertForSequenceClassification(cfg)
    if plant == "dead":
        with torch.no_grad():
            model.bert.encoder.layer[0].intermediate.dense.bias.fill_(-50.0)
    return model


def accuracy(pred: Any) -> dict[str, float]:
    logits, labels = pred.predictions, pred.label_ids
    return {"accuracy": float((np.argmax(logits, -1) == labels).mean())}


def train(logdir: str | Path | None = "runs", name: str | None = None, *, lr: float = 1e-3, plant: str = "none",
          epochs: float = 3, max_steps: int = -1, batch: int = 32, accumulate: int = 1, bf16: bool = False,
          max_grad_norm: float = 1.0, every: int = 10, seed: int = 0, n_train: int = 512,
          out_dir: str | Path | None = None, extra_callbacks: tuple[Any, ...] = (),
          evaluate: bool = True) -> dict[str, Any]:
    """Train the tiny classifier; ``logdir=None`` trains without the monitor. Returns the trainer and the callback."""
    from transformers import Trainer, TrainingArguments

    from monitor.hf import BabysitterCallback

    model = tiny_bert(plant, seed)
    args = TrainingArguments(
        output_dir=str(out_dir or Path(logdir or ".") / ".hf-out"), per_device_train_batch_size=batch,
        per_device_eval_batch_size=128, gradient_accumulation_steps=accumulate, learning_rate=lr,
        num_train_epochs=epochs, max_steps=max_steps, max_grad_norm=max_grad_norm, bf16=bf16, use_cpu=True,
        eval_strategy="epoch" if evaluate else "no", logging_steps=10, save_strategy="no", report_to=[], seed=seed,
        dataloader_num_workers=0, disable_tqdm=True, full_determinism=False, warmup_steps=0,
    )
    cb = BabysitterCallback(logdir=logdir, name=name, every=every) if logdir is not None else None
    trainer = Trainer(model=model, args=args, train_dataset=TokenDataset(n_train, seed + 1),
                      eval_dataset=TokenDataset(256, seed + 2), compute_metrics=accuracy,
                      callbacks=([cb] if cb is not None else []) + list(extra_callbacks))
    trainer.train()
    return {"trainer": trainer, "callback": cb, "model": model, "run_dir": cb.run_dir if cb else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logdir", default="runs")
    ap.add_argument("--name", default=None)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--plant", choices=("none", "dead"), default="none")
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--accumulate", type=int, default=1)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--every", type=int, default=10)
    args = ap.parse_args(argv)
    res = train(args.logdir, args.name, lr=args.lr, plant=args.plant, epochs=args.epochs, max_steps=args.max_steps,
                accumulate=args.accumulate, bf16=args.bf16, max_grad_norm=args.max_grad_norm, every=args.every)
    if res["trainer"].is_world_process_zero():
        print("run written to", res["run_dir"])
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # Under torchrun the Trainer leaves its process group open; torn down by the interpreter's
        # exit instead, gloo's threads can abort the process ("terminate called ..."). The DDP
        # model goes first: left to main()'s return, it held the last reference to the group, whose
        # destructor then ran holding the GIL while a gloo thread, releasing the evaluation's last
        # gather, waited for the GIL with the group's lock held (a hang, seen about once in five
        # runs). The barrier waits without the GIL, so those threads finish their work.
        del res
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
