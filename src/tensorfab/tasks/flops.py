"""Model FLOPs on the tokens that are really there: the one count behind every MFU figure.

ARCHITECTURE.md defines MFU with the FLOPs a model *needs*: real tokens, not padding. A
padded batch of sequences of lengths T_1..T_B needs sum_i f(T_i), not B * f(max T), so an
encoder's count is a function of the sum of lengths and the sum of squared lengths (the
attention term). Fixed-size inputs (images) cost the same per sample, counted once by
PyTorch's ``FlopCounterMode`` on one example. Only matrix multiplications and convolutions
are counted (2 FLOPs per multiply-add), as ``FlopCounterMode`` does; a training step is
:data:`~tensorfab.tasks.base.TRAIN_FLOPS_FACTOR` forward passes' worth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def counted_flops(forward: Callable[[], Any]) -> int:
    """FLOPs of ``forward()`` as PyTorch's ``FlopCounterMode`` counts them."""
    counter = FlopCounterMode(display=False)
    with counter:
        forward()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class EncoderShape:
    """What the FLOPs of a BERT-style encoder and its classification head depend on."""

    hidden: int
    layers: int
    intermediate: int
    num_labels: int
    per_token_head: bool = True  # token classification; False: pooled [CLS] + classifier

    @classmethod
    def from_config(cls, config: Any, per_token_head: bool = True) -> EncoderShape:
        """From a Hugging Face ``BertConfig`` (or any config with the same field names)."""
        return cls(
            config.hidden_size,
            config.num_hidden_layers,
            config.intermediate_size,
            config.num_labels,
            per_token_head,
        )


def encoder_layer_forward_flops(seq_len: int, hidden: int, intermediate: int) -> int:
    """One transformer layer over one sequence of ``seq_len`` tokens.

    Q, K, V and output projections 4 * 2*T*h*h; scores Q K^T and their product with V
    2 * 2*T*T*h (summed over heads); feed-forward 2 * 2*T*h*i.
    """
    t, h = seq_len, hidden
    return 8 * t * h * h + 4 * t * t * h + 4 * t * h * intermediate


def encoder_forward_flops(
    shape: EncoderShape, token_sum: float, token_sq_sum: float, samples: int = 0
) -> float:
    """A batch through the encoder and its head, given sum(T_i) and sum(T_i^2) of real
    lengths (and, for a pooled head, the number of sequences)."""
    h = shape.hidden
    per_token = shape.layers * (8 * h * h + 4 * h * shape.intermediate)
    flops = per_token * token_sum + shape.layers * 4 * h * token_sq_sum
    if shape.per_token_head:
        return flops + 2 * h * shape.num_labels * token_sum
    return flops + samples * (2 * h * h + 2 * h * shape.num_labels)  # pooler + classifier
