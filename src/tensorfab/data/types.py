"""The plain in-memory image dataset types every format produces and the engine consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


# eq=False: comparing tensors field by field has no single truth value.
@dataclass(frozen=True, eq=False)
class ImageData:
    """Images with one label each, kept as whole tensors (datasets here fit in memory)."""

    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(
                f"labels must be int64 [N], got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, index: torch.Tensor) -> ImageData:
        """The rows at ``index`` (an int64 index or a bool mask), in that order."""
        return ImageData(self.images[index], self.labels[index])


@dataclass(frozen=True, eq=False)
class ImageSplits:
    """A dataset's train and test parts plus what the model package records about it."""

    train: ImageData
    test: ImageData
    classes: list[str]  # label index -> class name
    # {"name", "path", "licence", "citation"}; recorded in the model package
    source: dict[str, str] = field(default_factory=dict)
    # how train/test were made, e.g. {"method": "stratified", "test_fraction": 0.2, "seed": 0}
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)
