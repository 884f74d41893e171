"""LeNet exactly as the GPU tutorials write it, with an optional tanh for DP-SGD.

conv 1->20 5x5, max-pool 2, conv 20->50 5x5, max-pool 2, fc 800->500, ReLU, fc 500->10
for 28x28 input; the flatten size follows the input size so other sizes work too.
``activation="tanh"`` puts a tanh after each pooled conv and after fc 800->500 instead of
the one ReLU: the tempered-sigmoid set-up that trains better under DP-SGD's clipping and
noise (Papernot et al., "Tempered Sigmoid Activations for Deep Learning with Differential
Privacy", 2021). The default stays the tutorial's network, weight for weight.
"""

from __future__ import annotations

import torch
from torch import nn

from tensorfab.models.registry import MODELS

ACTIVATIONS = ("relu", "tanh")


class LeNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        side = ((image_size - 4) // 2 - 4) // 2  # 28 -> 24 -> 12 -> 8 -> 4
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for lenet (needs >= 16)")
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)
        self.tanh = activation == "tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, H, W]
        x = torch.max_pool2d(self.conv1(x), 2)
        x = torch.max_pool2d(self.conv2(torch.tanh(x) if self.tanh else x), 2)
        if self.tanh:
            return self.fc2(torch.tanh(self.fc1(torch.tanh(x).flatten(1))))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@MODELS.register("lenet", task="image-classification", input="image", tiny={"image_size": 28})
def build_lenet(
    num_classes: int = 10, in_channels: int = 1, image_size: int = 28, activation: str = "relu"
) -> nn.Module:
    """LeNet; ``activation``: "relu" (the tutorial's) or "tanh" (for DP-SGD)."""
    return LeNet(num_classes, in_channels, image_size, activation)
