"""Image classification: uint8 images -> normalised floats -> logits -> cross-entropy.

Images travel as uint8 (4x less to copy) and are scaled and normalised on the device,
with the mean and std recorded in the model package so predict does exactly the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tensorfab.data import ImageSplits, stratified_split
from tensorfab.data.batching import TensorBatches, fits_on_device
from tensorfab.metrics import classification_scores
from tensorfab.tasks.base import Placement, Prediction, Workload
from tensorfab.tasks.registry import TASKS


@dataclass
class ImageClassification:
    classes: list[str]
    mean: list[float] = field(default_factory=lambda: [0.0])
    std: list[float] = field(default_factory=lambda: [1.0])
    name: str = "image-classification"
    metric_names: tuple[str, ...] = ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "loss")

    def __post_init__(self) -> None:
        self._mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std).view(1, -1, 1, 1)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> float32 [B, C, H, W], scaled to 0..1 and normalised."""
        if self._mean.device != images.device:
            self._mean = self._mean.to(images.device)
            self._std = self._std.to(images.device)
        return (images.float() / 255.0 - self._mean) / self._std

    def logits(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return model(self.inputs(batch[0]))

    def loss(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.float(), batch[1])

    def targets(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return batch[1]

    def predict(self, logits: torch.Tensor) -> Prediction:
        probs = torch.softmax(logits.float(), dim=-1)
        return Prediction(labels=probs.argmax(dim=-1), probs=probs)

    def scores(self, targets: torch.Tensor, preds: torch.Tensor) -> dict[str, Any]:
        return classification_scores(targets.cpu(), preds.cpu(), self.classes)

    def eval_step(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> Any:
        return batch[1].cpu(), logits.argmax(dim=-1).cpu()

    def eval_scores(self, outputs: list[Any]) -> dict[str, Any]:
        targets = torch.cat([t for t, _ in outputs])
        return self.scores(targets, torch.cat([p for _, p in outputs]))

    def config(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "mean": list(self.mean), "std": list(self.std)}


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images [N, C, H, W] on the 0..1 scale."""
    x = images.float().div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    std = x.std(dim=1).clamp_min(1e-6)
    return [round(v, 6) for v in x.mean(dim=1).tolist()], [round(v, 6) for v in std.tolist()]


def prepare_images(
    splits: ImageSplits, *, val_fraction: float = 0.0, split_seed: int = 0, **_: Any
) -> Workload:
    """Image splits -> a workload; a validation part is carved from train when asked."""
    train, test, evals = splits.train, splits.test, splits.test
    if val_fraction > 0:
        keep, held = stratified_split(train.labels, val_fraction, split_seed)
        train, evals = train.subset(keep), train.subset(held)
    mean, std = channel_stats(train.images)
    task = ImageClassification(list(splits.classes), mean, std)
    parts = {"train": train, "eval": evals, "test": test}

    def make_batches(split: str, batch_size: int, shuffle: bool, where: Placement) -> TensorBatches:
        data = parts[split]
        nbytes = data.images.nelement() * data.images.element_size()
        resident = where.resident == "on" or (
            where.resident == "auto" and fits_on_device(nbytes, where.device)
        )
        shard = {"rank": where.rank, "world_size": where.world_size} if shuffle else {}
        return TensorBatches(
            (data.images, data.labels),
            batch_size,
            device=where.device,
            shuffle=shuffle,
            seed=where.seed,
            resident=resident,
            **shard,
        )

    _, c, h, w = train.images.shape
    meta = {
        "labels": list(splits.classes),
        "input": {"kind": "image", "channels": c, "height": h, "width": w, "dtype": "uint8"},
        "preprocessing": {"scale": "x / 255", "mean": mean, "std": std},
        "task_config": task.config(),
    }
    sizes = {k: len(v) for k, v in parts.items()}
    args = {"num_classes": len(splits.classes), "in_channels": c, "image_size": h}
    return Workload(task, args, sizes, meta, make_batches)


@TASKS.register("image-classification", prepare=prepare_images)
def build_image_classification(
    classes: list[str],
    mean: list[float] | None = None,
    std: list[float] | None = None,
    package_dir: str | None = None,
) -> ImageClassification:
    del package_dir  # an image task needs no files besides the weights
    c = 1 if mean is None else len(mean)
    return ImageClassification(list(classes), mean or [0.0] * c, std or [1.0] * c)
