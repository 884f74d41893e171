"""Image classification task: preprocessing, loss, predictions, scores, channel stats."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tensorfab.errors import TensorfabError
from tensorfab.tasks import TASKS, create_task
from tensorfab.tasks.image_classification import ImageClassification, channel_stats


def _assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # torch.testing.assert_close costs ~0.5 s on its first call (lazy imports)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert torch.allclose(actual, expected, rtol=1e-5, atol=1e-6), (actual, expected)


def _task(**kw: object) -> ImageClassification:
    task = create_task("image-classification", classes=["a", "b", "c"], **kw)
    assert isinstance(task, ImageClassification)
    return task


def test_inputs_scale_and_normalise() -> None:
    task = _task(mean=[0.5], std=[0.25])
    images = torch.tensor([[[[0, 255], [51, 128]]]], dtype=torch.uint8)  # [1, 1, 2, 2]
    out = task.inputs(images)
    assert out.dtype == torch.float32 and out.shape == (1, 1, 2, 2)
    expected = torch.tensor([[[[-2.0, 2.0], [(0.2 - 0.5) / 0.25, (128 / 255 - 0.5) / 0.25]]]])
    _assert_close(out, expected)


def test_inputs_per_channel() -> None:
    task = _task(mean=[0.0, 0.5, 1.0], std=[1.0, 0.5, 2.0])
    images = torch.full((2, 3, 1, 1), 255, dtype=torch.uint8)
    out = task.inputs(images)
    _assert_close(out[0, :, 0, 0], torch.tensor([1.0, 1.0, 0.0]))
    _assert_close(out[1], out[0])


def test_default_preprocessing_is_plain_scaling() -> None:
    task = _task()
    assert task.mean == [0.0] and task.std == [1.0]
    out = task.inputs(torch.tensor([[[[0, 255]]]], dtype=torch.uint8))
    _assert_close(out, torch.tensor([[[[0.0, 1.0]]]]))


def test_loss_is_cross_entropy() -> None:
    task = _task()
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([0, 1, 2])
    loss = task.loss(logits, (torch.zeros(3, 1, 2, 2, dtype=torch.uint8), labels))
    assert loss.dim() == 0
    _assert_close(loss, nn.functional.cross_entropy(logits, labels))
    # by hand for the third row: uniform logits -> log(3)
    single = task.loss(logits[2:], (None, labels[2:]))  # type: ignore[arg-type]
    assert single.item() == pytest.approx(torch.log(torch.tensor(3.0)).item())


def test_loss_in_half_precision_is_computed_in_float32() -> None:
    task = _task()
    logits = torch.tensor([[2.0, 0.5, -1.0]], dtype=torch.bfloat16)
    loss = task.loss(logits, (None, torch.tensor([0])))  # type: ignore[arg-type]
    assert loss.dtype == torch.float32


def test_predict_argmax_and_probabilities() -> None:
    task = _task()
    logits = torch.tensor([[0.1, 3.0, -2.0], [5.0, 1.0, 1.0], [0.0, 0.0, 0.2]])
    pred = task.predict(logits)
    assert pred.labels.tolist() == [1, 0, 2]
    assert pred.probs.shape == (3, 3)
    _assert_close(pred.probs.sum(dim=-1), torch.ones(3))
    _assert_close(pred.probs, torch.softmax(logits, dim=-1))


def test_logits_and_targets_use_the_batch() -> None:
    task = _task(mean=[0.5], std=[0.5])
    seen: list[torch.Tensor] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x.flatten(1)[:, :3]

    images = torch.full((2, 1, 2, 2), 255, dtype=torch.uint8)
    labels = torch.tensor([1, 2])
    out = task.logits(model, (images, labels))  # type: ignore[arg-type]
    _assert_close(out, torch.ones(2, 3))
    assert seen[0].dtype == torch.float32
    assert task.targets((images, labels)) is labels


def test_scores_keys_and_values() -> None:
    task = _task()
    scores = task.scores(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 1]))
    assert {
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "micro_f1",
        "per_class",
        "confusion_matrix",
        "n",
    } <= set(scores)
    assert set(task.metric_names) - {"loss"} <= set(scores)
    assert scores["accuracy"] == pytest.approx(0.75)
    assert list(scores["per_class"]) == ["a", "b", "c"]
    assert scores["n"] == 4


def test_config_rebuilds_the_same_task() -> None:
    task = _task(mean=[0.1307], std=[0.3081])
    assert task.config() == {"classes": ["a", "b", "c"], "mean": [0.1307], "std": [0.3081]}
    again = create_task("image-classification", **task.config())
    assert again.config() == task.config()


def test_channel_stats_constant_image() -> None:
    images = torch.full((4, 3, 5, 5), 51, dtype=torch.uint8)
    mean, std = channel_stats(images)
    assert mean == pytest.approx([0.2, 0.2, 0.2])
    assert std == pytest.approx([1e-6, 1e-6, 1e-6])  # clamped, so normalising never divides by 0


def test_channel_stats_per_channel() -> None:
    images = torch.zeros(2, 2, 1, 2, dtype=torch.uint8)
    images[:, 1] = torch.tensor([0, 255], dtype=torch.uint8)  # channel 1: half 0, half 1
    mean, std = channel_stats(images)
    assert mean == pytest.approx([0.0, 0.5])
    expected = torch.tensor([0.0, 1.0, 0.0, 1.0]).std().item()  # unbiased, like torch.std
    assert std[1] == pytest.approx(expected, abs=1e-6)
    assert std[0] == pytest.approx(1e-6)


def test_registered_tasks() -> None:
    create_task("image-classification", classes=["x"])
    assert "image-classification" in TASKS


def test_unknown_task() -> None:
    with pytest.raises(TensorfabError) as info:
        create_task("speech-recognition", classes=["x"])
    msg = str(info.value)
    assert msg.startswith("unknown task 'speech-recognition'; known: ")
    assert "image-classification" in msg
