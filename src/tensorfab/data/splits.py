"""The one splitter: seeded (stratified) index splits into kept and held-out rows; row limits.

Every data format splits through :func:`split_rows` (images through its tensor form
:func:`stratified_split`). Three algorithms stay selectable so that no existing split
changes: "per-class" (images: a seeded permutation per class, held counts by largest
remainder), "sklearn" (text: scikit-learn's stratified shuffle split, as before) and
"unstratified" (CoNLL sentences, which have no single label: a seeded sample, file order kept).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Hashable, Sequence
from typing import Literal

import torch

from tensorfab.data.types import ImageSplits
from tensorfab.errors import TensorfabError

Algorithm = Literal["per-class", "sklearn", "unstratified"]


def split_rows(
    labels: Sequence[Hashable],
    held: float | int,
    seed: int,
    *,
    algorithm: Algorithm = "per-class",
    what: str = "split",
) -> tuple[list[int], list[int]]:
    """Row indices of ``labels`` split into (keep, held); deterministic for a seed.

    ``held`` is a fraction, or for "sklearn" also a count. "per-class" and "sklearn" hold
    out that share of every class and return both parts shuffled; "sklearn" raises
    scikit-learn's ValueError for a class too small to split. "unstratified" ignores the
    labels, holds ``round(n * held)`` rows (at least one, never all) and keeps file order.
    ``what`` names the fraction in errors ("eval" fraction).
    """
    if (algorithm != "sklearn" or isinstance(held, float)) and not 0.0 < held < 1.0:
        raise TensorfabError(f"{what} fraction must be between 0 and 1, got {held}")
    if algorithm == "sklearn":
        return _sklearn_rows(labels, held, seed)
    if algorithm == "unstratified":
        return _unstratified_rows(len(labels), float(held), seed)
    codes = {label: code for code, label in enumerate(dict.fromkeys(labels))}
    keep, held_rows = stratified_split(torch.tensor([codes[x] for x in labels]), held, seed)
    return keep.tolist(), held_rows.tolist()


def _sklearn_rows(
    labels: Sequence[Hashable], held: float | int, seed: int
) -> tuple[list[int], list[int]]:
    """scikit-learn's ``train_test_split`` on the row indices, stratified by ``labels``."""
    from sklearn.model_selection import train_test_split

    keep, held_rows = train_test_split(
        list(range(len(labels))), test_size=held, random_state=seed, stratify=list(labels)
    )
    return list(keep), list(held_rows)


def _unstratified_rows(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded sample of ``round(n * fraction)`` rows (at least one, never all), in row order."""
    n_held = min(max(round(n * fraction), 1), n - 1)
    held = set(random.Random(seed).sample(range(n), n_held))
    return [i for i in range(n) if i not in held], sorted(held)


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split row indices into (keep, held), ``fraction`` of each class held out ("per-class").

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

    Records the limits, the resulting sizes and the sizes before the cut in ``split``.
    """
    train, test = splits.train, splits.test
    split = dict(splits.split)
    if limit_train is not None:
        split["limit_train"], split["train_full_size"] = limit_train, len(train)
        train = train.subset(torch.arange(min(limit_train, len(train))))
    if limit_test is not None:
        split["limit_test"], split["test_full_size"] = limit_test, len(test)
        test = test.subset(torch.arange(min(limit_test, len(test))))
    split["train_size"], split["test_size"] = len(train), len(test)
    return dataclasses.replace(splits, train=train, test=test, split=split)
