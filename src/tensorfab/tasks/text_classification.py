"""Text classification on a transformer encoder: one label per text, accuracy and F1.

People's texts are answered with the best label, its probability and every class's.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tensorfab.data.text import file_text_format
from tensorfab.data.text_types import TextExample, TextSplits
from tensorfab.metrics import classification_scores
from tensorfab.tasks.base import Batch, Workload
from tensorfab.tasks.encoder_task import EncoderTask, prepare_text, rebuild
from tensorfab.tasks.registry import TASKS
from tensorfab.tasks.robustness import char_noise


@dataclass
class TextClassification(EncoderTask):
    name: str = "text-classification"
    metric_names: tuple[str, ...] = ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "loss")
    head = "sequence"
    data_format = "text"
    cut_unit = "texts"

    def encode(self, examples: list[Any]) -> tuple[list[list[int]], list[int], int]:
        index = {c: i for i, c in enumerate(self.classes)}
        ids, cut = self.encode_texts([e.text for e in examples])
        return ids, [index[e.label] for e in examples], cut

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(input_ids=batch[1], attention_mask=batch[2]).logits  # [B, C]

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.float(), batch[3])

    def eval_step(self, logits: torch.Tensor, batch: Batch) -> Any:
        return batch[3].cpu(), logits.argmax(-1).cpu()

    def eval_scores(self, outputs: list[Any]) -> dict[str, Any]:
        targets = torch.cat([t for t, _ in outputs])
        return classification_scores(targets, torch.cat([p for _, p in outputs]), self.classes)

    def eval_options(self, spec: dict[str, Any], path: Path) -> dict[str, Any]:
        """The user's file has a format of its own: a PhraseBank model scores a CSV too."""
        return {"text_format": file_text_format(path, spec.get("text_format", "auto"))}

    def logits_shape(self) -> tuple[int, ...]:
        return (len(self.classes),)

    def noisy(self, example: TextExample, rate: float, rng: random.Random) -> TextExample:
        return dataclasses.replace(example, text=char_noise(example.text, rate, rng))

    def placeholder(self, text: str) -> TextExample:
        return TextExample(text, self.classes[0])

    def text_row(self, text: str, probs: np.ndarray, keep: np.ndarray) -> dict[str, Any]:
        del keep  # one label per text
        p = probs.tolist()
        top = max(range(len(p)), key=p.__getitem__)
        return {
            "text": text,
            "label": self.classes[top],
            "score": p[top],
            "probabilities": dict(zip(self.classes, p, strict=True)),
        }


def _prepare(splits: TextSplits, **options: Any) -> Workload:
    return prepare_text(TextClassification, splits, **options)


@TASKS.register("text-classification", prepare=_prepare)
def build_text_classification(
    classes: list[str],
    max_length: int = 512,
    package_dir: str | None = None,
    encoder: str | None = None,
    input_spec: dict[str, Any] | None = None,
) -> TextClassification:
    del input_spec  # the tokenizer and max_length say it all
    return rebuild(TextClassification, classes, max_length, package_dir, encoder)
