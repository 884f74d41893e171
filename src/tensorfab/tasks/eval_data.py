"""The data a trained model is scored or calibrated on, rebuilt from what its package recorded.

``tensorfab evaluate`` (engine) and the parity reports of ``tensorfab export`` (optimize)
both read evaluation data through here (the package's own test split or a user's file);
static INT8 quantization calibrates on the package's own training split, also from here,
so that no test example ever shapes a quantized model that is then scored on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tensorfab.data import ImageData, create_dataset, load_eval_data
from tensorfab.data.batching import TensorBatches
from tensorfab.data.idx import MNIST_FILES, find_mnist_files
from tensorfab.data.sequence_batching import SequenceBatches
from tensorfab.data.text import file_text_format
from tensorfab.errors import TensorfabError

EVAL_IDX_ROLES = ("test_images", "test_labels")


def detect_format(path: Path) -> str:
    """imagefolder for a folder of class folders, idx for IDX files or a folder of them."""
    if not path.exists():
        raise TensorfabError(f"{path}: no such file or folder")
    if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        return "imagefolder"
    if path.is_dir():
        _check_idx_folder(path)
    elif not _looks_like_idx(path):
        raise TensorfabError(
            f"{path}: not IDX data; an image model evaluates IDX files "
            "(e.g. t10k-images-idx3-ubyte.gz) or a folder of class folders"
        )
    return "idx"


def _looks_like_idx(path: Path) -> bool:
    """IDX files open with two zero bytes, gzip with 1f 8b: anything else is some other data.

    Checked before the IDX reader guesses a labels file from the name, which for a text file
    would complain about the name instead of saying the data is of the wrong kind.
    """
    with open(path, "rb") as handle:
        return handle.read(2) in (b"\x00\x00", b"\x1f\x8b")


def _check_idx_folder(path: Path) -> None:
    """A folder without class folders must hold the IDX test pair; say so in one sentence.

    Checked here rather than left to the IDX reader, whose message for a folder lists the
    missing files and then the expected ones, the same names twice over for an empty folder.
    """
    missing = []
    for role in EVAL_IDX_ROLES:
        try:
            find_mnist_files(path, (role,))
        except TensorfabError:
            missing.append(f"{MNIST_FILES[role]}[.gz]")
    if missing:
        raise TensorfabError(
            f"{path}: no {' or '.join(missing)} (IDX test data) and no class sub-folders"
        )


def _remap(data: ImageData, found: list[str] | None, labels: list[str], path: Path) -> ImageData:
    """Express the file's labels as indices of the model's labels."""
    if found is None:  # IDX: label numbers are the model's indices
        top = int(data.labels.max()) if len(data) else -1
        if top >= len(labels):
            raise TensorfabError(f"{path}: label {top} but the model has {len(labels)} classes")
        return data
    unknown = sorted(set(found) - set(labels))
    if unknown:
        raise TensorfabError(f"{path}: classes {unknown} are not among the model's {labels}")
    index = torch.tensor([labels.index(c) for c in found], dtype=torch.long)
    return ImageData(data.images, index[data.labels])


def _image_eval_data(meta: dict[str, Any], path: Path) -> ImageData:
    shape = meta["input"]
    fmt = detect_format(path)
    data, found = load_eval_data(
        fmt, str(path), image_size=shape["height"], channels=shape["channels"]
    )
    if tuple(data.images.shape[1:]) != (shape["channels"], shape["height"], shape["width"]):
        raise TensorfabError(
            f"{path}: images are {tuple(data.images.shape[1:])} but the model expects "
            f"{(shape['channels'], shape['height'], shape['width'])} (C, H, W)"
        )
    return _remap(data, found, meta["labels"], path)


def _text_eval_data(meta: dict[str, Any], path: Path) -> list[Any]:
    spec = meta["data"]["spec"]
    fmt = "conll" if meta["task"] == "token-classification" else "text"
    options = {k: spec[k] for k in ("text_column", "label_column")}
    if fmt == "text":
        # the user's file has a format of its own: a PhraseBank model scores a CSV too
        options["text_format"] = file_text_format(path, spec.get("text_format", "auto"))
    examples, _ = load_eval_data(fmt, str(path), **options)
    found = {t for ex in examples for t in getattr(ex, "tags", [getattr(ex, "label", None)])}
    unknown = sorted(found - set(meta["labels"]))
    if unknown:
        raise TensorfabError(f"{path}: labels {unknown} are not among the model's labels")
    return examples


def _package_splits(meta: dict[str, Any]) -> tuple[Any, str]:
    """The splits the package was trained and tested on, rebuilt from its data spec."""
    spec = dict(meta["data"]["spec"])
    fmt = spec.pop("format")
    return create_dataset(fmt, **spec), fmt


def load_eval_split(meta: dict[str, Any], data_path: str | None) -> tuple[Any, str]:
    """The package's own test split, or the user's file: images by what the path holds,
    texts by the file's suffix (the package's text format only where the suffix says none)."""
    if data_path is None:
        splits, fmt = _package_splits(meta)
        return splits.test, f"{fmt} test split"
    path = Path(data_path)
    if not path.exists():
        raise TensorfabError(f"{path}: no such file or folder")
    if meta["input"]["kind"] == "text":
        return _text_eval_data(meta, path), str(path)
    return _image_eval_data(meta, path), str(path)


def load_train_split(meta: dict[str, Any], max_samples: int, seed: int = 0) -> tuple[Any, str]:
    """Up to ``max_samples`` examples of the package's training split, drawn at random.

    Drawn rather than taken from the front because files are often sorted by class, and a
    calibration set of one class would set the quantization ranges for that class only.
    """
    if max_samples < 1:
        raise TensorfabError(f"calibration samples: must be at least 1, not {max_samples}")
    splits, fmt = _package_splits(meta)
    train = splits.train
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(train), generator=g)[:max_samples]
    source = f"{fmt} train split ({len(index)} of {len(train)}, seed {seed})"
    return take_samples(train, index), source


def take_samples(data: Any, index: torch.Tensor) -> Any:
    """The examples at ``index`` of image data or a list of text examples, in that order."""
    if isinstance(data, ImageData):
        return data.subset(index)
    return [data[i] for i in index.tolist()]


def eval_batches(task: Any, data: Any, batch_size: int, device: torch.device) -> Any:
    """Unshuffled batches of an evaluation split, in the form the task's batches take."""
    if isinstance(data, ImageData):
        return TensorBatches((data.images, data.labels), batch_size, device=device, shuffle=False)
    ids, labels, _ = task.encode(data)
    pad = task.tokenizer.pad_token_id or 0
    return SequenceBatches(
        ids, labels, batch_size, device=device, shuffle=False, pad_id=pad, bucket=True
    )
