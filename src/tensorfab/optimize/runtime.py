"""Loaded models: one repository version that maps named input arrays to logits.

A repository version folder holds what one of the registered backends runs: an exported
ONNX graph (``model.onnx``, onnxruntime) or a model package (``weights.safetensors``,
PyTorch through the same graph that export traces); :data:`BACKENDS` holds one entry per
backend (``optimize.backends``), with the files that identify its versions, and
:func:`load_runtime` is the one way to load a version. Every backend takes what the task
takes on the wire, described by :func:`input_signature`, so the server, the parity report
and the latency report treat every variant alike. The PyTorch backend can run in
fp16/bf16, compiled, or replayed from CUDA graphs (:class:`TorchSettings`); onnxruntime
picks its execution providers by device (:func:`onnx_providers`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tensorfab.errors import TensorfabError
from tensorfab.optimize.graphs import BucketedGraphs
from tensorfab.package.io import META_FILE
from tensorfab.package.manifest import check_manifest
from tensorfab.registry import Entry, Registry
from tensorfab.tasks import TensorSpec, task_from_meta

ONNX_FILE = "model.onnx"
AUTO = "auto"  # the backend whose files the version holds (see detect_backend)
PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# onnxruntime's NVIDIA providers, best first: TensorRT builds fused engines, CUDA runs the
# graph op by op; CPU always closes the list so an op neither supports still runs.
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"


def input_signature(meta: dict[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of a version's inference graph: its task's signature."""
    return task_from_meta(meta).signature()


@dataclass(frozen=True)
class TorchSettings:
    """How the PyTorch backend runs a package; the repository's config.yaml keys.

    ``precision`` fp16/bf16 stores the weights in that type and runs under autocast, so
    softmax, layer norm and the loss-free reductions autocast keeps in fp32 stay there.
    ``compile`` wraps the graph in ``torch.compile(dynamic=True)``: a server sees every
    batch size and sequence length, and recompiling per shape would stall requests.
    ``cuda_graphs`` captures one CUDA graph per (batch, sequence) bucket (see
    :mod:`tensorfab.optimize.graphs`), because a graph replays fixed shapes only.
    """

    precision: str = "fp32"
    compile: bool = False
    cuda_graphs: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str) -> TorchSettings:
        """Read the settings of a config.yaml or a package's ``runtime`` record."""
        precision = values.get("precision", "fp32")
        if precision not in PRECISIONS:
            choices = ", ".join(PRECISIONS)
            raise TensorfabError(f"{where}: precision {precision!r}; choose from {choices}")
        flags = {}
        for key in ("compile", "cuda_graphs"):
            flag = values.get(key, False)
            if not isinstance(flag, bool):
                raise TensorfabError(f"{where}: {key} must be true or false, not {flag!r}")
            flags[key] = flag
        return cls(precision, **flags)

    @property
    def variant(self) -> str:
        """The variant name export gives these settings: torch-bf16, torch-cudagraphs, ..."""
        parts = [self.precision] if self.precision != "fp32" else []
        parts += ["compile"] * self.compile + ["cudagraphs"] * self.cuda_graphs
        return "torch-" + "-".join(parts or ["fp32"])

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def torch_unsupported(settings: TorchSettings, device: str) -> str | None:
    """Why ``settings`` cannot run on ``device`` (a resolved torch device string), or None.

    fp16 on a CPU is slow and partly unimplemented, and CUDA graphs exist on NVIDIA GPUs
    only; compile with CUDA graphs would stack two graph captures, so it is refused too.
    """
    if settings.compile and settings.cuda_graphs:
        return f"{settings.variant}: choose compile or cuda_graphs, not both"
    on_cuda = device.startswith("cuda")
    if not on_cuda and (settings.precision == "fp16" or settings.cuda_graphs):
        return f"{settings.variant} needs a CUDA GPU (device is {device})"
    return None


@dataclass
class LoadedModel:
    """A loaded model version: ``model(feed) -> logits`` on numpy arrays, thread-safe.

    ``device`` is where it really runs: an ONNX model asked for ``cuda`` on a machine
    without a GPU provider runs on ``cpu`` and says so in ``notes``.
    """

    backend: str
    device: str
    meta: dict[str, Any]
    run: Callable[[dict[str, np.ndarray]], np.ndarray] = field(repr=False)
    providers: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    settings: TorchSettings | None = None  # torch backend only
    # computes only the real positions of a padded batch (``models.unpadded``): a batch of
    # mixed lengths costs its tokens, so the server does not split it by length
    ragged: bool = False

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.run(feed)

    @property
    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return input_signature(self.meta)

    def describe(self) -> dict[str, Any]:
        """Where and how it runs, for reports: backend, device, providers, notes, settings."""
        return {
            "backend": self.backend,
            "device": self.device,
            "providers": list(self.providers),
            "notes": list(self.notes),
            "settings": self.settings.as_dict() if self.settings else None,
            "ragged": self.ragged,
        }


@dataclass(frozen=True)
class LoadConfig:
    """What a backend loads a version with: the device asked for (``cpu``, ``cuda[:N]``,
    ``auto``), onnxruntime's intra-op threads, and the torch settings (None: those export
    recorded in the version's tensorfab.json, else plain fp32 eager)."""

    device: str = "cpu"
    threads: int | None = None
    settings: TorchSettings | None = None


# name -> load(version_dir, LoadConfig) -> LoadedModel, with metadata ``files`` (any of
# them in a version folder identifies the backend's versions) and ``rank`` (auto picks the
# lowest rank whose files are there). Registered by optimize.backends.
BACKENDS: Registry[LoadedModel] = Registry("backend")


def backend_names() -> tuple[str, ...]:
    """What ``backend`` may be: ``auto`` and every registered backend."""
    return (AUTO, *BACKENDS.names())


def _by_rank() -> list[Entry[LoadedModel]]:
    return sorted(BACKENDS, key=lambda entry: entry.meta["rank"])


def detect_backend(version_dir: Path) -> str:
    """The backend whose files ``version_dir`` holds (the lowest rank when several do)."""
    for entry in _by_rank():
        if any((version_dir / f).is_file() for f in entry.meta["files"]):
            return entry.name
    files = " nor ".join(f for entry in _by_rank() for f in entry.meta["files"])
    raise TensorfabError(f"{version_dir}: neither {files} in it")


def load_runtime(
    version_dir: str | Path,
    backend: str = AUTO,
    device: str = "cpu",
    threads: int | None = None,
    settings: TorchSettings | None = None,
) -> LoadedModel:
    """Load ``version_dir`` with ``backend`` ("auto": ONNX if there is a graph, else PyTorch).

    ``settings`` apply to the torch backend; left out, those export recorded in the
    version's tensorfab.json (``runtime``) apply, else plain fp32 eager.
    """
    path = Path(version_dir)
    if not (path / META_FILE).is_file():
        raise TensorfabError(f"{path}: no {META_FILE} (not an exported model or a model package)")
    check_manifest(path)
    if backend not in backend_names():
        choices = ", ".join(backend_names())
        raise TensorfabError(f"{path}: backend {backend!r}; choose from {choices}")
    entry = BACKENDS.get(detect_backend(path) if backend == AUTO else backend)
    files = entry.meta["files"]
    if not any((path / f).is_file() for f in files):
        raise TensorfabError(f"{path}: backend {entry.name} needs {' or '.join(files)}")
    return entry.builder(path, LoadConfig(device, threads, settings))


def load_reported_runtime(
    version_dir: str | Path, backend: str = "auto", device: str = "cpu", **kwargs: Any
) -> LoadedModel:
    """:func:`load_runtime` for reports, without the warnings that only repeat its notes.

    A report lists each runtime's notes (``describe()``) and ``tensorfab export`` prints
    them as ``note:`` lines; the same text as a raw RuntimeWarning with a source line
    before it told the user nothing more. Any other warning still goes through.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime = load_runtime(version_dir, backend, device, **kwargs)
    for w in caught:
        if not any(str(w.message).endswith(note) for note in runtime.notes):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return runtime


def onnx_providers(device: str, available: Sequence[str] | None = None) -> list[str]:
    """The execution providers for ``device``, best first, among those installed.

    ``cpu``: CPU only. ``cuda``/``cuda:N``: TensorRT, CUDA, then CPU, keeping the installed
    ones; with neither GPU provider installed this is CPU alone and :func:`provider_notes`
    says so (a fallback with a note rather than an error, so a server configured for a GPU
    still answers on a machine without one, and its report shows why it is slow).
    ``auto``: the installed GPU providers, else CPU. A pure function of ``available``
    (default: ``onnxruntime.get_available_providers()``) so the choice can be tested
    without a GPU.
    """
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    if device == "cpu":
        return [CPU_PROVIDER]
    if device in ("auto", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()):
        return [p for p in GPU_PROVIDERS if p in available] + [CPU_PROVIDER]
    raise TensorfabError(f"device {device!r}: choose auto, cpu, cuda or cuda:N for onnxruntime")


def provider_notes(device: str, providers: Sequence[str]) -> list[str]:
    """Warnings about a session whose providers fall short of what ``device`` asked for."""
    if not device.startswith("cuda") or any(p in GPU_PROVIDERS for p in providers):
        return []
    return [
        f"device {device!r} asked, but onnxruntime has no GPU provider here "
        f"(installed: {', '.join(providers)}); running on CPU. Install onnxruntime-gpu "
        "for CUDA/TensorRT."
    ]


def onnx_session(path: Path, device: str = "cpu", threads: int | None = None) -> Any:
    """An onnxruntime session on the providers :func:`onnx_providers` picks for ``device``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Idle intra-op threads spin by default; in a server they would take the cores the
    # event loop and the other requests need, so they sleep instead (TENSORFAB_ORT_SPIN=1
    # restores spinning).
    spin = os.environ.get("TENSORFAB_ORT_SPIN", "0")
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    index = int(device[5:]) if device.startswith("cuda:") else 0
    providers: list[Any] = [
        (p, {"device_id": index}) if p in GPU_PROVIDERS else p for p in onnx_providers(device)
    ]
    return ort.InferenceSession(str(path), options, providers=providers)


def torch_forward(
    graph: torch.nn.Module, settings: TorchSettings, device: torch.device
) -> Callable[..., torch.Tensor]:
    """The graph's forward pass as ``settings`` ask: precision, then compile or CUDA graphs."""
    dtype = _DTYPES.get(settings.precision)
    if dtype is not None:
        graph.to(dtype)  # weights stored in half: no per-call cast of every matmul's weight

    def forward(*args: torch.Tensor) -> torch.Tensor:
        if dtype is None:
            return graph(*args)
        # cache_enabled=False: autocast's cast cache must not outlive a CUDA graph capture
        with torch.autocast(device.type, dtype=dtype, cache_enabled=False):
            return graph(*args)

    if settings.compile:
        return torch.compile(forward, dynamic=True)
    if settings.cuda_graphs:
        return BucketedGraphs(forward, device, capture=True)
    return forward
