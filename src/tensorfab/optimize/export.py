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

import json
import logging
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path, write_text_atomic
from tensorfab.hardware import resolve_device
from tensorfab.optimize.runtime import (
    TorchSettings,
    batch_feed,
    input_signature,
    torch_unsupported,
)
from tensorfab.package import LoadedPackage
from tensorfab.package.io import ENCODER_DIR, META_FILE, WEIGHTS_FILE
from tensorfab.tasks.eval_data import eval_batches, load_train_split

OPSET = 17
ONNX_VARIANTS = ("fp32", "int8-dynamic", "int8-static")
TORCH_VARIANTS = {
    "torch-fp16": TorchSettings(precision="fp16"),
    "torch-bf16": TorchSettings(precision="bf16"),
    "torch-compile": TorchSettings(compile=True),
    "torch-cudagraphs": TorchSettings(cuda_graphs=True),
}
VARIANTS = (*ONNX_VARIANTS, *TORCH_VARIANTS)
DEFAULT_VARIANTS = ONNX_VARIANTS  # the torch ones target GPUs: written only when asked for
CALIBRATION_BATCH = 32
# Triton's model names, minus anything that could leave the repository folder
MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
REPORT_PREFIX = "export-report-"


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


class _ImageGraph(nn.Module):
    """uint8 images [B, C, H, W] -> logits [B, classes], preprocessing included."""

    def __init__(self, pkg: LoadedPackage) -> None:
        super().__init__()
        self.model, self.task = pkg.model, pkg.task

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.task.inputs(images))


class _TextGraph(nn.Module):
    """token ids and attention mask [B, T] -> logits ([B, T, C] or [B, C])."""

    def __init__(self, pkg: LoadedPackage) -> None:
        super().__init__()
        self.model = pkg.model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def inference_graph(
    pkg: LoadedPackage,
) -> tuple[nn.Module, tuple[torch.Tensor, ...], dict[str, Any]]:
    shape = pkg.meta["input"]
    if shape["kind"] == "image":
        example = (
            torch.zeros(2, shape["channels"], shape["height"], shape["width"], dtype=torch.uint8),
        )
        return _ImageGraph(pkg).eval(), example, {"images": {0: "batch"}}
    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    return _TextGraph(pkg).eval(), (ids, torch.ones_like(ids)), axes


def export_onnx(pkg: LoadedPackage, path: Path) -> ExportedModel:
    """The fp32 ONNX graph of a package, checked by onnx's checker."""
    import onnx

    pkg.model.cpu()
    graph, example, axes = inference_graph(pkg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but dependable
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            example,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(axes),
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch"}},
        )
    onnx.checker.check_model(str(path))
    return ExportedModel("fp32", path, tuple(axes))


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
    return ExportedModel("int8-dynamic", path, fp32.input_names)


def _calibration_reader(feeds: list[dict[str, Any]]) -> Any:
    """The feeds as onnxruntime's CalibrationDataReader (a class that needs the import)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.feeds, None)

    return Reader()


def _activation_matmuls(model_path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes whose B input is computed, not a constant weight.

    onnxruntime's ``MatMulConstBOnly`` option is not applied by its QDQ quantizer, so the
    attention matmuls are excluded by name instead.
    """
    import onnx

    graph = onnx.load(str(model_path)).graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [
        n.name
        for n in graph.node
        if n.op_type in ("MatMul", "Gemm") and n.input[1] not in constants
    ]


def _static_options(pkg: LoadedPackage, prepared: Path) -> dict[str, Any]:
    """What to quantize: everything for CNNs, only the weight matmuls of transformer encoders.

    In an encoder, quantizing the activations of softmax, layer norm, the residual adds and
    GELU costs accuracy (their ranges are wide and set by outliers) for little speed, and so
    do the attention matmuls Q·K^T and P·V whose both sides are activations. So only
    MatMul/Gemm with a constant weight are quantized, their outputs stay fp32 (the bias add
    and the attention mask add follow them), and each quantized input gets its own Q/DQ
    pair: on the tiny NER model, quantizing every op instead gave 3.6x the mean logit error
    (word agreement with fp32 0.975 against 0.994) and met zero-width ranges. The embedding Gather
    stays fp32 too: with no quantized consumer, its DequantizeLinear runs over the whole
    table on every call (measured 1.7x slower at batch 1).
    """
    if pkg.meta["input"]["kind"] == "image":
        return {"op_types_to_quantize": None, "extra_options": {}}
    return {
        "op_types_to_quantize": ["MatMul", "Gemm"],
        "nodes_to_exclude": _activation_matmuls(prepared),
        "extra_options": {
            "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"],
            "DedicatedQDQPair": True,
        },
    }


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
    reader = _calibration_reader([batch_feed(pkg.meta, b) for b in batches.epoch(0)])
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
            **_static_options(pkg, prepared),
        )
    import onnx

    onnx.checker.check_model(str(path))
    calibration = {"data": source, "samples": len(data), "method": "minmax"}
    return ExportedModel(
        "int8-static", path, fp32.input_names, details={"calibration": calibration}
    )


def export_torch_variant(pkg: LoadedPackage, version_dir: Path, variant: str) -> ExportedModel:
    """A copy of the package that the torch runtime runs with the variant's settings."""
    settings = TORCH_VARIANTS[variant]
    version_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(version_dir / WEIGHTS_FILE) as tmp:
        shutil.copy2(pkg.path / WEIGHTS_FILE, tmp)
    names = tuple(t.name for t in input_signature(pkg.meta)[0])
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


def check_model_name(name: str, option: str = "--name") -> None:
    """A repository model name is one folder inside the repository, never a path out of it.

    Letters, digits, ``_``, ``-`` and ``.`` as Triton allows; ``.`` and ``..`` alone name
    the repository itself or its parent, where ``--name ../evil`` would have written.
    """
    if not MODEL_NAME.fullmatch(name) or name in (".", ".."):
        raise TensorfabError(
            f"{option} {name!r}: a model name is letters, digits, '_', '-' and '.' "
            "(no path separators, not '.' or '..')"
        )


def variant_models(repo: Path, name: str) -> list[Path]:
    """The repository folders one export of ``name`` may write: ``name`` and ``name-<variant>``."""
    return [_version_dir(repo, name, v, 1).parent for v in VARIANTS]


def version_dirs(model_dir: Path) -> list[str]:
    """The numbered version folders of a repository model, in numeric order (none: [])."""
    if not model_dir.is_dir():
        return []
    found = [p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=int)


def report_path(repo: Path, name: str, version: int, suffix: str = ".json") -> Path:
    """``repo/<name>/export-report-<version>.json`` (or ``.md``): one report per export.

    Named by version rather than inside a version folder because an export without fp32
    writes no ``repo/<name>/<version>/``, and a version folder holding only a report would
    look like a broken model version to the server.
    """
    return repo / name / f"{REPORT_PREFIX}{version}{suffix}"


def next_version(repo: Path, name: str) -> int:
    """One more than the highest version of any variant of ``name`` (or of a report), so that
    the variants of one export share a version number, as retrains of one model do in Triton."""
    versions = [int(v) for model in variant_models(repo, name) for v in version_dirs(model)]
    if (repo / name).is_dir():
        numbers = (
            p.stem.removeprefix(REPORT_PREFIX) for p in (repo / name).glob(f"{REPORT_PREFIX}*.json")
        )
        versions += [int(n) for n in numbers if n.isdigit()]
    return max(versions, default=0) + 1


def check_version_number(version: int) -> None:
    """Triton's version folders are numbered from 1; a ``0`` folder would never be served."""
    if version < 1:
        raise TensorfabError(
            f"--version must be at least 1 (Triton's versions start at 1), not {version}"
        )


def resolve_version(
    repo: Path, name: str, variants: tuple[str, ...], version: int | None = None
) -> int:
    """``version``, or the next free one when None; a version already written is refused.

    No overwrite flag: a version a server may have loaded, and the parity report that
    vouched for it, are replaced only by someone who removes them on purpose.
    """
    if version is None:
        return next_version(repo, name)
    check_version_number(version)
    taken = [_version_dir(repo, name, v, version) for v in variants]
    taken += [report_path(repo, name, version)]
    for path in taken:
        if path.exists():
            raise TensorfabError(f"{path} exists; pick another --version or remove it")
    return version


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
        out.append(export_torch_variant(pkg, _version_dir(repo, name, variant, version), variant))
    for model in out:
        _write_meta(pkg, model)
        _write_config(model.version_dir.parent, model)
        # the tokenizer, and the encoder's config.json: the architecture a torch variant is
        # rebuilt from, and the vocabulary and positions the server checks requests against
        for folder in ("tokenizer", ENCODER_DIR):
            if (pkg.path / folder).is_dir():
                shutil.copytree(pkg.path / folder, model.version_dir / folder, dirs_exist_ok=True)
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
        where = _version_dir(repo, name, "fp32", version) if "fp32" in variants else Path(tmp)
        fp32 = export_onnx(pkg, where / "model.onnx")
        if "fp32" in variants:
            out.append(fp32)
        if "int8-dynamic" in variants:
            target = _version_dir(repo, name, "int8-dynamic", version) / "model.onnx"
            out.append(quantize_dynamic_int8(fp32, target))
        if calibration is not None:
            target = _version_dir(repo, name, "int8-static", version) / "model.onnx"
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
    config = model_dir / "config.yaml"
    if config.exists():  # a user's tuned settings are never overwritten
        return
    if model.backend == "torch":
        settings = TORCH_VARIANTS[model.variant]
        gpu_only = torch_unsupported(settings, "cpu") is not None
        backend = (
            f"backend: torch  # {model.variant}: the model package run by PyTorch\n"
            + ("device: cuda  # needs a CUDA GPU\n" if gpu_only else "device: auto\n")
            + f"precision: {settings.precision}  # fp32 | fp16 | bf16\n"
            f"compile: {str(settings.compile).lower()}\n"
            f"cuda_graphs: {str(settings.cuda_graphs).lower()}\n"
        )
    else:
        backend = f"backend: onnxruntime  # {model.variant} ONNX graph\n"
    write_text_atomic(
        config,
        "# serving settings for every version of this model\n"
        f"{backend}"
        "max_batch_size: 64\n"
        "max_queue_delay_us: 2000\n"
        "max_padding: 0.25  # text: sub-batches of similar length; null pads to the longest\n"
        "instances: 1\n",
    )


def _version_dir(repo: Path, name: str, variant: str, version: int) -> Path:
    model = name if variant == "fp32" else f"{name}-{variant}"
    return repo / model / str(version)
