"""BANKING77-style intent data: a ``text,category`` CSV, one intent per customer query.

Only a train file ships (the official test part is held out), so the validation part is
carved from it by a seeded stratified split; it is both the ``eval`` and the ``test``
split. ``per_class_limit`` keeps N training examples per intent (the few-shot setting of
the BANKING77 paper), chosen after the split so validation stays the same.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tensorfab.data.registry import DATASETS
from tensorfab.data.splits import split_rows
from tensorfab.data.text import read_text_table
from tensorfab.data.text_types import TextExample, TextSplits, limit_text_splits
from tensorfab.errors import TensorfabError

DEFAULT_VAL_FRACTION = 0.1
BANKING77_SOURCE = {
    "licence": "CC BY 4.0",
    "citation": "Casanueva et al. 2020, Efficient Intent Detection with Dual Sentence "
    "Encoders (BANKING77)",
}


def read_banking77(path: str | Path) -> list[TextExample]:
    """The queries of a ``text,category`` CSV (header row required)."""
    return read_text_table(path, "text", "category", "csv")


def keep_per_class(examples: list[TextExample], limit: int | None) -> list[TextExample]:
    """The first ``limit`` examples of each label, in the given order (all when None)."""
    if limit is None:
        return examples
    if limit < 1:
        raise TensorfabError(f"data.per_class_limit must be at least 1, got {limit}")
    seen: Counter[str] = Counter()
    kept = []
    for example in examples:
        seen[example.label] += 1
        if seen[example.label] <= limit:
            kept.append(example)
    return kept


def carve_validation(
    path: str, examples: list[TextExample], fraction: float, seed: int
) -> tuple[list[TextExample], list[TextExample]]:
    """(train, validation) by a seeded stratified split; both parts come shuffled."""
    labels = [e.label for e in examples]
    try:
        keep, held = split_rows(labels, fraction, seed, algorithm="sklearn")
    except ValueError as exc:
        raise TensorfabError(
            f"{path}: cannot carve a stratified validation part ({fraction}) from "
            f"{len(examples)} examples: {exc}"
        ) from None
    return [examples[i] for i in keep], [examples[i] for i in held]


def load_banking77_eval(path: str | Path, **_: Any) -> tuple[list[TextExample], None]:
    """A user's own ``text,category`` file, for ``evaluate --data``."""
    return read_banking77(path), None


@DATASETS.register("banking77", eval_loader=load_banking77_eval, task="intent-classification")
def build_banking77(
    *,
    path: str,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    per_class_limit: int | None = None,
    limit_train: int | None = None,
    limit_eval: int | None = None,
    limit_test: int | None = None,
) -> TextSplits:
    """Train and a carved validation part (``val_fraction``, 0.1 when 0) of one CSV."""
    fraction = val_fraction or DEFAULT_VAL_FRACTION
    train, val = carve_validation(path, read_banking77(path), fraction, split_seed)
    train = keep_per_class(train, per_class_limit)
    labels = sorted({e.label for e in train})
    split = {"method": "stratified", "val_fraction": fraction, "seed": split_seed, "test": "eval"}
    if per_class_limit is not None:
        split["per_class_limit"] = per_class_limit
    source = {"name": "BANKING77", "path": str(path), **BANKING77_SOURCE}
    splits = TextSplits(train, val, val, labels, source, split)
    return limit_text_splits(splits, limit_train, limit_eval, limit_test)
