"""Seeded, stratified index splits (train/test, train/validation) and row limits."""

from __future__ import annotations

import dataclasses

import torch

from tensorfab.data.types import ImageSplits
from tensorfab.errors import TensorfabError


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split row indices into (keep, held), ``fraction`` of each class held out.

    Deterministic for a seed. Every class with at least two members lands in both parts.
    Both index tensors (int64) come in a seeded shuffled order, so the first rows of
    either part mix the classes (``limit_train`` keeps the first rows).
    """
    if not 0.0 < fraction < 1.0:
        raise TensorfabError(f"split fraction must be between 0 and 1, got {fraction}")
    labels = labels.reshape(-1).cpu()
    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)  # sorted
    members = [torch.nonzero(labels == c).reshape(-1) for c in classes]
    counts = _held_counts([len(m) for m in members], fraction)
    keep, held = [], []
    for rows, n_held in zip(members, counts, strict=True):
        rows = rows[torch.randperm(len(rows), generator=generator)]
        held.append(rows[:n_held])
        keep.append(rows[n_held:])
    return _shuffled(keep, generator), _shuffled(held, generator)


def _held_counts(sizes: list[int], fraction: float) -> list[int]:
    """Per-class held-out counts: largest-remainder rounding of the overall total."""
    ideal = [n * fraction for n in sizes]
    counts = [int(x) for x in ideal]
    missing = round(sum(sizes) * fraction) - sum(counts)
    by_remainder = sorted(range(len(sizes)), key=lambda i: counts[i] - ideal[i])
    for i in by_remainder[: max(missing, 0)]:
        counts[i] += 1
    # a class of two or more always keeps one row and holds one back
    return [min(max(c, 1), n - 1) if n >= 2 else 0 for c, n in zip(counts, sizes, strict=True)]


def _shuffled(parts: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    rows = torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)
    return rows[torch.randperm(len(rows), generator=generator)].to(torch.int64)


def limit_splits(
    splits: ImageSplits, limit_train: int | None = None, limit_test: int | None = None
) -> ImageSplits:
    """Keep only the first N rows of train and/or test (tests use it for speed).

    Records the limits and the resulting sizes in ``split``.
    """
    train, test = splits.train, splits.test
    split = dict(splits.split)
    if limit_train is not None:
        train = train.subset(torch.arange(min(limit_train, len(train))))
        split["limit_train"] = limit_train
    if limit_test is not None:
        test = test.subset(torch.arange(min(limit_test, len(test))))
        split["limit_test"] = limit_test
    split["train_size"], split["test_size"] = len(train), len(test)
    return dataclasses.replace(splits, train=train, test=test, split=split)
