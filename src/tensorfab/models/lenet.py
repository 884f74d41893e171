"""LeNet exactly as the GPU tutorials write it.

conv 1->20 5x5, max-pool 2, conv 20->50 5x5, max-pool 2, fc 800->500, ReLU, fc 500->10
for 28x28 input; the flatten size follows the input size so other sizes work too.
"""

from __future__ import annotations

import torch
from torch import nn

from tensorfab.models.registry import MODELS


class LeNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        side = ((image_size - 4) // 2 - 4) // 2  # 28 -> 24 -> 12 -> 8 -> 4
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for lenet (needs >= 16)")
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, H, W]
        x = torch.max_pool2d(self.conv1(x), 2)
        x = torch.max_pool2d(self.conv2(x), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


@MODELS.register("lenet", task="image-classification", input="image", tiny={"image_size": 28})
def build_lenet(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    return LeNet(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
