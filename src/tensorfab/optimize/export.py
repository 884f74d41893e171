"""Export a model package to ONNX (dynamic batch and sequence axes) and quantize it.

The exported graph takes what the package's task takes on the wire: uint8 images (scaling
and normalisation are inside the graph, as in the package) or token ids with an attention
mask. Variants: ``fp32`` and ``int8-dynamic`` (onnxruntime's dynamic quantization of the
matmul/linear weights). Every file is checked with ``onnx.checker``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tensorfab.errors import TensorfabError
from tensorfab.package import LoadedPackage
from tensorfab.package.io import META_FILE

OPSET = 17
VARIANTS = ("fp32", "int8-dynamic")


@dataclass(frozen=True)
class ExportedModel:
    variant: str
    path: Path  # repo/<name>/<version>/model.onnx
    input_names: tuple[str, ...]


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


def quantize_dynamic_int8(fp32: ExportedModel, path: Path) -> ExportedModel:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(fp32.path), str(path), weight_type=QuantType.QInt8)
    import onnx

    onnx.checker.check_model(str(path))
    return ExportedModel("int8-dynamic", path, fp32.input_names)


def export_package(
    pkg: LoadedPackage,
    repo: Path,
    name: str,
    version: int = 1,
    variants: tuple[str, ...] = VARIANTS,
) -> list[ExportedModel]:
    """Write each variant as its own repository model: ``repo/<name>[-variant]/<version>/``."""
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise TensorfabError(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    out: list[ExportedModel] = []
    fp32 = export_onnx(pkg, _version_dir(repo, name, "fp32", version) / "model.onnx")
    if "fp32" in variants:
        out.append(fp32)
    if "int8-dynamic" in variants:
        target = _version_dir(repo, name, "int8-dynamic", version) / "model.onnx"
        out.append(quantize_dynamic_int8(fp32, target))
    for model in out:
        meta = {
            **pkg.meta,
            "onnx": {"variant": model.variant, "opset": OPSET, "inputs": list(model.input_names)},
        }
        (model.path.parent / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        _write_config(model.path.parent.parent, model.variant)
        tokenizer = pkg.path / "tokenizer"
        if tokenizer.is_dir():
            shutil.copytree(tokenizer, model.path.parent / "tokenizer", dirs_exist_ok=True)
    return out


def _write_config(model_dir: Path, variant: str) -> None:
    """The repository entry's serving settings (Triton's config.pbtxt, as YAML); kept if present."""
    config = model_dir / "config.yaml"
    if config.exists():  # a user's tuned settings are never overwritten
        return
    config.write_text(
        "# serving settings for every version of this model\n"
        f"backend: onnxruntime  # {variant} ONNX graph\n"
        "max_batch_size: 64\n"
        "max_queue_delay_us: 2000\n"
        "instances: 1\n"
    )


def _version_dir(repo: Path, name: str, variant: str, version: int) -> Path:
    model = name if variant == "fp32" else f"{name}-{variant}"
    return repo / model / str(version)
