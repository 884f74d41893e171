"""The scikit-learn digits in MNIST's layout: shapes, values, seeded stratified splits."""

from __future__ import annotations

import torch

from tensorfab.data import create_dataset


def test_shapes_and_values() -> None:
    splits = create_dataset("digits")
    assert (len(splits.train), len(splits.test)) == (1437, 360)
    assert splits.train.images.shape == (1437, 1, 28, 28)
    assert splits.train.images.dtype == torch.uint8 and splits.train.labels.dtype == torch.int64
    assert int(splits.train.images.max()) == 255
    # MNIST layout: a 4-pixel empty border around the 20x20 digit box
    border = splits.train.images.clone()
    border[:, :, 4:24, 4:24] = 0
    assert int(border.max()) == 0
    assert splits.classes == [str(i) for i in range(10)]
    assert splits.split == {
        "method": "stratified",
        "test_fraction": 0.2,
        "seed": 0,
        "train_size": 1437,
        "test_size": 360,
    }
    assert "CC BY 4.0" in splits.source["licence"]


def test_stratified() -> None:
    splits = create_dataset("digits")
    train_counts = torch.bincount(splits.train.labels, minlength=10)
    test_counts = torch.bincount(splits.test.labels, minlength=10)
    assert bool((train_counts > 0).all()) and bool((test_counts > 0).all())
    share = test_counts.float() / (train_counts + test_counts).float()
    assert bool(((share - 0.2).abs() < 0.02).all())


def test_seeded() -> None:
    a = create_dataset("digits", split_seed=3)
    b = create_dataset("digits", split_seed=3)
    c = create_dataset("digits", split_seed=4)
    assert torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.test.images, c.test.images)


def test_fraction_and_limits() -> None:
    splits = create_dataset("digits", test_fraction=0.5, limit_train=100, limit_test=50)
    assert (len(splits.train), len(splits.test)) == (100, 50)
    assert splits.split["limit_train"] == 100 and splits.split["test_fraction"] == 0.5
