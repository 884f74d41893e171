"""Token classification trained by the Hugging Face ``Trainer`` itself, as its tutorial does.

``Trainer`` + ``TrainingArguments`` (fp32, the given batch size, lr 5e-5, the defaults
otherwise: AdamW, linear decay, clipping at 1.0), ``DataCollatorForTokenClassification``
(random batches, each padded to its longest sentence), the features of ``ner.tokenize_and_align``.
Nothing is tuned: this is what a user who follows the tutorial runs. Needs ``accelerate``
(the ``bench`` extra).

The meter sees the steps through a callback: each ``on_step_begin`` starts a step with the
oldest batch the collator made (the dataloader may fetch one batch ahead), and the last
``on_step_end`` closes the last step, so Trainer's own end-of-training work is not timed.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import sys
import tempfile
from typing import Any

import torch
from torch import nn

from tensorfab.bench.baselines.ner import LEARNING_RATE, FeatureDataset

SETTINGS = {
    "loop": "transformers.Trainer + TrainingArguments (defaults but these)",
    "data": "DataCollatorForTokenClassification, random batches padded per batch",
    "precision": "fp32",
    "optimizer": "Trainer's default: AdamW lr 5e-5, linear decay, clip 1.0",
}


def missing() -> str | None:
    """Why the Trainer cannot run here (``accelerate`` absent), or None."""
    if importlib.util.find_spec("accelerate") is None:
        return "accelerate is not installed: pip install 'tensorfab[bench]'"
    return None


class _MeteredCollator:
    """The tutorial's collator; each batch it makes waits in a queue for its step."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.made: collections.deque[Any] = collections.deque()

    def __call__(self, features: list[dict[str, list[int]]]) -> Any:
        batch = self.inner(features)
        self.made.append(batch)
        return batch


def _callback(collator: _MeteredCollator, meter: Any) -> Any:
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            meter.begin_step(collator.made.popleft())

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step >= args.max_steps:
                meter.stop()

    return StepTimes()


def train_with_trainer(
    model: nn.Module,
    features: list[dict[str, list[int]]],
    tokenizer: Any,
    batch_size: int,
    device: torch.device,
    meter: Any,
) -> dict[str, Any]:
    """``meter.total`` optimizer steps of ``Trainer.train()``; returns the settings used."""
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    collator = _MeteredCollator(DataCollatorForTokenClassification(tokenizer))
    with tempfile.TemporaryDirectory(prefix="tensorfab-hf-trainer-") as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=batch_size,
            learning_rate=LEARNING_RATE,
            max_steps=meter.total,
            use_cpu=device.type == "cpu",
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=FeatureDataset(features),
            data_collator=collator,
            callbacks=[_callback(collator, meter)],
        )
        with contextlib.redirect_stdout(sys.stderr):  # its summary line: stdout is --json's
            trainer.train()
    return {**SETTINGS, "transformers_args": {"learning_rate": LEARNING_RATE, "fp32": True}}


def _conll_features(plan: Any) -> tuple[Any, list[str], Any, Any]:
    """The tokenizer, tag names and tokenized train/valid sentences (the tutorial's map)."""
    from tensorfab.bench.baselines.ner import load_tokenizer, tokenize_and_align
    from tensorfab.data import create_dataset

    folder = plan.data_dir / "conll2003"
    splits = create_dataset(
        "conll",
        path=str(folder / "train.txt"),
        eval_path=str(folder / "valid.txt"),
        limit_train=plan.limit_train,
        limit_eval=plan.limit_eval,
        limit_test=8,
    )
    labels, tokenizer = list(splits.labels), load_tokenizer()
    index = {t: i for i, t in enumerate(labels)}

    def features(examples: Any) -> list[dict[str, list[int]]]:
        tags = [[index[t] for t in ex.tags] for ex in examples]
        return tokenize_and_align(tokenizer, [ex.words for ex in examples], tags)

    return tokenizer, labels, features(splits.train), features(splits.eval)


def _compute_metrics(labels: list[str]) -> Any:
    """The tutorial's ``compute_metrics``: seqeval entity F1 on first sub-tokens."""
    from seqeval.metrics import f1_score

    def compute(prediction: Any) -> dict[str, float]:
        predicted = prediction.predictions.argmax(-1)
        truth, guess = [], []
        for p_row, l_row in zip(predicted, prediction.label_ids, strict=True):
            kept = [(p, t) for p, t in zip(p_row, l_row, strict=True) if t != -100]
            truth.append([labels[t] for _, t in kept])
            guess.append([labels[p] for p, _ in kept])
        return {"f1": float(f1_score(truth, guess))}

    return compute


def train_to_f1(plan: Any, stamp: Any) -> list[dict[str, Any]]:
    """``Trainer.train()`` evaluating the valid set ``plan.evals_per_epoch`` times an epoch;
    a callback stamps each evaluation and stops training at ``plan.target``."""
    from transformers import (
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from tensorfab.bench.baselines import minilm_ner

    tokenizer, labels, train, valid = _conll_features(plan)
    per_epoch = -(-len(train) // 16)
    evals: list[dict[str, Any]] = []

    class StopAtTarget(TrainerCallback):  # type: ignore[misc]
        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            evals.append(stamp(state.epoch, kw["metrics"]["eval_f1"]))
            control.should_training_stop = evals[-1]["f1"] >= plan.target

    with tempfile.TemporaryDirectory(prefix="tensorfab-hf-tta-") as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=16,
            learning_rate=LEARNING_RATE,
            num_train_epochs=plan.max_epochs,
            eval_strategy="steps",
            eval_steps=max(1, -(-per_epoch // plan.evals_per_epoch)),
            use_cpu=True,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(
            model=minilm_ner.build_model(len(labels)),
            args=args,
            train_dataset=FeatureDataset(train),
            eval_dataset=FeatureDataset(valid),
            data_collator=DataCollatorForTokenClassification(tokenizer),
            compute_metrics=_compute_metrics(labels),
            callbacks=[StopAtTarget()],
        )
        with contextlib.redirect_stdout(sys.stderr):
            trainer.train()
    return evals
