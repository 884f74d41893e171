"""Token classification as the Hugging Face tutorial trains it, written as a plain loop.

The tutorial tokenizes words with ``is_split_into_words=True``, labels the first sub-token
of each word and sets -100 on the others and on special tokens, pads every batch to its own
longest sequence with ``DataCollatorForTokenClassification`` (per-batch padding, not
``padding="max_length"``), and trains with ``Trainer``. ``Trainer`` needs ``accelerate``,
which is not installed here, so this module is the loop ``Trainer`` runs, written out:
a shuffled ``DataLoader`` over a per-sample dataset, fp32 eager mode, ``AdamW`` with
``Trainer``'s defaults (lr 5e-5, weight decay 0), a linear schedule without warm-up,
gradient clipping at norm 1.0 (``max_grad_norm``) and ``model(**batch).loss``.
The models come from ``bert_base_ner`` and ``minilm_ner``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tensorfab.models.encoders import minilm_dir

LEARNING_RATE = 5e-5  # Trainer's default
MAX_GRAD_NORM = 1.0  # Trainer's default

SETTINGS = {
    "data": "per-sample Dataset + DataLoader with DataCollatorForTokenClassification",
    "precision": "fp32",
    "mode": "eager",
    "optimizer": "AdamW lr 5e-5, linear schedule, no warm-up, clip 1.0 (Trainer defaults)",
    "padding": "per batch, to the longest sequence of the batch (the collator's)",
    "loop": "the loop transformers.Trainer runs, written out (accelerate is not installed)",
}


def load_tokenizer() -> Any:
    """minilm's uncased WordPiece tokenizer (the tutorial's ``AutoTokenizer``), local files only."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)


def tokenize_and_align(
    tokenizer: Any, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[int]]
) -> list[dict[str, list[int]]]:
    """The tutorial's ``tokenize_and_align_labels``: a word's label on its first sub-token."""
    encoded = tokenizer(list(map(list, sentences)), truncation=True, is_split_into_words=True)
    features = []
    for i, word_tags in enumerate(tags):
        labels, previous = [], None
        for word in encoded.word_ids(i):
            labels.append(-100 if word is None or word == previous else word_tags[word])
            previous = word
        feature = {key: encoded[key][i] for key in encoded}
        feature["labels"] = labels
        features.append(feature)
    return features


class FeatureDataset(Dataset):
    """Tokenized sentences, one dict of lists per index (what ``datasets.map`` yields)."""

    def __init__(self, features: list[dict[str, list[int]]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.features[i]


def make_loader(
    features: list[dict[str, list[int]]], tokenizer: Any, batch_size: int, shuffle: bool = True
) -> DataLoader:
    from transformers import DataCollatorForTokenClassification

    collator = DataCollatorForTokenClassification(tokenizer)  # pads each batch to its longest
    return DataLoader(
        FeatureDataset(features), batch_size=batch_size, shuffle=shuffle, collate_fn=collator
    )


def make_optimizer(model: nn.Module, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW and the linear decay to zero over ``total_steps`` that Trainer builds."""
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    return optimizer, get_linear_schedule_with_warmup(optimizer, 0, total_steps)


def train_steps(
    model: nn.Module,
    loader: Iterable[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    device: torch.device,
    max_steps: int,
) -> float:
    """Trainer's inner loop, epochs until ``max_steps``; returns the mean loss."""
    model.train()
    total_loss = torch.zeros((), device=device)
    steps = 0
    while steps < max_steps:
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            model.zero_grad()
            total_loss += loss.detach()
            steps += 1
            if steps >= max_steps:
                break
    return float(total_loss.item()) / max(1, steps)


@torch.no_grad()
def predict(model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Tag indices [B, T] of one collated batch, eager fp32, back on the host."""
    model.eval()
    inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    return model(**inputs).logits.argmax(dim=-1).cpu()
