"""PyTorch's process-wide switches, saved and restored around each side of a benchmark.

The engine's runtime turns TF32 and cuDNN autotuning on for a GPU run (that is its job);
the baseline must run with PyTorch's defaults, as a tutorial does, whichever side ran
first. So each side runs inside :func:`kept_switches`, and the baseline additionally inside
:func:`pytorch_defaults`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

# PyTorch's defaults: no TF32 for matmuls, TF32 for cuDNN convolutions, no autotuning.
DEFAULTS = {"matmul_tf32": False, "cudnn_tf32": True, "cudnn_benchmark": False}


def _read() -> dict[str, bool]:
    return {
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


def _write(values: dict[str, bool]) -> None:
    torch.backends.cuda.matmul.allow_tf32 = values["matmul_tf32"]
    torch.backends.cudnn.allow_tf32 = values["cudnn_tf32"]
    torch.backends.cudnn.benchmark = values["cudnn_benchmark"]


@contextmanager
def kept_switches() -> Iterator[None]:
    """Whatever the block switches (the engine also sets the thread count), the previous
    settings come back after it."""
    saved, threads = _read(), torch.get_num_threads()
    try:
        yield
    finally:
        _write(saved)
        torch.set_num_threads(threads)


@contextmanager
def pytorch_defaults() -> Iterator[dict[str, bool]]:
    """Run the block with PyTorch's default switches; yields them for the record."""
    with kept_switches():
        _write(DEFAULTS)
        yield dict(DEFAULTS)
