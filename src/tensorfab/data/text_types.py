"""The plain language dataset types (sentences with tags, texts with labels, their splits).

Also the two things every language format shares: reading a file's characters with errors
that name the line, and keeping only the first N examples of each split.
No tokenization happens here; that is the task layer's job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tensorfab.data.files import read_file_bytes
from tensorfab.spec.text import decode_text


@dataclass(frozen=True)
class TokenExample:
    """One sentence: its words, one tag per word (IOB2 once read), and its document.

    Consecutive sentences with the same ``doc`` are one document (context for each other);
    None: a sentence on its own.
    """

    words: list[str]
    tags: list[str]
    doc: int | None = None

    def __post_init__(self) -> None:
        if len(self.words) != len(self.tags):
            raise ValueError(f"{len(self.words)} words but {len(self.tags)} tags")

    def __len__(self) -> int:
        return len(self.words)


@dataclass(frozen=True)
class TextExample:
    """One text with one class label (kept as a string, e.g. SST-2's "0"/"1")."""

    text: str
    label: str


Example = TokenExample | TextExample


@dataclass(frozen=True)
class TextSplits:
    """A language dataset's train/eval/test parts plus what the model package records."""

    train: list[Example]
    eval: list[Example]
    test: list[Example]
    # the label map, built from the train split only: sorted class names, or for tags
    # "O" first then B-/I- pairs per sorted entity type
    labels: list[str]
    # {"name", "path", "licence", "citation"}; recorded in the model package
    source: dict[str, str] = field(default_factory=dict)
    # how the parts were made, e.g. {"method": "stratified", "fractions": [...], "seed": 0}
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.labels)


def read_text_file(path: str | Path, encoding: str = "utf-8") -> str:
    """A whole text file, decoded; a missing file or a bad byte is one error naming the place."""
    path = Path(path)
    return decode_text(read_file_bytes(path), path, encoding)


def limit_text_splits(
    splits: TextSplits,
    limit_train: int | None = None,
    limit_eval: int | None = None,
    limit_test: int | None = None,
) -> TextSplits:
    """Keep only the first N examples of train, eval and/or test (tests use it for speed).

    The label map stays the one of the full train split. Records the limits, the resulting
    sizes and the sizes before the cut (``eval_full_size``: a report says "400 of 3,250").
    """
    split = dict(splits.split)
    parts = {"train": splits.train, "eval": splits.eval, "test": splits.test}
    for name, limit in (("train", limit_train), ("eval", limit_eval), ("test", limit_test)):
        if limit is not None:
            split[f"limit_{name}"], split[f"{name}_full_size"] = limit, len(parts[name])
            parts[name] = parts[name][: max(int(limit), 0)]
    for name, examples in parts.items():
        split[f"{name}_size"] = len(examples)
    return dataclasses.replace(splits, **parts, split=split)
