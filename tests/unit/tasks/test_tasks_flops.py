"""The tasks' FLOP counts (LeNet, a BERT layer, a padded batch, a training split) and MFU."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tensorfab.engine.telemetry import flops_per_sample, train_mfu
from tensorfab.models.lenet import LeNet
from tensorfab.tasks import TokenCount
from tensorfab.tasks.flops import EncoderShape, encoder_forward_flops, encoder_layer_forward_flops
from tensorfab.tasks.image_classification import ImageClassification
from tensorfab.tasks.text_classification import TextClassification
from tensorfab.tasks.token_classification import TokenClassification

DIGITS = [str(i) for i in range(10)]


def _counted(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def test_lenet_flops_by_hand() -> None:
    conv1 = 2 * (20 * 24 * 24) * (1 * 5 * 5)  # 576,000
    conv2 = 2 * (50 * 8 * 8) * (20 * 5 * 5)  # 3,200,000
    fc1 = 2 * 800 * 500  # 800,000
    fc2 = 2 * 500 * 10  # 10,000
    assert conv1 + conv2 + fc1 + fc2 == 4_586_000
    task = ImageClassification(DIGITS, image_shape=(1, 28, 28))
    assert task.forward_flops(LeNet(), TokenCount(1)) == 4_586_000
    assert task.forward_flops(LeNet(), TokenCount(7)) == 7 * 4_586_000


def test_lenet_flops_match_pytorch_counter_on_a_batch() -> None:
    model = LeNet()
    x = torch.zeros(3, 1, 28, 28)
    task = ImageClassification(DIGITS, image_shape=(1, 28, 28))
    assert _counted(lambda: model(x)) == task.forward_flops(model, TokenCount(3))


def test_bert_layer_flops_by_hand() -> None:
    # T=10 tokens, hidden 64, feed-forward 256:
    # projections 4 * 2*10*64*64 = 327,680; scores + weighted sum 2 * 2*10*10*64 = 25,600;
    # feed-forward 2 * 2*10*64*256 = 655,360
    assert encoder_layer_forward_flops(10, 64, 256) == 327_680 + 25_600 + 655_360


def test_bert_layer_flops_match_pytorch_counter() -> None:
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    config = BertConfig(
        hidden_size=64, num_attention_heads=4, intermediate_size=256, attn_implementation="eager"
    )
    layer = BertLayer(config).eval()
    hidden = torch.zeros(1, 10, 64)
    assert _counted(lambda: layer(hidden)) == encoder_layer_forward_flops(10, 64, 256)


def test_padded_batch_counts_only_real_tokens() -> None:
    shape = EncoderShape(hidden=8, layers=2, intermediate=32, num_labels=3)
    lengths = [3, 5]  # padded to 5: the first sequence's 2 pad tokens cost nothing
    head = 2 * 8 * 3  # per token
    expected = sum(2 * encoder_layer_forward_flops(t, 8, 32) + head * t for t in lengths)
    got = encoder_forward_flops(shape, sum(lengths), sum(t * t for t in lengths))
    assert got == expected
    padded = encoder_forward_flops(shape, 10, 50)
    assert got < padded


def _bert(head: str, labels: int):
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=labels,
        attn_implementation="eager",
    )
    cls = BertForTokenClassification if head == "token" else BertForSequenceClassification
    return cls(config).eval()


@pytest.mark.parametrize("task_cls", [TokenClassification, TextClassification])
def test_encoder_task_counts_match_pytorch_counter_per_sequence(task_cls) -> None:
    # each sequence alone (no padding) through the real model: what the counter sees is
    # exactly the FLOPs those real tokens need; the task's count over both must equal it
    task = task_cls(["a", "b", "c"])
    model = _bert(task.head, 3)
    lengths = [4, 9]
    counted = sum(
        _counted(lambda n=n: model(input_ids=torch.ones(1, n, dtype=torch.long))) for n in lengths
    )
    count = TokenCount(len(lengths), sum(lengths), sum(n * n for n in lengths))
    assert task.forward_flops(model, count) == counted


def test_engine_flops_per_sample_is_the_split_mean_on_real_tokens() -> None:
    task = TokenClassification(["O", "B-X"])
    model = _bert("token", 2)
    count = TokenCount(2, 4 + 9, 16 + 81)
    assert flops_per_sample(task, model, count) == task.forward_flops(model, count) / 2
    assert flops_per_sample(task, model, None) is None


def test_mfu_arithmetic() -> None:
    # 1e12 forward FLOPs in 3 s of training: 3e12 / 3 s = 1 TFLOP/s; peak 100 TFLOP/s -> 1 %
    tflops, mfu = train_mfu(1e12, 3.0, 100.0)
    assert tflops == pytest.approx(1.0)
    assert mfu == pytest.approx(0.01)


def test_mfu_is_none_without_a_measured_peak() -> None:
    tflops, mfu = train_mfu(1e12, 3.0, None)
    assert tflops == pytest.approx(1.0)
    assert mfu is None
