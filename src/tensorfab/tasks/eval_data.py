"""The data a trained model is scored or calibrated on, rebuilt from what its package recorded.

``tensorfab evaluate`` (engine) and the parity reports of ``tensorfab export`` (optimize)
both read evaluation data through here (the package's own test split or a user's file, read
by the package's task); static INT8 quantization calibrates on the package's own training
split, also from here, so that no test example ever shapes a quantized model that is then
scored on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tensorfab.data import create_dataset
from tensorfab.errors import TensorfabError
from tensorfab.tasks.base import Task
from tensorfab.tasks.registry import task_from_meta


def _package_splits(meta: dict[str, Any]) -> tuple[Any, str]:
    """The splits the package was trained and tested on, rebuilt from its data spec."""
    spec = dict(meta["data"]["spec"])
    fmt = spec.pop("format")
    return create_dataset(fmt, **spec), fmt


def load_eval_split(meta: dict[str, Any], data_path: str | None) -> tuple[Any, str]:
    """The package's own test split, or the user's file read by the package's task (images
    by what the path holds, texts by the file's suffix and the package's text format)."""
    if data_path is None:
        splits, fmt = _package_splits(meta)
        return splits.test, f"{fmt} test split{_test_file(meta)}"
    path = Path(data_path)
    if not path.exists():
        raise TensorfabError(f"{path}: no such file or folder")
    return task_from_meta(meta).read_eval_data(meta, path), str(path)


def _test_file(meta: dict[str, Any]) -> str:
    """Which file the test split is, where the package says: its own test file, or the
    eval file, which validation also reads (CoNLL-2003 read with only valid.txt)."""
    spec, split = meta["data"]["spec"], meta["data"].get("split")
    if spec.get("test_path"):
        return f" ({spec['test_path']})"
    if isinstance(split, dict) and split.get("test") == "eval" and spec.get("eval_path"):
        return f" (the eval file {spec['eval_path']}, also the validation split)"
    return ""


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
    return task_from_meta(meta).take_samples(train, index), source


def eval_batches(task: Task, data: Any, batch_size: int, device: torch.device) -> Any:
    """Unshuffled batches of an evaluation split, in the form the task's batches take."""
    return task.eval_batches(data, batch_size, device)
