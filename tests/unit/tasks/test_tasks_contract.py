"""The task contract without training: every task has every method, signatures and their
ONNX axes, people's images and texts as the tasks read them, requests refused by name."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tensorfab.errors import TensorfabError
from tensorfab.tasks import OUTPUT, ServingLimits, Task, TensorSpec, register_all, task_from_meta
from tensorfab.tasks.base import signature_axes, variable_length
from tensorfab.tasks.encoder_task import request_texts
from tensorfab.tasks.image_classification import ImageClassification
from tensorfab.tasks.token_classification import TokenClassification

METAS = {
    "image-classification": {
        "task": "image-classification",
        "labels": ["0", "1", "2"],
        "input": {"kind": "image", "channels": 1, "height": 8, "width": 8, "polarity": "none"},
        "task_config": {"classes": ["0", "1", "2"], "mean": [0.5], "std": [0.25]},
    },
    "token-classification": {
        "task": "token-classification",
        "labels": ["O", "B-PER", "I-PER"],
        "input": {"kind": "text"},
        "task_config": {"classes": ["O", "B-PER", "I-PER"], "max_length": 16},
    },
    "text-classification": {
        "task": "text-classification",
        "labels": ["neg", "pos"],
        "input": {"kind": "text"},
        "task_config": {"classes": ["neg", "pos"], "max_length": 16},
    },
    "tabular-classification": {
        "task": "tabular-classification",
        "labels": ["<=50K", ">50K"],
        "input": {"kind": "table", "numeric": ["age"], "categorical": ["sex"]},
        "task_config": {
            "classes": ["<=50K", ">50K"],
            "numeric": ["age"],
            "vocab": {"sex": ["Female", "Male"]},
            "mean": [40.0],
            "std": [10.0],
        },
    },
    "intent-classification": {
        "task": "intent-classification",
        "labels": ["play_music", "weather"],
        "input": {"kind": "text"},
        "task_config": {
            "classes": ["play_music", "weather"],
            "max_length": 16,
            "detect_oos": True,
            "oos_rule": {"score": "max_softmax", "threshold": 0.5, "objective": 0.9},
        },
    },
    "recommendation": {
        "task": "recommendation",
        "labels": ["10", "20", "30"],
        "input": {"kind": "user", "num_users": 2},
        "task_config": {"users": ["1", "2"], "seen": [[0], []], "popularity": [1, 0, 0]},
    },
}
CONTRACT = sorted(
    n for n in [*Task.__dict__, *Task.__annotations__] if not n.startswith("_") and n != "Task"
)


def test_every_registered_task_can_be_rebuilt_here() -> None:
    assert set(METAS) == set(register_all().names())


@pytest.mark.parametrize("name", sorted(METAS))
def test_every_task_has_every_method_of_the_contract(name: str) -> None:
    task = task_from_meta(METAS[name])  # no package dir: nothing but the JSON is read
    missing = [m for m in CONTRACT if not hasattr(task, m)]
    assert not missing, f"{name} lacks {missing}"
    assert task.name == name
    outputs = task.signature()[1]
    assert [o.name for o in outputs] == [OUTPUT]
    assert outputs[0].shape[-1] == len(METAS[name]["labels"])


def test_signatures_and_their_onnx_axes() -> None:
    image = task_from_meta(METAS["image-classification"]).signature()
    assert image == ([TensorSpec("images", "UINT8", (1, 8, 8))], [TensorSpec(OUTPUT, "FP32", (3,))])
    assert signature_axes(image) == {"images": {0: "batch"}, OUTPUT: {0: "batch"}}
    assert not variable_length(image)
    tokens = task_from_meta(METAS["token-classification"]).signature()
    assert tokens[1] == [TensorSpec(OUTPUT, "FP32", (-1, 3))]
    assert signature_axes(tokens) == {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        OUTPUT: {0: "batch"},  # as export always wrote it
    }
    assert variable_length(tokens)
    assert task_from_meta(METAS["text-classification"]).signature()[1][0].shape == (2,)


def test_example_feeds_fit_the_signature() -> None:
    rng = np.random.default_rng(0)
    image = task_from_meta(METAS["image-classification"]).example_feed([8, 8, 8], rng)
    assert image["images"].shape == (3, 1, 8, 8) and image["images"].dtype == np.uint8
    text = TokenClassification(["O"]).example_feed([3, 5], rng)
    assert text["input_ids"].shape == (2, 5)
    assert text["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert np.all(text["input_ids"][:, :3] >= 1000) and np.all(text["input_ids"] < 20000)


def _png(path: Path, pixels: np.ndarray) -> str:
    from PIL import Image

    Image.fromarray(pixels).save(path)
    return str(path)


def _digit(light_background: bool) -> np.ndarray:
    """A 28x28 bar in MNIST's form (white on black, 20 px tall, centred), or inverted."""
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 12:16] = 255
    return 255 - image if light_background else image


def test_an_image_task_brings_a_users_image_to_the_training_form(tmp_path: Path) -> None:
    task = ImageClassification(["a", "b"], image_shape=(1, 28, 28), polarity="light-on-dark")
    items = [_png(tmp_path / "w.png", _digit(False)), _png(tmp_path / "b.png", _digit(True))]
    inputs = task.read_inputs(items)
    assert inputs.names == items
    assert torch.equal(inputs.data[0], inputs.data[1])  # inverted back to white on black
    assert inputs.example_notes == {1: ["inverted: light background"]}
    assert inputs.notes == [f"{items[1]}: inverted: light background"]
    rows = task.rows(inputs, 0, torch.tensor([[2.0, 0.0], [2.0, 0.0]]), 3)
    assert "notes" not in rows[0] and rows[1]["notes"] == ["inverted: light background"]
    assert rows[0]["label"] == "a" and rows[0]["score"] == pytest.approx(1 / (1 + np.exp(-2)))


def test_a_photo_model_takes_images_as_training_read_them(tmp_path: Path) -> None:
    task = ImageClassification(["a", "b"], image_shape=(1, 28, 28))  # polarity "none"
    inputs = task.read_inputs([_png(tmp_path / "b.png", _digit(True))])
    assert inputs.notes == [] and int(inputs.data[0, 0, 0, 0]) == 255  # not inverted


def test_an_image_request_over_the_pixel_limit_is_refused_by_name() -> None:
    from PIL import Image

    body = io.BytesIO()
    Image.fromarray(_digit(False)).save(body, format="PNG")
    task = ImageClassification(["a", "b"], image_shape=(1, 28, 28))
    assert task.decode_request(body.getvalue(), ServingLimits()).data.shape == (1, 1, 28, 28)
    with pytest.raises(TensorfabError) as info:
        task.decode_request(body.getvalue(), ServingLimits(max_pixels=100))
    assert str(info.value) == (
        "request body: image is 28x28 = 784 pixels, over the limit of 100 pixels; "
        "refused before decoding (a decompression bomb?)"
    )
    with pytest.raises(TensorfabError, match="not an image PIL can read"):
        task.decode_request(b"GIF89a nonsense", ServingLimits())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "request body: malformed JSON"),
        (json.dumps({"instances": [3]}).encode(), 'expected {"instances": ["text", ...]}'),
        (json.dumps({"instances": [" "]}).encode(), "request body: empty text"),
        (json.dumps({"instances": ["a"] * 1025}).encode(), "1025 texts; at most 1024"),
        (
            b'{"instances": ["ok", "Z\\u00fcrich \\udcff"]}',
            "text 1: not valid Unicode (a lone surrogate at character 7)",
        ),
    ],
)
def test_a_bad_text_request_is_one_message(body: bytes, message: str) -> None:
    with pytest.raises(TensorfabError, match=re.escape(message)):
        request_texts(body)
    assert request_texts(json.dumps({"text": "a b"}).encode()) == ["a b"]


def test_predict_refuses_text_that_is_not_unicode(tmp_path: Path) -> None:
    task = task_from_meta(METAS["token-classification"])
    with pytest.raises(TensorfabError, match=r"predict: argument 2: not valid Unicode"):
        task.read_inputs(["fine", "bad \udcff byte"])  # what argv holds for a 0xff byte
    binary = tmp_path / "texts.txt"
    binary.write_bytes(b"one\ntwo \xff\n")
    with pytest.raises(
        TensorfabError, match=r"texts.txt:2: invalid UTF-8 \(byte 0xff at column 5\)"
    ):
        task.read_inputs([str(binary)])


def test_a_task_without_its_package_cannot_tokenize_and_says_so() -> None:
    task = task_from_meta(METAS["token-classification"])
    with pytest.raises(TensorfabError, match="token-classification: needs package_dir or encoder"):
        task.input_lengths([])


HF_FORMS = {"token-classification", "text-classification"}


@pytest.mark.parametrize("name", sorted(set(METAS) - HF_FORMS))
def test_tasks_without_a_hugging_face_form_refuse_export_in_one_line(
    name: str, tmp_path: Path
) -> None:
    task = task_from_meta(METAS[name])
    with pytest.raises(TensorfabError) as info:
        task.hf_export(torch.nn.Linear(1, 1), tmp_path)
    message = str(info.value)
    assert message.startswith(f"export --format hf: {name} models have no Hugging Face form")
    assert message.endswith(
        "only token-classification and text-classification models export to one "
        "(use the ONNX export: tensorfab export MODEL --repo REPO)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_text_longer_than_a_file_name_is_a_text_not_an_error() -> None:
    # a 262-character CoNLL sentence made predict fail with "File name too long"
    task = task_from_meta(METAS["token-classification"])
    long = " ".join(["word"] * 80)
    assert task.read_inputs([long, "short text"]).data == [long, "short text"]


def test_predict_refuses_a_folder_and_an_empty_text_given_to_a_text_model(tmp_path: Path) -> None:
    task = task_from_meta(METAS["token-classification"])
    with pytest.raises(TensorfabError) as info:
        task.read_inputs([str(tmp_path)])
    assert str(info.value) == (
        f"predict: {tmp_path}: is a directory; give a text or a file of texts (one a line)"
    )
    with pytest.raises(TensorfabError, match=r"^predict: argument 2: empty text$"):
        task.read_inputs(["fine", "  "])
    missing = str(tmp_path / "texts.txt")
    with pytest.raises(TensorfabError) as info:
        task.read_inputs([missing])
    assert str(info.value) == (
        f"predict: {missing}: no such file (to predict it as a text, add a space: '{missing} ')"
    )
    assert task.read_inputs(["notes.txt ", "U.S."]).data == ["notes.txt ", "U.S."]


def test_an_image_model_reads_a_tiff_by_its_content_and_names_other_files(tmp_path: Path) -> None:
    from PIL import Image

    task = ImageClassification(["a", "b"], image_shape=(1, 28, 28))
    Image.fromarray(_digit(True)).save(tmp_path / "d.tiff")
    png = _png(tmp_path / "d.png", _digit(True))
    read = task.read_inputs([str(tmp_path / "d.tiff"), png]).data
    assert torch.equal(read[0], read[1])  # the TIFF was decoded as the PNG was, no IDX error
    (tmp_path / "notes.txt").write_text("not an image\n")
    with pytest.raises(TensorfabError) as info:
        task.read_inputs([str(tmp_path / "notes.txt")])
    assert str(info.value) == (
        f"{tmp_path / 'notes.txt'}: neither an image (png, jpg, tiff, ...) nor an IDX file "
        "(magic 0x00000803); predict reads those"
    )
    with pytest.raises(TensorfabError) as info:
        task.read_inputs([str(tmp_path)])
    assert str(info.value) == (
        f"{tmp_path}: is a directory; predict reads image or IDX files, not folders "
        "(give DIR/*.png)"
    )
