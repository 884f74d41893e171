"""LeNet on MNIST as the GPU tutorials train it: the baseline of the ``lenet-mnist`` workload.

On purpose, like the tutorials: a per-sample ``Dataset`` that converts and normalises one
image at a time (torchvision's ``ToTensor()`` + ``Normalize((0.1307,), (0.3081,))``), a
shuffling ``DataLoader`` with default collation (the batch is assembled on the host and copied
to the device every step), fp32 eager mode, ``Adam`` with its defaults (lr 1e-3) and
``loss.item()`` every step for the running loss. Images are all 28x28: no padding.
The network is tensorfab's ``LeNet``, the tutorial's architecture, so both sides train the
same model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tensorfab.models.lenet import LeNet

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the tutorials' Normalize constants

SETTINGS = {
    "data": "per-sample Dataset (uint8 -> float, normalise per image) + DataLoader, num_workers=0",
    "precision": "fp32",
    "mode": "eager",
    "optimizer": "Adam, defaults (lr 1e-3)",
    "padding": "none (fixed 28x28 images)",
    "host_sync": "loss.item() every step",
}


class MnistDataset(Dataset):
    """One normalised image and its label per index, converted on access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels  # uint8 [N, 1, 28, 28], int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].float() / 255.0
        return (x - MNIST_MEAN) / MNIST_STD, int(self.labels[i])


def make_loader(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool = True
) -> DataLoader:
    return DataLoader(MnistDataset(images, labels), batch_size=batch_size, shuffle=shuffle)


def build_model(num_classes: int = 10) -> nn.Module:
    return LeNet(num_classes=num_classes)


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters())


def train_steps(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    max_steps: int,
) -> float:
    """The tutorial's loop, epochs until ``max_steps``; returns the mean loss."""
    model.train()
    running_loss, steps = 0.0, 0
    while steps < max_steps:
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            steps += 1
            if steps >= max_steps:
                break
    return running_loss / max(1, steps)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Class indices of one batch of normalised images, eager fp32, back on the host."""
    model.eval()
    return model(images.to(device)).argmax(dim=1).cpu()
