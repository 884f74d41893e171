"""Model FLOPs counted from the architecture, on the tokens that are really there.

ARCHITECTURE.md defines MFU with the FLOPs a model *needs*: real tokens, not padding. A
padded batch of sequences of lengths T_1..T_B needs sum_i f(T_i), not B * f(max T), so the
encoder count is a function of the sum of lengths and the sum of squared lengths (the
attention term). Only matrix multiplications and convolutions are counted (2 FLOPs per
multiply-add), as PyTorch's ``FlopCounterMode`` does; a training step is three forward
passes' worth (forward, and backward for activations and weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tensorfab.hardware import mfu

TRAIN_FLOPS_FACTOR = 3  # forward + backward (input gradients + weight gradients)


def conv2d_flops(out_channels: int, out_side: int, in_channels: int, kernel: int) -> int:
    """FLOPs of a square 2-D convolution for one sample (bias excluded)."""
    return 2 * out_channels * out_side * out_side * in_channels * kernel * kernel


def linear_flops(in_features: int, out_features: int, rows: int = 1) -> int:
    """FLOPs of ``rows`` vectors through a linear layer (bias excluded)."""
    return 2 * rows * in_features * out_features


def lenet_forward_flops(image_size: int = 28, in_channels: int = 1, num_classes: int = 10) -> int:
    """One sample through tensorfab's LeNet (conv 20 5x5, pool, conv 50 5x5, pool, fc 500, fc)."""
    side1 = image_size - 4  # conv1, no padding
    side2 = side1 // 2 - 4  # pool, conv2
    side3 = side2 // 2  # pool
    return (
        conv2d_flops(20, side1, in_channels, 5)
        + conv2d_flops(50, side2, 20, 5)
        + linear_flops(50 * side3 * side3, 500)
        + linear_flops(500, num_classes)
    )


@dataclass(frozen=True)
class EncoderShape:
    """What the FLOPs of a BERT-style encoder with a token-classification head depend on."""

    hidden: int
    layers: int
    intermediate: int
    num_labels: int

    @classmethod
    def from_config(cls, config: Any) -> EncoderShape:
        """From a Hugging Face ``BertConfig`` (or any config with the same field names)."""
        return cls(
            config.hidden_size,
            config.num_hidden_layers,
            config.intermediate_size,
            config.num_labels,
        )


def encoder_layer_forward_flops(seq_len: int, hidden: int, intermediate: int) -> int:
    """One transformer layer over one sequence of ``seq_len`` tokens.

    Q, K, V and output projections 4 * 2*T*h*h; scores Q K^T and their product with V
    2 * 2*T*T*h (summed over heads); feed-forward 2 * 2*T*h*i.
    """
    t, h = seq_len, hidden
    return 8 * t * h * h + 4 * t * t * h + 4 * t * h * intermediate


def encoder_forward_flops(shape: EncoderShape, token_sum: float, token_sq_sum: float) -> float:
    """A batch through the encoder and its head, given sum(T_i) and sum(T_i^2) of real lengths."""
    h = shape.hidden
    per_token = shape.layers * (8 * h * h + 4 * h * shape.intermediate) + 2 * h * shape.num_labels
    return per_token * token_sum + shape.layers * 4 * h * token_sq_sum


def train_mfu(
    forward_flops: float, seconds: float, peak_tflops: float | None
) -> tuple[float, float | None]:
    """(achieved model TFLOP/s of training, MFU as a fraction or None without a peak)."""
    flops_per_s = TRAIN_FLOPS_FACTOR * forward_flops / seconds if seconds > 0 else 0.0
    return flops_per_s / 1e12, mfu(flops_per_s, peak_tflops)
