"""stratified_split: proportions, determinism, every class in both parts; row limits."""

from __future__ import annotations

import pytest
import torch

from tensorfab.data import stratified_split
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
