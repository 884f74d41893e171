"""The process-wide execution settings of a run, set once and logged.

Device, precision policy (autocast dtype, grad scaler for fp16), TF32 switches, the CPU
thread count and seeds live here so that no other module flips global state.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import numpy as np
import torch

from tensorfab.engine.dropout import bulk_dropout
from tensorfab.engine.sparse_rows import SparseRows, create_sparse_rows
from tensorfab.hardware import (
    ThreadChoice,
    choose_threads,
    device_name,
    keep_freed_memory,
    resolve_device,
    resolve_precision,
)

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Runtime:
    device: torch.device
    precision: str  # fp32 | tf32 | bf16 | fp16, resolved
    threads: ThreadChoice | None = None  # set by apply_threads once the model is known
    precision_reason: dict[str, object] | None = None  # why (auto on a CPU: the numbers)
    channels_last: bool = False  # 4-D weights in channels-last layout
    host_memory: dict[str, int] | None = None  # glibc malloc settings (CPU training)
    bulk_dropout: int = 0  # dropout layers drawing their masks in bulk (CPU training)
    sparse_rows: SparseRows | None = None  # embedding tables stepped by their rows (CPU)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return _AUTOCAST.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Mixed-precision context for forward passes (a no-op for fp32/tf32)."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling is needed for fp16 only; a disabled scaler is a pass-through."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def describe(self) -> dict[str, object]:
        return {
            "device": str(self.device),
            "device_name": device_name(self.device),
            "precision": self.precision,
            "precision_choice": self.precision_reason,
            "channels_last": self.channels_last,
            "host_memory": self.host_memory,
            "bulk_dropout_layers": self.bulk_dropout,
            "sparse_embedding_rows": self.sparse_rows.describe() if self.sparse_rows else None,
            "threads": self.threads.to_dict() if self.threads else None,
        }

    def place_model(self, model: torch.nn.Module, channels_last: str) -> torch.nn.Module:
        """The model on the device; convolution weights channels-last where asked (``auto``:
        on a CPU, where oneDNN's convolutions and pooling run faster in that layout; the
        activations follow the weights)."""
        model = model.to(self.device)
        self.channels_last = channels_last == "on" or (
            channels_last == "auto" and self.device.type == "cpu"
        )
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.device.type == "cpu":  # torch's CPU dropout draws a number per element
            self.bulk_dropout = bulk_dropout(model)
        return model

    def step_rows_sparse(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """On a CPU, big embedding tables get sparse gradients and a row-wise step of the
        same optimizer (``engine/sparse_rows.py``); called for a plain single-process run
        (no DP-SGD, DDP or compile, which expect dense gradients)."""
        if self.device.type == "cpu":
            self.sparse_rows = create_sparse_rows(model, optimizer)

    def apply_threads(self, requested: int | str, parameters: int) -> ThreadChoice:
        """Choose and set torch's intra-op threads (``train.threads``); logged in the report."""
        self.threads = choose_threads(requested, parameters)
        torch.set_num_threads(self.threads.threads)
        return self.threads

    def keep_host_memory(self) -> dict[str, int] | None:
        """On a CPU, glibc malloc keeps freed memory for the rest of the process (a step's
        big tensors are not page-faulted in again every step); logged in the report."""
        if self.device.type == "cpu":
            self.host_memory = keep_freed_memory()
        return self.host_memory


def create_runtime(device: str, precision: str) -> Runtime:
    """Resolve device and precision from the spec and apply the matching global switches."""
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        # TF32 matmuls for the tf32 policy and under autocast (whatever stays fp32 there).
        allow = prec != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow
        torch.backends.cudnn.benchmark = True
    return Runtime(dev, prec)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
