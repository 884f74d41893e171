"""Token classification (NER) on a transformer encoder: IOB2 tags per word, entity F1.

Words are split into sub-tokens; only each word's first sub-token carries its label (the
others are ignored by the loss and the scores). People's texts are split into words on
whitespace (CoNLL's tokenization) and answered with tags and entities with character spans.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tensorfab.data.text_types import TextSplits, TokenExample
from tensorfab.metrics import entity_scores, token_scores
from tensorfab.tasks.alignment import IGNORE, align_labels, first_subtokens
from tensorfab.tasks.base import Batch, Workload
from tensorfab.tasks.encoder_task import EncoderTask, prepare_text, rebuild, truncate
from tensorfab.tasks.prediction import decode_entities, word_spans
from tensorfab.tasks.registry import TASKS
from tensorfab.tasks.robustness import char_noise


@dataclass
class TokenClassification(EncoderTask):
    name: str = "token-classification"
    metric_names: tuple[str, ...] = (
        "f1",
        "precision",
        "recall",
        "macro_f1",
        "token_accuracy",
        "loss",
    )
    head = "token"
    data_format = "conll"
    cut_unit = "words"
    example_unit = "sentences"

    def encode(self, examples: list[Any]) -> tuple[list[list[int]], list[list[int]], int]:
        """Sentences -> sub-token ids, aligned labels, and how many words truncation cut."""
        index = {t: i for i, t in enumerate(self.classes)}
        enc = self.tok()([e.words for e in examples], is_split_into_words=True)
        all_ids, all_labels, cut = [], [], 0
        for i, ex in enumerate(examples):
            ids, wids = truncate(enc["input_ids"][i], enc.word_ids(i), self.max_length)
            all_ids.append(ids)
            all_labels.append(align_labels(wids, [index[t] for t in ex.tags]))
            cut += len(ex.words) - len(first_subtokens(wids))
        return all_ids, all_labels, cut

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if len(batch) == 5:  # packed rows: attention stays within each sequence
            segments = batch[2]  # [B, T], 0 = padding (which attends to padding only)
            within = (segments[:, :, None] == segments[:, None, :])[:, None]  # [B, 1, T, T]
            return model(input_ids=batch[1], attention_mask=within, position_ids=batch[4]).logits
        return model(input_ids=batch[1], attention_mask=batch[2]).logits  # [B, T, C]

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        flat = logits.float().flatten(0, 1)
        return nn.functional.cross_entropy(flat, batch[3].flatten(), ignore_index=IGNORE)

    def eval_step(self, logits: torch.Tensor, batch: Batch) -> Any:
        preds, labels, index = logits.argmax(-1).cpu(), batch[3].cpu(), batch[0].cpu()
        keep = labels != IGNORE  # exactly the first sub-token of every (kept) word
        return [
            (int(index[r]), labels[r][keep[r]].tolist(), preds[r][keep[r]].tolist())
            for r in range(len(index))
        ]

    def eval_scores(self, outputs: list[Any]) -> dict[str, Any]:
        rows = sorted((row for batch in outputs for row in batch), key=lambda r: r[0])
        true = [[self.classes[i] for i in t] for _, t, _ in rows]
        pred = [[self.classes[i] for i in p] for _, _, p in rows]
        ent = entity_scores(true, pred)
        tok = token_scores(true, pred, self.classes)
        return {
            "f1": ent["f1"],
            "precision": ent["precision"],
            "recall": ent["recall"],
            "macro_f1": ent["macro_f1"],
            "token_accuracy": tok["accuracy"],
            "entity": ent,
            "token": tok,
        }

    def logits_shape(self) -> tuple[int, ...]:
        return (-1, len(self.classes))

    def noisy(self, example: TokenExample, rate: float, rng: random.Random) -> TokenExample:
        """Noise within each word (an emptied word keeps its text), so tags stay aligned."""
        words = [char_noise(w, rate, rng) or w for w in example.words]
        return dataclasses.replace(example, words=words)

    def placeholder(self, text: str) -> TokenExample:
        """Whitespace words; "O" labels only mark each word's first sub-token."""
        words = text.split()
        return TokenExample(words, ["O"] * len(words))

    def text_row(self, text: str, probs: np.ndarray, keep: np.ndarray) -> dict[str, Any]:
        spans = word_spans(text)
        words = probs[keep]  # [words, C]
        best = words.argmax(-1)
        tags = [self.classes[j] for j in best.tolist()]
        tags += ["O"] * (len(spans) - len(tags))  # words cut by truncation
        scores = words[np.arange(len(best)), best].tolist() + [0.0] * (len(spans) - len(best))
        return {"text": text, "tags": tags, "entities": decode_entities(text, spans, tags, scores)}


def _prepare(splits: TextSplits, **options: Any) -> Workload:
    return prepare_text(TokenClassification, splits, **options)


@TASKS.register("token-classification", prepare=_prepare)
def build_token_classification(
    classes: list[str],
    max_length: int = 512,
    package_dir: str | None = None,
    encoder: str | None = None,
    input_spec: dict[str, Any] | None = None,
) -> TokenClassification:
    del input_spec  # the tokenizer and max_length say it all
    return rebuild(TokenClassification, classes, max_length, package_dir, encoder)
