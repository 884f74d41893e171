"""Padding to CUDA-graph buckets, checked on the CPU by running the padded graph eagerly."""

from __future__ import annotations

import pytest
import torch

from tensorfab.models import create_model
from tensorfab.optimize.graphs import BucketedGraphs, bucket_size, cut_output, pad_inputs


@pytest.mark.parametrize(
    ("n", "minimum", "expected"), [(1, 1, 1), (3, 1, 4), (8, 1, 8), (9, 1, 16), (5, 8, 8)]
)
def test_bucket_is_the_next_power_of_two(n: int, minimum: int, expected: int) -> None:
    assert bucket_size(n, minimum) == expected


def test_text_inputs_pad_both_axes_and_padded_rows_are_never_fully_masked() -> None:
    ids = torch.arange(1, 31).view(3, 10)
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    (pids, pmask), key = pad_inputs((ids, mask))
    assert key == (4, 16) and pids.shape == pmask.shape == (4, 16)
    assert torch.equal(pids[:3, :10], ids) and torch.equal(pmask[:3, :10], mask)
    assert pmask[:3, 10:].sum() == 0 and pids[:3, 10:].sum() == 0
    assert bool(pmask[3].all())


def test_images_pad_the_batch_only() -> None:
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    (padded,), key = pad_inputs((images,))
    assert key == (8,) and padded.shape == (8, 1, 8, 8) and padded.dtype == torch.uint8
    assert torch.equal(padded[:5], images)
    assert cut_output(torch.zeros(8, 10), 5, None).shape == (5, 10)


@pytest.mark.parametrize("head", ["token", "sequence"])
@torch.no_grad()
def test_padded_encoder_gives_the_unpadded_logits(head: str) -> None:
    """What is kept after padding equals the unpadded forward: the bucketing is exact."""
    torch.manual_seed(0)
    model = create_model("bert-tiny", num_classes=5, head=head).eval()

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids, attention_mask=mask).logits

    ids = torch.randint(1000, 5000, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    expected = forward(ids, mask)
    got = BucketedGraphs(forward, torch.device("cpu"), capture=False)(ids, mask)
    assert got.shape == expected.shape
    keep = mask.bool() if head == "token" else torch.ones(3, dtype=torch.bool)
    assert torch.allclose(got[keep], expected[keep], atol=1e-5)
