"""The one splitter: proportions, determinism, every class in both parts, old splits kept."""

from __future__ import annotations

import pytest
import sklearn.model_selection  # noqa: F401  (its first import takes a second: at collection)
import torch

from tensorfab.data import stratified_split
from tensorfab.data.splits import split_rows
from tensorfab.data.text import stratified_three_way
from tensorfab.errors import TensorfabError


def test_proportions_and_partition() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    keep, held = stratified_split(labels, 0.2, seed=0)
    assert keep.dtype == held.dtype == torch.int64
    assert (len(keep), len(held)) == (80, 20)
    assert sorted(torch.cat([keep, held]).tolist()) == list(range(100))
    assert torch.bincount(labels[held]).tolist() == [10, 6, 4]


def test_small_classes_in_both_parts() -> None:
    labels = torch.tensor([0] * 40 + [1, 1] + [2] * 3 + [3])
    keep, held = stratified_split(labels, 0.1, seed=5)
    for c in (0, 1, 2):
        assert bool((labels[keep] == c).any()) and bool((labels[held] == c).any())
    assert 45 in keep.tolist()  # a one-member class stays in the kept part


def test_deterministic_per_seed() -> None:
    labels = torch.arange(200) % 7
    a = stratified_split(labels, 0.25, seed=1)
    b = stratified_split(labels, 0.25, seed=1)
    c = stratified_split(labels, 0.25, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_bad_fraction() -> None:
    with pytest.raises(TensorfabError, match=r"split fraction must be between 0 and 1, got 1.5"):
        stratified_split(torch.zeros(4, dtype=torch.int64), 1.5, seed=0)


# Indices the three splitters gave before they became one (recorded from the code of commit
# 67838f7 with these arguments): the call sites must keep producing exactly these.
LETTERS = list("aabbbcccccaabbcccdd")


def test_image_split_unchanged() -> None:
    keep, held = stratified_split(torch.tensor([ord(c) for c in LETTERS]), 0.3, 7)
    assert keep.tolist() == [15, 10, 14, 5, 1, 6, 12, 18, 4, 7, 0, 2, 8]
    assert held.tolist() == [3, 11, 9, 16, 13, 17]


def test_text_splits_unchanged() -> None:
    assert stratified_three_way(LETTERS, (0.6, 0.2, 0.2), 7) == (
        [1, 6, 3, 18, 4, 17, 7, 10, 2, 8, 9],
        [13, 16, 0, 14],
        [5, 11, 12, 15],
    )
    assert split_rows(LETTERS, 5, 7, algorithm="sklearn") == (
        [0, 16, 1, 2, 9, 14, 18, 4, 13, 7, 6, 8, 10, 3],
        [17, 5, 11, 12, 15],
    )


def test_conll_split_unchanged() -> None:
    keep, held = split_rows([0] * 17, 0.25, 3, algorithm="unstratified")
    assert held == [4, 5, 7, 9]  # round(17 * 0.25) = 4, file order
    assert keep == [i for i in range(17) if i not in held]


def test_per_class_rows_match_the_tensor_form() -> None:
    labels = ["b", "a", "b", "a", "b", "c", "c", "a"]
    keep, held = split_rows(labels, 0.4, 2)
    codes = torch.tensor([{"b": 0, "a": 1, "c": 2}[x] for x in labels])
    assert (keep, held) == tuple(t.tolist() for t in stratified_split(codes, 0.4, 2))
    assert sorted(labels[i] for i in held) == ["a", "b", "c"]


def test_unstratified_holds_one_at_least_and_never_all() -> None:
    assert len(split_rows([0] * 5, 0.01, 0, algorithm="unstratified")[1]) == 1
    assert len(split_rows([0] * 5, 0.99, 0, algorithm="unstratified")[0]) == 1


def test_bad_fraction_names_what_it_is() -> None:
    with pytest.raises(TensorfabError, match=r"^eval fraction must be between 0 and 1, got 1$"):
        split_rows([0] * 4, 1, 0, algorithm="unstratified", what="eval")


def test_sklearn_too_small_class_is_sklearns_error() -> None:
    with pytest.raises(ValueError, match="least populated class"):
        split_rows(["a", "a", "a", "b"], 2, 0, algorithm="sklearn")
