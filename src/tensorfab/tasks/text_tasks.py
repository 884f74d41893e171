"""Language tasks on transformer encoders: token classification (NER) and text classification.

Both tokenize with the encoder's own (fast) tokenizer, keep sequences unpadded until a
batch is made (dynamic padding, optional length bucketing), truncate to ``max_length`` with
a count of what was cut, and store the tokenizer in the model package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tensorfab.data.sequence_batching import SequenceBatches, resident_bytes, sequences_fit
from tensorfab.data.text_types import TextSplits
from tensorfab.errors import TensorfabError
from tensorfab.metrics import classification_scores, entity_scores, token_scores
from tensorfab.models import model_entry
from tensorfab.models.encoders import load_tokenizer
from tensorfab.tasks.alignment import IGNORE, align_labels, first_subtokens
from tensorfab.tasks.base import Batch, Placement, Workload
from tensorfab.tasks.registry import TASKS

TOKENIZER_DIR = "tokenizer"


def _truncate(ids: list[int], word_ids: list[int | None], max_length: int) -> tuple[list, list]:
    """Keep the first max_length - 1 tokens and the closing special token."""
    if len(ids) <= max_length:
        return ids, word_ids
    return [*ids[: max_length - 1], ids[-1]], [*word_ids[: max_length - 1], None]


@dataclass
class TokenClassification:
    classes: list[str]  # IOB2 tags, "O" first
    tokenizer: Any = field(repr=False)
    max_length: int = 512
    name: str = "token-classification"
    metric_names: tuple[str, ...] = (
        "f1",
        "precision",
        "recall",
        "macro_f1",
        "token_accuracy",
        "loss",
    )

    def encode(self, examples: list[Any]) -> tuple[list[list[int]], list[list[int]], int]:
        """Sentences -> sub-token ids, aligned labels, and how many words truncation cut."""
        index = {t: i for i, t in enumerate(self.classes)}
        enc = self.tokenizer([e.words for e in examples], is_split_into_words=True)
        all_ids, all_labels, cut = [], [], 0
        for i, ex in enumerate(examples):
            ids, wids = _truncate(enc["input_ids"][i], enc.word_ids(i), self.max_length)
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

    def config(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "max_length": self.max_length}


@dataclass
class TextClassification:
    classes: list[str]
    tokenizer: Any = field(repr=False)
    max_length: int = 512
    name: str = "text-classification"
    metric_names: tuple[str, ...] = ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "loss")

    def encode(self, examples: list[Any]) -> tuple[list[list[int]], list[int], int]:
        index = {c: i for i, c in enumerate(self.classes)}
        enc = self.tokenizer([e.text for e in examples])
        ids, cut = [], 0
        for row in enc["input_ids"]:
            cut += len(row) > self.max_length
            ids.append(_truncate(row, [None] * len(row), self.max_length)[0])
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

    def config(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "max_length": self.max_length}


_TASKS = {
    "token-classification": (TokenClassification, "token"),
    "text-classification": (TextClassification, "sequence"),
}


def _encoder(model_name: str) -> str:
    encoder = model_entry(model_name).meta.get("encoder")
    if encoder is None:
        raise TensorfabError(
            f"model.name {model_name!r} is not a text encoder; use minilm-l6, bert-tiny or "
            "hf:<local dir or cached hub id>"
        )
    return encoder


def prepare_text(
    splits: TextSplits, *, task_name: str, model_name: str, max_length: int | None = None, **_: Any
) -> Workload:
    """Tokenize every split once; batches are padded per batch when they are made."""
    cls, head = _TASKS[task_name]
    tokenizer = load_tokenizer(_encoder(model_name))
    limit = max_length or min(int(tokenizer.model_max_length), 512)
    task = cls(list(splits.labels), tokenizer, limit)
    parts = {"train": splits.train, "eval": splits.eval, "test": splits.test}
    encoded = {k: task.encode(v) for k, v in parts.items()}
    notes = [
        f"{k}: truncation to max_length {limit} cut {cut} {'words' if head == 'token' else 'texts'}"
        for k, (_, _, cut) in encoded.items()
        if cut
    ]

    def make_batches(split: str, batch_size: int, shuffle: bool, where: Placement) -> Any:
        ids, labels, _ = encoded[split]
        shard = {"rank": where.rank, "world_size": where.world_size} if shuffle else {}
        nbytes = resident_bytes(ids, per_token_labels=head == "token")
        resident = where.resident == "on" or (
            where.resident == "auto" and sequences_fit(nbytes, where.device)
        )
        # Evaluation order does not matter (scores are gathered by example index), so
        # evaluation batches are always length-sorted: almost no padding is computed.
        return SequenceBatches(
            ids,
            labels,
            batch_size,
            device=where.device,
            shuffle=shuffle,
            pad_id=tokenizer.pad_token_id or 0,
            seed=where.seed,
            bucket=where.bucket or not shuffle,
            pack_tokens=limit if where.pack and shuffle and head == "token" else None,
            resident=resident,
            **shard,
        )

    meta = {
        "labels": list(splits.labels),
        "input": {"kind": "text", "max_length": limit, "tokenizer": TOKENIZER_DIR},
        "preprocessing": {"tokenizer": _encoder(model_name)},
        "task_config": task.config(),
    }
    return Workload(
        task,
        {"num_classes": len(splits.labels), "head": head},
        {k: len(v) for k, v in parts.items()},
        meta,
        make_batches,
        save_assets=lambda d: tokenizer.save_pretrained(str(Path(d) / TOKENIZER_DIR)),
        notes=notes,
    )


def _rebuild(
    task_name: str,
    classes: list[str],
    max_length: int,
    package_dir: str | None,
    encoder: str | None,
) -> Any:
    source = str(Path(package_dir) / TOKENIZER_DIR) if package_dir else encoder
    if source is None:
        raise TensorfabError(f"{task_name}: needs package_dir or encoder to load a tokenizer")
    return _TASKS[task_name][0](list(classes), load_tokenizer(source), max_length)


def _prepare_token(splits: TextSplits, **kw: Any) -> Workload:
    return prepare_text(splits, task_name="token-classification", **kw)


def _prepare_sequence(splits: TextSplits, **kw: Any) -> Workload:
    return prepare_text(splits, task_name="text-classification", **kw)


@TASKS.register("token-classification", prepare=_prepare_token)
def build_token_classification(
    classes: list[str],
    max_length: int = 512,
    package_dir: str | None = None,
    encoder: str | None = None,
) -> TokenClassification:
    return _rebuild("token-classification", classes, max_length, package_dir, encoder)


@TASKS.register("text-classification", prepare=_prepare_sequence)
def build_text_classification(
    classes: list[str],
    max_length: int = 512,
    package_dir: str | None = None,
    encoder: str | None = None,
) -> TextClassification:
    return _rebuild("text-classification", classes, max_length, package_dir, encoder)
