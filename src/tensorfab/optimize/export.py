"""Export a model package to ONNX (dynamic batch and sequence axes) and quantize it.

The exported graph takes what the package's task takes on the wire: uint8 images (scaling
and normalisation are inside the graph, as in the package) or token ids with an attention
mask. ONNX variants: ``fp32``, ``int8-dynamic`` (onnxruntime's dynamic quantization of the
matmul/linear weights) and ``int8-static`` (weights and activations, with activation ranges
calibrated on the package's training data). Every ONNX file is checked with ``onnx.checker``.
PyTorch variants for GPUs (``torch-fp16``, ``torch-bf16``, ``torch-compile``,
``torch-cudagraphs``) are a copy of the package plus the settings that the torch runtime
(``optimize.runtime``) reads; they are written only when asked for.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path, write_text_atomic
from tensorfab.hardware import resolve_device
from tensorfab.models.unpadded import unpad_encoders
from tensorfab.optimize.runtime import TorchSettings, torch_unsupported
from tensorfab.package import LoadedPackage
from tensorfab.package.io import ENCODER_DIR, META_FILE, WEIGHTS_FILE
from tensorfab.package.manifest import write_manifest
from tensorfab.package.repository import (
    VARIANTS,
    ModelConfig,
    check_model_name,
    resolve_version,
    version_dir,
    write_model_config,
)
from tensorfab.tasks import OUTPUT
from tensorfab.tasks.base import signature_axes
from tensorfab.tasks.eval_data import eval_batches, load_train_split

OPSET = 17
# with TORCH_VARIANTS: the repository layout's VARIANTS, in that order (tested)
ONNX_VARIANTS = ("fp32", "int8-dynamic", "int8-static")
TORCH_VARIANTS = {
    "torch-fp16": TorchSettings(precision="fp16"),
    "torch-bf16": TorchSettings(precision="bf16"),
    "torch-compile": TorchSettings(compile=True),
    "torch-cudagraphs": TorchSettings(cuda_graphs=True),
}
DEFAULT_VARIANTS = ONNX_VARIANTS  # the torch ones target GPUs: written only when asked for
CALIBRATION_BATCH = 32
# the serving settings export writes into a new config.yaml beside the backend's own, so
# that the ones people tune first are in the file to edit
TUNED_FIELDS = ("max_batch_size", "max_queue_delay_us", "max_padding", "instances")


@dataclass(frozen=True)
class ExportedModel:
    variant: str
    path: Path  # repo/<name>/<version>/model.onnx (torch variants: weights.safetensors)
    input_names: tuple[str, ...]
    backend: str = "onnxruntime"
    details: dict[str, Any] = field(default_factory=dict)  # recorded in tensorfab.json

    @property
    def version_dir(self) -> Path:
        return self.path.parent


def inference_graph(
    pkg: LoadedPackage,
) -> tuple[nn.Module, tuple[torch.Tensor, ...], dict[str, Any]]:
    """The task's graph, example inputs (batch 2, sequences of 8) and ONNX dynamic axes."""
    task = pkg.task
    signature = task.signature()
    feed = task.example_feed([8, 8], np.random.default_rng(0))
    example = tuple(torch.from_numpy(feed[s.name]) for s in signature[0])
    return task.graph(pkg.model), example, signature_axes(signature)


def export_onnx(pkg: LoadedPackage, path: Path) -> ExportedModel:
    """The fp32 ONNX graph of a package, checked by onnx's checker."""
    import onnx

    pkg.model.cpu()
    graph, example, axes = inference_graph(pkg)
    graph = copy.deepcopy(graph)  # the package's own model stays as it is
    ragged = unpad_encoders(graph) > 0  # a BERT encoder computes only the real tokens
    graph.eval()
    inputs = [s.name for s in pkg.task.signature()[0]]
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but dependable
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            example,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=[OUTPUT],
            dynamic_axes=axes,
        )
    onnx.checker.check_model(str(path))
    return ExportedModel("fp32", path, tuple(inputs), details={"ragged": True} if ragged else {})


class _PreprocessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _without_preprocess_advice() -> Iterator[None]:
    """onnxruntime logs advice to pre-process on the root logger at every quantization.

    Dynamic quantization deliberately skips it (it only reads the weights, which need no
    inferred shapes), so the advice would be noise on the user's terminal.
    """
    root, advice = logging.getLogger(), _PreprocessAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantize_dynamic_int8(fp32: ExportedModel, path: Path) -> ExportedModel:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path.parent.mkdir(parents=True, exist_ok=True)
    with _without_preprocess_advice():
        quantize_dynamic(str(fp32.path), str(path), weight_type=QuantType.QInt8)
    import onnx

    onnx.checker.check_model(str(path))
    return ExportedModel("int8-dynamic", path, fp32.input_names, details=dict(fp32.details))


def _calibration_reader(feeds: list[dict[str, Any]]) -> Any:
    """The feeds as onnxruntime's CalibrationDataReader (a class that needs the import)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.feeds, None)

    return Reader()


def calibration_data(pkg: LoadedPackage, samples: int) -> tuple[Any, str]:
    """``samples`` training examples for int8-static, read before anything is written."""
    try:
        return load_train_split(pkg.meta, samples)
    except TensorfabError as exc:
        raise TensorfabError(
            f"int8-static calibrates on the model's training data, which cannot be read "
            f"here ({exc}); make it available or leave int8-static out of --variants"
        ) from None


def quantize_static_int8(
    fp32: ExportedModel, path: Path, pkg: LoadedPackage, calibration: tuple[Any, str]
) -> ExportedModel:
    """INT8 weights and activations (QDQ format, per-channel weights), with activation ranges
    from examples of the package's training split (:func:`calibration_data`; never the test
    split, which the parity report then scores it on)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    data, source = calibration
    batches = eval_batches(pkg.task, data, CALIBRATION_BATCH, torch.device("cpu"))
    reader = _calibration_reader([pkg.task.feed(b) for b in batches.epoch(0)])
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # shape inference and constant folding first, as onnxruntime advises: the quantizer
        # needs every tensor's type, and folded graphs give fewer, better-placed QDQ pairs
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32.path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,  # one scale per output channel: conv/linear rows differ widely
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            # 7-bit weights: x86 CPUs without VNNI (AVX2, AVX-512 before it) add int8 products
            # in pairs into int16, which saturates with full-range weights. Measured on an AMD
            # EPYC (Zen 3, AVX2): LeNet's outputs off by up to 2.9 and 3 of 200 labels changed
            # with 8 bits, 0.66 and none with 7. Always, not by the exporting CPU: an export
            # is served where it is copied to.
            reduce_range=True,
            **pkg.task.quantize_options(prepared),  # which ops: the task's choice
        )
    import onnx

    onnx.checker.check_model(str(path))
    calibration = {"data": source, "samples": len(data), "method": "minmax"}
    details = {**fp32.details, "calibration": calibration, "weight_bits": 7}
    return ExportedModel("int8-static", path, fp32.input_names, details=details)


def export_torch_variant(pkg: LoadedPackage, version_dir: Path, variant: str) -> ExportedModel:
    """A copy of the package that the torch runtime runs with the variant's settings."""
    settings = TORCH_VARIANTS[variant]
    version_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(version_dir / WEIGHTS_FILE) as tmp:
        shutil.copy2(pkg.path / WEIGHTS_FILE, tmp)
    names = tuple(t.name for t in pkg.task.signature()[0])
    details = {"runtime": {"variant": variant, **settings.as_dict()}}
    return ExportedModel(variant, version_dir / WEIGHTS_FILE, names, "torch", details)


def unsupported_reason(model: ExportedModel, device: str) -> str | None:
    """Why an exported variant cannot run on ``device`` (fp16 or CUDA graphs on a CPU), or
    None. Reports skip such a variant with this reason: exporting GPU variants on a machine
    without a GPU, to serve them elsewhere, is a normal thing to do."""
    if model.backend != "torch":
        return None  # onnxruntime runs everywhere (on CPU, with a note, if it must)
    settings = TorchSettings.from_mapping(model.details["runtime"], model.variant)
    return torch_unsupported(settings, str(resolve_device(device, "--device")))


def check_variants(variants: tuple[str, ...], calibration_samples: int) -> None:
    """Known variants, at least one, and calibration examples for int8-static."""
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise TensorfabError(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    if not variants:
        raise TensorfabError(f"--variants: none given; choose from {', '.join(VARIANTS)}")
    if "int8-static" in variants and calibration_samples < 1:
        raise TensorfabError(
            f"--calibration-samples: must be at least 1 for int8-static, not {calibration_samples}"
        )


def export_package(
    pkg: LoadedPackage,
    repo: Path,
    name: str,
    version: int | None = None,
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
    calibration_samples: int = 256,
) -> list[ExportedModel]:
    """Write each variant as its own repository model: ``repo/<name>[-variant]/<version>/``.

    ``version`` None is the next free one (:func:`next_version`); an existing one is
    refused. ``calibration_samples`` training examples set the activation ranges of
    ``int8-static``. Everything is checked before the first file is written.
    """
    check_model_name(name)
    check_variants(variants, calibration_samples)
    if repo.exists() and not repo.is_dir():
        raise TensorfabError(f"--repo {repo}: not a folder")
    version = resolve_version(repo, name, variants, version)
    static = "int8-static" in variants
    calibration = calibration_data(pkg, calibration_samples) if static else None
    out: list[ExportedModel] = []
    if any(v in ONNX_VARIANTS for v in variants):
        out += _export_onnx_variants(pkg, repo, name, version, variants, calibration)
    for variant in (v for v in variants if v in TORCH_VARIANTS):
        out.append(export_torch_variant(pkg, version_dir(repo, name, variant, version), variant))
    for model in out:
        _write_meta(pkg, model)
        _write_config(model.version_dir.parent, model)
        # the tokenizer, and the encoder's config.json: the architecture a torch variant is
        # rebuilt from, and the vocabulary and positions the server checks requests against
        for folder in ("tokenizer", ENCODER_DIR):
            if (pkg.path / folder).is_dir():
                shutil.copytree(pkg.path / folder, model.version_dir / folder, dirs_exist_ok=True)
        write_manifest(model.version_dir)
    return out


def _export_onnx_variants(
    pkg: LoadedPackage,
    repo: Path,
    name: str,
    version: int,
    variants: tuple[str, ...],
    calibration: tuple[Any, str] | None,
) -> list[ExportedModel]:
    out: list[ExportedModel] = []
    with tempfile.TemporaryDirectory() as tmp:
        # the fp32 graph is what quantization starts from; kept in the repository only if asked
        where = version_dir(repo, name, "fp32", version) if "fp32" in variants else Path(tmp)
        fp32 = export_onnx(pkg, where / "model.onnx")
        if "fp32" in variants:
            out.append(fp32)
        if "int8-dynamic" in variants:
            target = version_dir(repo, name, "int8-dynamic", version) / "model.onnx"
            out.append(quantize_dynamic_int8(fp32, target))
        if calibration is not None:
            target = version_dir(repo, name, "int8-static", version) / "model.onnx"
            out.append(quantize_static_int8(fp32, target, pkg, calibration))
    return out


def _write_meta(pkg: LoadedPackage, model: ExportedModel) -> None:
    if model.backend == "torch":
        meta = {**pkg.meta, **model.details}
    else:
        onnx_info = {"variant": model.variant, "opset": OPSET, "inputs": list(model.input_names)}
        meta = {**pkg.meta, "onnx": {**onnx_info, **model.details}}
    write_text_atomic(model.version_dir / META_FILE, json.dumps(meta, indent=2) + "\n")


def _write_config(model_dir: Path, model: ExportedModel) -> None:
    """The repository entry's serving settings (Triton's config.pbtxt, as YAML); kept if present."""
    if model.backend == "torch":
        settings = TORCH_VARIANTS[model.variant]
        gpu_only = torch_unsupported(settings, "cpu") is not None
        config = ModelConfig(
            backend="torch", device="cuda" if gpu_only else "auto", **settings.as_dict()
        )
        notes = {"backend": f"{model.variant}: the model package run by PyTorch"}
        if gpu_only:
            notes["device"] = "needs a CUDA GPU"
    else:
        config = ModelConfig(backend="onnxruntime")
        notes = {"backend": f"{model.variant} ONNX graph"}
    write_model_config(model_dir, config, TUNED_FIELDS, notes)
