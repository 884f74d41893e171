"""Running out of GPU memory ends in a message with the batch size and what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tensorfab.engine.fit import train_epoch
from tensorfab.engine.signals import StopFlag
from tensorfab.engine.state import TrainState
from tensorfab.engine.train import setup
from tensorfab.errors import TensorfabError
from tensorfab.spec import load_spec


def test_out_of_memory_names_batch_size_and_remedy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(
        None,
        [
            "data.limit_train=64",
            "data.limit_test=32",
            "train.device=cpu",
            "data.batch_size=32",
            f"output.runs_dir={tmp_path}",
        ],
    )
    ctx = setup(spec, quiet=True)

    def oom(*_args: object) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ctx.task, "logits", oom)
    with pytest.raises(TensorfabError, match=r"out of GPU memory .* data.batch_size=32: lower"):
        train_epoch(ctx, TrainState(), StopFlag())
