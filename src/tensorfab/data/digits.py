"""scikit-learn's bundled 8x8 digits, laid out like MNIST (a 20x20 digit centred in 28x28).

No download: the 1797 images ship with scikit-learn. Upscaling them to MNIST's layout lets
the same models (lenet) train on either.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from tensorfab.data.registry import DATASETS
from tensorfab.data.splits import limit_splits
from tensorfab.data.types import ImageData, ImageSplits

DIGITS_SOURCE = {
    "name": "scikit-learn digits (UCI Optical Recognition of Handwritten Digits)",
    "path": "sklearn.datasets.load_digits",
    "licence": "CC BY 4.0 (UCI ML repository)",
    "citation": (
        "E. Alpaydin, C. Kaynak, 'Optical Recognition of Handwritten Digits', UCI Machine "
        "Learning Repository, 1998, https://doi.org/10.24432/C50P49"
    ),
}
BOX = 20  # MNIST centres each digit in a 20x20 box ...
PAD = 4  # ... inside a 28x28 image


def digits_as_mnist() -> ImageData:
    """All 1797 digits as uint8 [N, 1, 28, 28], values 0-255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0-16 -> 0-255
    pixels = np.rint(bunch.images * 255.0 / 16.0).astype(np.uint8)  # [N, 8, 8]
    small = torch.from_numpy(pixels).unsqueeze(1).float()  # [N, 1, 8, 8]
    box = F.interpolate(small, size=(BOX, BOX), mode="bilinear", align_corners=False)
    box = box.round().clamp(0, 255).to(torch.uint8)  # [N, 1, 20, 20]
    images = F.pad(box, (PAD, PAD, PAD, PAD))  # [N, 1, 28, 28]
    return ImageData(images, torch.from_numpy(bunch.target.astype(np.int64)))


@functools.lru_cache(maxsize=8)
def _split_digits(test_fraction: float, split_seed: int) -> ImageSplits:
    """Cached per (fraction, seed): demos and tests ask for the same split repeatedly.

    The tensors are shared between callers, so treat them as read-only.
    """
    from sklearn.model_selection import train_test_split

    data = digits_as_mnist()
    rows = np.arange(len(data))
    train_rows, test_rows = train_test_split(
        rows, test_size=test_fraction, random_state=split_seed, stratify=data.labels.numpy()
    )
    train = data.subset(torch.from_numpy(train_rows))
    test = data.subset(torch.from_numpy(test_rows))
    return ImageSplits(
        train=train,
        test=test,
        classes=[str(i) for i in range(10)],
        source=dict(DIGITS_SOURCE),
        split={
            "method": "stratified",
            "test_fraction": test_fraction,
            "seed": split_seed,
            "train_size": len(train),
            "test_size": len(test),
        },
    )


@DATASETS.register("digits")
def build_digits(
    *,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> ImageSplits:
    """The digits in MNIST's layout, split train/test by a seeded stratified split."""
    splits = _split_digits(float(test_fraction), int(split_seed))
    if limit_train is None and limit_test is None:
        return splits
    return limit_splits(splits, limit_train, limit_test)
