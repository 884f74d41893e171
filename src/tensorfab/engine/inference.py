"""Use a model package after training: score it on data, predict labels for inputs.

``tensorfab evaluate`` and ``tensorfab predict`` call these; they reuse the engine's
evaluation pass, so a package scores exactly as its run reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tensorfab.data import ImageData, create_dataset, load_eval_data
from tensorfab.data.batching import TensorBatches
from tensorfab.data.idx import read_idx_images
from tensorfab.data.imagefolder import read_image_file
from tensorfab.data.sequence_batching import SequenceBatches
from tensorfab.engine.evaluate import evaluate_batches
from tensorfab.engine.runtime import create_runtime
from tensorfab.errors import TensorfabError
from tensorfab.package import LoadedPackage, load_package
from tensorfab.tasks.text_tasks import predict_texts

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def detect_format(path: Path) -> str:
    """imagefolder for a folder of class folders, idx for IDX files or a folder of them."""
    if not path.exists():
        raise TensorfabError(f"{path}: no such file or folder")
    if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        return "imagefolder"
    return "idx"


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


def _image_eval_data(pkg: LoadedPackage, path: Path) -> ImageData:
    shape = pkg.meta["input"]
    fmt = detect_format(path)
    data, found = load_eval_data(
        fmt, str(path), image_size=shape["height"], channels=shape["channels"]
    )
    if tuple(data.images.shape[1:]) != (shape["channels"], shape["height"], shape["width"]):
        raise TensorfabError(
            f"{path}: images are {tuple(data.images.shape[1:])} but the model expects "
            f"{(shape['channels'], shape['height'], shape['width'])} (C, H, W)"
        )
    return _remap(data, found, pkg.meta["labels"], path)


def _text_eval_data(pkg: LoadedPackage, path: Path) -> list[Any]:
    spec = pkg.meta["data"]["spec"]
    fmt = "conll" if pkg.meta["task"] == "token-classification" else "text"
    options = {k: spec[k] for k in ("text_column", "label_column", "text_format")}
    examples, _ = load_eval_data(fmt, str(path), **options)
    found = {t for ex in examples for t in getattr(ex, "tags", [getattr(ex, "label", None)])}
    unknown = sorted(found - set(pkg.meta["labels"]))
    if unknown:
        raise TensorfabError(f"{path}: labels {unknown} are not among the model's labels")
    return examples


def _eval_data(pkg: LoadedPackage, data_path: str | None) -> tuple[Any, str]:
    """The package's own test split, or the user's file read by the package's format."""
    if data_path is None:
        spec = dict(pkg.meta["data"]["spec"])
        fmt = spec.pop("format")
        return create_dataset(fmt, **spec).test, f"{fmt} test split"
    path = Path(data_path)
    if not path.exists():
        raise TensorfabError(f"{path}: no such file or folder")
    if pkg.meta["input"]["kind"] == "text":
        return _text_eval_data(pkg, path), str(path)
    return _image_eval_data(pkg, path), str(path)


def _batches(pkg: LoadedPackage, data: Any, batch_size: int, device: torch.device) -> Any:
    if isinstance(data, ImageData):
        return TensorBatches((data.images, data.labels), batch_size, device=device, shuffle=False)
    ids, labels, _ = pkg.task.encode(data)
    pad = pkg.task.tokenizer.pad_token_id or 0
    return SequenceBatches(ids, labels, batch_size, device=device, shuffle=False, pad_id=pad)


def evaluate_model(
    path: str, data_path: str | None = None, *, device: str = "auto", batch_size: int = 256
) -> dict[str, Any]:
    """Score a run or model package on its own test split or on ``data_path``."""
    runtime = create_runtime(device, "fp32")
    pkg = load_package(path, runtime.device)
    data, source = _eval_data(pkg, data_path)
    batches = _batches(pkg, data, batch_size, runtime.device)
    result = evaluate_batches(pkg.model, pkg.task, batches.epoch(0), runtime)
    return {
        "model": str(pkg.path),
        "data": source,
        "n": result.n,
        "device": str(runtime.device),
        "scores": result.scores,
    }


def _read_inputs(inputs: list[str], shape: dict[str, int]) -> tuple[torch.Tensor, list[str]]:
    images, names = [], []
    for item in inputs:
        p = Path(item)
        if not p.is_file():
            raise TensorfabError(f"{p}: no such file")
        if p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(read_image_file(p, shape["channels"], shape["height"])[None])
            names.append(str(p))
        else:
            batch = read_idx_images(p)
            images.append(batch)
            names += [f"{p}[{i}]" for i in range(len(batch))]
    stacked = torch.cat(images)
    want = (shape["channels"], shape["height"], shape["width"])
    if tuple(stacked.shape[1:]) != want:
        raise TensorfabError(
            f"inputs are {tuple(stacked.shape[1:])} images; the model expects {want}"
        )
    return stacked, names


def _texts(inputs: list[str]) -> list[str]:
    """Each input is a file of lines (one text per line) or a text itself."""
    texts: list[str] = []
    for item in inputs:
        p = Path(item)
        if len(item) < 4096 and p.is_file():
            lines = p.read_text(encoding="utf-8").splitlines()
            texts += [line for line in lines if line.strip()]
        else:
            texts.append(item)
    if not texts:
        raise TensorfabError("predict: no text to predict (empty input files?)")
    return texts


@torch.no_grad()
def predict_inputs(
    path: str, inputs: list[str], *, device: str = "auto", top_k: int = 3
) -> list[dict[str, Any]]:
    """Labels and probabilities for image files and/or IDX image files."""
    runtime = create_runtime(device, "fp32")
    pkg = load_package(path, runtime.device)
    if pkg.meta["input"]["kind"] == "text":
        return predict_texts(pkg.model, pkg.task, _texts(inputs), runtime.device)
    images, names = _read_inputs(inputs, pkg.meta["input"])
    out = []
    for start in range(0, len(images), 1024):
        batch = (images[start : start + 1024].to(runtime.device),)
        out.append(pkg.task.predict(pkg.task.logits(pkg.model, batch)).probs.cpu())
    probs = torch.cat(out)
    labels = pkg.meta["labels"]
    return [_prediction(name, p, labels, top_k) for name, p in zip(names, probs, strict=True)]


def _prediction(name: str, probs: torch.Tensor, labels: list[str], top_k: int) -> dict[str, Any]:
    values, index = probs.topk(min(top_k, len(labels)))
    return {
        "input": name,
        "label": labels[int(index[0])],
        "score": float(values[0]),
        "top": {labels[int(i)]: float(v) for v, i in zip(values, index, strict=True)},
    }
