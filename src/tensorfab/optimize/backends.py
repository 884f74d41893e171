"""The serving backends, one registration each: ``load(version_dir, config) -> LoadedModel``.

Each entry of :data:`~tensorfab.optimize.runtime.BACKENDS` names the files that identify
its versions and a rank (``backend: auto`` takes the lowest rank whose files a version
holds). A new backend is one more registration here; ``load_runtime``, the server, the
parity and the latency reports load every version through the registry.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from tensorfab.errors import TensorfabError
from tensorfab.hardware import resolve_device
from tensorfab.models.unpadded import unpad_encoders
from tensorfab.optimize.export import inference_graph
from tensorfab.optimize.runtime import (
    BACKENDS,
    GPU_PROVIDERS,
    ONNX_FILE,
    LoadConfig,
    LoadedModel,
    TorchSettings,
    onnx_session,
    provider_notes,
    torch_forward,
    torch_unsupported,
)
from tensorfab.package import load_package
from tensorfab.package.io import META_FILE, WEIGHTS_FILE, read_meta
from tensorfab.tasks import OUTPUT


@BACKENDS.register("onnxruntime", files=(ONNX_FILE,), rank=0)
def load_onnx(path: Path, config: LoadConfig) -> LoadedModel:
    """An exported ONNX graph on the execution providers the device asks for."""
    meta = read_meta(path)  # every field checked, as for the torch backend
    session = onnx_session(path / ONNX_FILE, config.device, config.threads)
    providers = tuple(session.get_providers())
    notes = tuple(provider_notes(config.device, providers))
    for note in notes:
        warnings.warn(f"{path}: {note}", RuntimeWarning, stacklevel=3)
    gpu = any(p in GPU_PROVIDERS for p in providers)
    where = (config.device if config.device.startswith("cuda") else "cuda") if gpu else "cpu"

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        return session.run([OUTPUT], feed)[0]

    ragged = bool(meta.get("onnx", {}).get("ragged"))  # exported over the real tokens
    return LoadedModel("onnxruntime", where, meta, run, providers, notes, ragged=ragged)


@BACKENDS.register("torch", files=(WEIGHTS_FILE,), rank=1)
def load_torch(path: Path, config: LoadConfig) -> LoadedModel:
    """A model package run by PyTorch through export's graph, with its torch settings."""
    settings = config.settings
    if settings is None:
        recorded = read_meta(path).get("runtime", {})
        settings = TorchSettings.from_mapping(recorded, f"{path / META_FILE}: runtime")
    dev = resolve_device(config.device, field=f"{path}: device")
    problem = torch_unsupported(settings, str(dev))
    if problem:
        raise TensorfabError(f"{path}: {problem}")
    pkg = load_package(path, dev)
    graph = inference_graph(pkg)[0]
    # eager only: the packed path's data-dependent shapes would break a compiled graph or a
    # captured CUDA graph
    eager = not (settings.compile or settings.cuda_graphs)
    ragged = eager and unpad_encoders(graph) > 0
    forward = torch_forward(graph.eval(), settings, dev)
    names = [t.name for t in pkg.task.signature()[0]]

    @torch.inference_mode()
    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        args = [torch.from_numpy(np.ascontiguousarray(feed[n])).to(dev) for n in names]
        return forward(*args).float().cpu().numpy()

    return LoadedModel("torch", str(dev), pkg.meta, run, (), (), settings, ragged)
