"""A ResNet-18-style network for images larger than MNIST, written here.

torchvision does not install beside the CPU torch wheel on our machines, so the basic
block and the four stages (2, 2, 2, 2 blocks) live here. Small inputs (<= 64 px) get the
CIFAR stem (3x3 conv, no max-pool) so the feature map is not shrunk to nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from tensorfab.models.registry import MODELS


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        width: int,
        blocks: tuple[int, ...],
    ) -> None:
        super().__init__()
        if image_size <= 64:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        stages, c = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            for j in range(n):
                stages.append(BasicBlock(c, c_out, 2 if (j == 0 and i > 0) else 1))
                c = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, H, W]
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@MODELS.register(
    "resnet-18",
    task="image-classification",
    input="image",
    tiny={"width": 8, "blocks": (1, 1, 1, 1), "image_size": 32},
)
def build_resnet18(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    width: int = 64,
    blocks: tuple[int, ...] = (2, 2, 2, 2),
) -> nn.Module:
    return ResNet(num_classes, in_channels, image_size, width, tuple(blocks))
