"""A repository model's serving settings (``repo/<model>/config.yaml``), Triton's config as YAML.

Every field has a default, so a model folder without ``config.yaml`` serves with them;
a typo or a wrong value is one error naming the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tensorfab.spec import load_yaml_model

CONFIG_FILE = "config.yaml"


class ModelConfig(BaseModel):
    """How one model (all its versions) is loaded, batched and protected from overload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["auto", "onnxruntime", "torch"] = Field(
        "auto", description="auto: onnxruntime when the version has model.onnx, else torch"
    )
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    precision: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="torch backend")
    compile: bool = Field(False, description="torch backend: torch.compile")
    cuda_graphs: bool = Field(False, description="torch backend: replay CUDA graphs")
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads")
    max_batch_size: int = Field(
        64, ge=0, description="rows per batch; 0 turns dynamic batching off (one request a batch)"
    )
    max_queue_delay_us: int = Field(2000, ge=0, description="longest wait to fill a batch")
    max_padding: float | None = Field(
        0.25,
        ge=0,
        description="text: run a batch as sub-batches of similar length, each padded to at "
        "most (1 + max_padding) times its real positions; null pads the whole batch to its "
        "longest request",
    )
    max_queue_size: int = Field(256, ge=1, description="waiting requests; beyond: 429")
    timeout_ms: int = Field(30_000, ge=1, description="a request waiting longer fails (503)")
    instances: int = Field(1, ge=1, le=64, description="batches computed at the same time")
    versions: Literal["all", "latest"] = "all"
    warmup: bool = Field(True, description="run one request through each version on load")


def load_model_config(model_dir: Path) -> ModelConfig:
    """The model folder's ``config.yaml``, or the defaults when there is none."""
    path = model_dir / CONFIG_FILE
    return load_yaml_model(path, ModelConfig) if path.is_file() else ModelConfig()
