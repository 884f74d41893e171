"""Use a model package after training: score it on data, predict labels for inputs.

``tensorfab evaluate`` and ``tensorfab predict`` call these; they reuse the engine's
evaluation pass, so a package scores exactly as its run reported. What the data and the
inputs are (files, texts, images) is the package's task's business: the engine reads no
file format.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tensorfab.engine.evaluate import evaluate_batches
from tensorfab.engine.runtime import create_runtime
from tensorfab.package import load_package
from tensorfab.tasks.eval_data import load_eval_split
from tensorfab.tasks.prediction import predict_rows


def evaluate_model(
    path: str, data_path: str | None = None, *, device: str = "auto", batch_size: int = 256
) -> dict[str, Any]:
    """Score a run or model package on its own test split or on ``data_path``."""
    runtime = create_runtime(device, "fp32")
    pkg = load_package(path, runtime.device)
    data, source = load_eval_split(pkg.meta, data_path)
    batches = pkg.task.eval_batches(data, batch_size, runtime.device)
    result = evaluate_batches(pkg.model, pkg.task, batches.epoch(0), runtime)
    return {
        "model": str(pkg.path),
        "data": source,
        "n": result.n,
        "device": str(runtime.device),
        "scores": result.scores,
    }


@torch.no_grad()
def predict_inputs(
    path: str, inputs: list[str], *, device: str = "auto", top_k: int = 3
) -> list[dict[str, Any]]:
    """Result rows for the inputs the package's task reads (image or IDX files, texts)."""
    return predict_with_notes(path, inputs, device=device, top_k=top_k)[0]


@torch.no_grad()
def predict_with_notes(
    path: str, inputs: list[str], *, device: str = "auto", top_k: int = 3
) -> tuple[list[dict[str, Any]], list[str]]:
    """:func:`predict_inputs` and the task's notes on what it did to the inputs."""
    runtime = create_runtime(device, "fp32")
    pkg = load_package(path, runtime.device)
    task = pkg.task
    given = task.read_inputs(inputs)
    graph = task.graph(pkg.model)
    names = [s.name for s in task.signature()[0]]

    def logits_of(feed: dict[str, np.ndarray]) -> torch.Tensor:
        args = [torch.from_numpy(feed[n]).to(runtime.device) for n in names]
        return graph(*args).float().cpu()

    return predict_rows(task, given, logits_of, top_k=top_k), list(given.notes)
