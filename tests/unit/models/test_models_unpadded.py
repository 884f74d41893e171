"""The unpadded BERT path equals Hugging Face's forward at every position the mask keeps."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tensorfab.models import create_model
from tensorfab.models.unpadded import UnpaddedBert, attention_chunks, unpad_encoders


def _pair(**options: object) -> tuple[nn.Module, nn.Module]:
    """A tiny random BERT classifier (eval) and a copy of it with its encoder unpadded."""
    torch.manual_seed(0)
    model = create_model("bert-tiny", **options).eval()
    unpadded = copy.deepcopy(model)
    assert unpad_encoders(unpadded) == 1
    return model, unpadded


def _batch(masks: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.tensor(masks)
    ids = torch.randint(1000, 5000, mask.shape, generator=torch.Generator().manual_seed(1))
    return ids * mask, mask  # padding holds id 0, as the tokenizer pads


MIXED = [  # right padding of mixed lengths, a full row, a row with a hole, a left-padded row
    [1, 1, 1, 0, 0, 0, 0, 0],
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 0, 1, 1, 0, 0, 0],
    [0, 0, 0, 1, 1, 1, 1, 1],
    [1, 0, 0, 0, 0, 0, 0, 0],
]


@torch.inference_mode()
def test_token_logits_equal_at_kept_positions_and_padding_is_not_computed() -> None:
    model, unpadded = _pair(num_classes=5)
    ids, mask = _batch([*MIXED, [0] * 8])  # and a row with no token at all
    want = model(input_ids=ids, attention_mask=mask).logits
    got = unpadded(input_ids=ids, attention_mask=mask).logits
    kept = mask.bool()
    torch.testing.assert_close(got[kept], want[kept], atol=1e-5, rtol=1e-5)
    bias = unpadded.classifier.bias  # a masked position's hidden state is zero
    torch.testing.assert_close(got[~kept], bias.expand(int((~kept).sum()), -1))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@torch.inference_mode()
def test_sequence_heads_equal(pooling: str) -> None:
    model, unpadded = _pair(num_classes=3, head="sequence", pooling=pooling)
    ids, mask = _batch(MIXED)  # cls: the left-padded row's first position is masked
    want = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(unpadded(input_ids=ids, attention_mask=mask).logits, want)


@torch.inference_mode()
def test_token_types_are_read() -> None:
    model, unpadded = _pair(num_classes=4)
    ids, mask = _batch(MIXED[:3])
    types = torch.zeros_like(ids)
    types[:, 2:] = 1
    want = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    got = unpadded(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, unpadded(input_ids=ids, attention_mask=mask).logits)


def test_training_and_packed_rows_run_hugging_face_forward() -> None:
    model, unpadded = _pair(num_classes=2)
    ids, mask = _batch(MIXED[:2])
    positions = torch.arange(8).expand(2, 8)
    with torch.inference_mode():  # position ids given (packed training rows): HF's path
        want = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        got = unpadded(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    assert torch.equal(got, want)  # padding positions too: the same computation
    unpadded.train()  # reaches the wrapper and the encoder inside it alike
    wrapper = next(m for m in unpadded.modules() if isinstance(m, UnpaddedBert))
    assert wrapper.training and wrapper.bert.training
    unpadded(input_ids=ids, attention_mask=mask).logits.sum().backward()  # HF's, with grads
    assert wrapper.bert.embeddings.word_embeddings.weight.grad is not None


def test_attention_chunks_cut_rows_in_length_order() -> None:
    counts = torch.tensor([10, 2, 3, 0, 11, 4])  # ranks: rows 3, 1, 2, 5, 0, 4
    chunks = attention_chunks(counts, 3)  # rows by rank: {3, 1} {2, 5} {0, 4}
    starts = [0, 10, 12, 15, 15, 26]  # each row's first packed token
    assert [c.gather.shape for c in chunks] == [(2, 2), (2, 4), (2, 11)]
    first = chunks[0]  # row 3 holds no token, row 1 two: its slots 10, 11
    assert first.gather.tolist() == [[0, 0], [10, 11]]
    assert first.real.tolist() == [2, 3] and first.dest.tolist() == [10, 11]
    assert first.mask[:, 0, 0].tolist() == [[False, False], [True, True]]
    last = chunks[2]
    assert last.dest.tolist() == list(range(0, 10)) + list(range(15, 26))
    assert sorted(d for c in chunks for d in c.dest.tolist()) == list(range(starts[-1] + 4))
    two = attention_chunks(torch.tensor([5, 1]), 3)  # fewer rows than chunks: one repeats
    assert [c.dest.tolist() for c in two] == [[5], [5], [0, 1, 2, 3, 4]]


def test_unpad_encoders_wraps_bert_only() -> None:
    assert unpad_encoders(create_model("lenet", num_classes=10)) == 0
    _, unpadded = _pair(num_classes=2)
    assert unpad_encoders(unpadded) == 0  # already wrapped: not twice


@torch.inference_mode()
def test_autocast_over_fp32_weights_and_a_batch_without_tokens() -> None:
    model, unpadded = _pair(num_classes=3)
    ids, mask = _batch(MIXED)
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        want = model(input_ids=ids, attention_mask=mask).logits.float()
        got = unpadded(input_ids=ids, attention_mask=mask).logits.float()
    kept = mask.bool()
    torch.testing.assert_close(got[kept], want[kept], atol=0.05, rtol=0.05)  # bf16 rounding
    empty = unpadded(input_ids=ids * 0, attention_mask=mask * 0).logits
    assert empty.shape == (*ids.shape, 3)
    torch.testing.assert_close(empty, unpadded.classifier.bias.expand_as(empty))
