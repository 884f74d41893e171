"""Use a model package after training: score it on data, predict labels for inputs.

``tensorfab evaluate`` and ``tensorfab predict`` call these; they reuse the engine's
evaluation pass, so a package scores exactly as its run reported.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch

from tensorfab.data.idx import read_idx_images
from tensorfab.data.imagefolder import read_image_file
from tensorfab.engine.evaluate import evaluate_batches
from tensorfab.engine.runtime import create_runtime
from tensorfab.errors import TensorfabError
from tensorfab.package import load_package
from tensorfab.tasks.eval_data import eval_batches, load_eval_split
from tensorfab.tasks.prediction import image_rows, predict_texts

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def evaluate_model(
    path: str, data_path: str | None = None, *, device: str = "auto", batch_size: int = 256
) -> dict[str, Any]:
    """Score a run or model package on its own test split or on ``data_path``."""
    runtime = create_runtime(device, "fp32")
    pkg = load_package(path, runtime.device)
    data, source = load_eval_split(pkg.meta, data_path)
    batches = eval_batches(pkg.task, data, batch_size, runtime.device)
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
        logits_of = partial(pkg.task.logits, pkg.model)
        return predict_texts(logits_of, pkg.task, _texts(inputs), runtime.device)
    images, names = _read_inputs(inputs, pkg.meta["input"])
    out = []
    for start in range(0, len(images), 1024):
        batch = (images[start : start + 1024].to(runtime.device),)
        out.append(pkg.task.logits(pkg.model, batch).float().cpu())
    return image_rows(names, torch.cat(out), pkg.meta["labels"], top_k)
