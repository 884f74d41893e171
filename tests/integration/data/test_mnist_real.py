"""The real MNIST files from the shared folder beside the repository, read end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tensorfab.data import create_dataset


def _repo_root() -> Path:
    """The folder that holds ``tests/``, however deep this file sits below it."""
    here = Path(__file__).resolve()
    return next(p.parent for p in here.parents if p.name == "tests")


MNIST = _repo_root().parent / "shared" / "data" / "mnist"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist_path() -> Path:
    if not MNIST.is_dir():
        pytest.skip(f"../shared/data/mnist not found: looked in {MNIST}")
    return MNIST


def test_real_mnist(mnist_path: Path) -> None:
    splits = create_dataset("idx", path=str(mnist_path))
    assert (len(splits.train), len(splits.test)) == (60000, 10000)
    assert splits.train.images.shape == (60000, 1, 28, 28)
    assert splits.train.images.dtype == torch.uint8 and int(splits.train.images.max()) == 255
    assert torch.bincount(splits.train.labels).tolist() == TRAIN_COUNTS
    assert torch.bincount(splits.test.labels).tolist() == TEST_COUNTS
    assert splits.classes == [str(i) for i in range(10)]
    assert splits.split["method"] == "given" and splits.source["name"] == "MNIST"
