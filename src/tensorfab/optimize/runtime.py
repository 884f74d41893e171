"""Runtimes: one loaded model version that maps named input arrays to logits.

A repository version folder holds either an exported ONNX graph (``model.onnx``, run by
onnxruntime) or a model package (``weights.safetensors``, run by PyTorch through the same
graph that export traces). Both take what the task takes on the wire, described by
:func:`input_signature`, so the server, the parity report and the latency report can treat
every variant alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tensorfab.errors import TensorfabError
from tensorfab.package.io import META_FILE, WEIGHTS_FILE

ONNX_FILE = "model.onnx"
BACKENDS = ("auto", "onnxruntime", "torch")


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a model's signature; ``shape`` excludes the batch axis (-1: any)."""

    name: str
    datatype: str  # KServe v2 / Triton datatype name: UINT8, INT64, FP32, ...
    shape: tuple[int, ...]


def input_signature(meta: dict[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of a package's inference graph (see ``optimize.export``)."""
    shape = meta["input"]
    classes = len(meta["labels"])
    if shape["kind"] == "image":
        image = (shape["channels"], shape["height"], shape["width"])
        return [TensorSpec("images", "UINT8", image)], [TensorSpec("logits", "FP32", (classes,))]
    inputs = [TensorSpec("input_ids", "INT64", (-1,)), TensorSpec("attention_mask", "INT64", (-1,))]
    per_token = meta["task"] == "token-classification"
    logits = (-1, classes) if per_token else (classes,)
    return inputs, [TensorSpec("logits", "FP32", logits)]


@dataclass
class Runtime:
    """A loaded model version: ``runtime(feed) -> logits`` on numpy arrays, thread-safe."""

    backend: str
    device: str
    meta: dict[str, Any]
    run: Callable[[dict[str, np.ndarray]], np.ndarray] = field(repr=False)
    providers: tuple[str, ...] = ()

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.run(feed)

    @property
    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return input_signature(self.meta)


def detect_backend(version_dir: Path) -> str:
    if (version_dir / ONNX_FILE).is_file():
        return "onnxruntime"
    if (version_dir / WEIGHTS_FILE).is_file():
        return "torch"
    raise TensorfabError(f"{version_dir}: neither {ONNX_FILE} nor {WEIGHTS_FILE} in it")


def load_runtime(
    version_dir: str | Path, backend: str = "auto", device: str = "cpu", threads: int | None = None
) -> Runtime:
    """Load ``version_dir`` with ``backend`` ("auto": ONNX if there is a graph, else PyTorch)."""
    path = Path(version_dir)
    if not (path / META_FILE).is_file():
        raise TensorfabError(f"{path}: no {META_FILE} (not an exported model or a model package)")
    if backend not in BACKENDS:
        raise TensorfabError(f"{path}: backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = detect_backend(path)
    if backend == "onnxruntime":
        return _onnx_runtime(path, device, threads)
    return _torch_runtime(path, device)


def onnx_session(path: Path, device: str = "cpu", threads: int | None = None) -> Any:
    """An onnxruntime session on the CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx_runtime(path: Path, device: str, threads: int | None) -> Runtime:
    if not (path / ONNX_FILE).is_file():
        raise TensorfabError(f"{path}: backend onnxruntime needs {ONNX_FILE}")
    meta = json.loads((path / META_FILE).read_text())
    session = onnx_session(path / ONNX_FILE, device, threads)

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["logits"], feed)[0]

    return Runtime("onnxruntime", device, meta, run, tuple(session.get_providers()))


def _torch_runtime(path: Path, device: str) -> Runtime:
    from tensorfab.optimize.export import inference_graph
    from tensorfab.package import load_package

    pkg = load_package(path, device)
    graph = inference_graph(pkg)[0]
    dev = torch.device(device)

    @torch.inference_mode()
    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        args = [torch.from_numpy(np.ascontiguousarray(feed[t.name])).to(dev) for t in pkg_inputs]
        return graph(*args).float().cpu().numpy()

    pkg_inputs = input_signature(pkg.meta)[0]
    return Runtime("torch", device, pkg.meta, run, ())
