"""What a package's ``tensorfab.json`` may say: every field declared, checked on load.

One job: turn the JSON object of a package (or an exported version) into a validated
record, or refuse it with one line naming the file and the field. A package comes from
elsewhere, so nothing in it is trusted: unknown keys, wrong types and paths that leave
the package are refused; ``model.args`` holds only the arguments tensorfab itself records
(the model's sizes), never loader options such as ``weights_only``; the task's own part
(``task_config``) is checked by the task (:func:`tensorfab.tasks.check_task_config`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tensorfab.errors import TensorfabError
from tensorfab.spec.schema import DataSpec
from tensorfab.tasks import check_task_config

FORMAT_VERSION = 1
Scalar = str | int | float | bool | None
REQUIRED_KEYS = ("task", "model", "labels", "input")
_CLASS_NAME = re.compile(r" or instance of \w+")  # pydantic's, meaningless to a reader
_NAME = r"^[^\x00-\x1f]+$"  # a registry name, hub id or folder: looked up, never loaded


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelArgs(_Record):
    """The model's arguments as training records them: sizes taken from the data plus the
    spec's architecture overrides. Nothing that tells a loader where or how to read."""

    num_classes: int | None = Field(None, ge=1)
    in_channels: int | None = Field(None, ge=1)
    image_size: int | None = Field(None, ge=1)
    head: Literal["token", "token-crf", "sequence"] | None = None
    pooling: Literal["cls", "mean"] | None = None  # what a sequence head reads
    random_init: bool | None = None
    width: int | None = Field(None, ge=1)
    blocks: list[int] | None = None
    hidden_size: int | None = Field(None, ge=1)
    num_hidden_layers: int | None = Field(None, ge=1)
    num_attention_heads: int | None = Field(None, ge=1)
    intermediate_size: int | None = Field(None, ge=1)
    max_position_embeddings: int | None = Field(None, ge=1)
    vocab_size: int | None = Field(None, ge=1)
    hidden_dropout_prob: float | None = Field(None, ge=0, le=1)
    attention_probs_dropout_prob: float | None = Field(None, ge=0, le=1)
    activation: Literal["relu", "tanh"] | None = None  # lenet
    # tabular-mlp
    num_numeric: int | None = Field(None, ge=0)
    cardinalities: list[int] | None = None
    hidden: int | list[int] | None = None  # tabular-mlp: layer widths; neumf: one width
    dropout: float | None = Field(None, ge=0, le=1)
    # recommenders (mf-bpr, neumf, two-tower)
    num_users: int | None = Field(None, ge=1)
    num_items: int | None = Field(None, ge=1)
    dim: int | None = Field(None, ge=1)
    # an ensemble package (``tensorfab ensemble``): how many members of this architecture
    ensemble: int | None = Field(None, ge=2)


class ModelRecord(_Record):
    name: str = Field(min_length=1, pattern=_NAME)
    args: ModelArgs = ModelArgs()


def _inside(value: str) -> str:
    """A path relative to the package that stays inside it."""
    parts = PurePosixPath(value).parts
    if not value or PureWindowsPath(value).is_absolute() or value.startswith(("/", "~", "\\")):
        raise ValueError("must be a path inside the package")
    if ".." in parts or "\\" in value or ":" in value:
        raise ValueError("must be a path inside the package")
    return value


class InputRecord(_Record):
    """What the model reads; its meaning is the task's (``kind`` names it)."""

    kind: str = Field(pattern=r"^[a-z0-9_-]+$")
    channels: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    width: int | None = Field(None, ge=1)
    dtype: str | None = Field(None, pattern=r"^[a-z0-9]+$")
    polarity: str | None = Field(None, pattern=r"^[a-z_-]+$")
    max_length: int | None = Field(None, ge=1)
    tokenizer: str | None = None
    numeric: list[str] | None = None  # tables: the numeric columns, in order
    categorical: list[str] | None = None  # tables: the categorical columns, in order
    num_users: int | None = Field(None, ge=1)  # recommendation: users known at training

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_inside(cls, value: str | None) -> str | None:
        return None if value is None else _inside(value)


class DataRecord(_Record):
    """The training data: the spec (whose paths ``evaluate`` reads the test split from),
    where it came from and its licence, and how it was split."""

    spec: DataSpec | None = None
    source: dict[str, Scalar] | str | None = None
    split: dict[str, Any] | str | None = None


class RunRecord(_Record):
    """The run and evaluation the weights come from."""

    name: str
    epoch: int = Field(ge=0)
    step: int = Field(ge=0)


class OnnxRecord(_Record):
    variant: str
    opset: int
    inputs: list[str]
    calibration: dict[str, Scalar] | None = None
    ragged: bool = False  # computes only the real tokens of a padded batch (models/unpadded)
    weight_bits: int | None = None  # int8-static: 7 (reduce_range), so no x86 CPU saturates


class RuntimeRecord(_Record):
    variant: str
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    compile: bool = False
    cuda_graphs: bool = False


class PrivacyRecord(_Record):
    """The differential-privacy guarantee the weights were trained under (DP-SGD)."""

    mechanism: str
    epsilon: float = Field(ge=0)
    delta: float = Field(gt=0, lt=1)
    target_epsilon: float | None = Field(None, gt=0)
    noise_multiplier: float = Field(ge=0)
    max_grad_norm: float = Field(gt=0)
    sample_rate: float = Field(gt=0, le=1)
    steps: int = Field(ge=0)


class EnsembleMember(_Record):
    """One member of an ensemble package: where it came from and what it scored alone."""

    run: str | None = None
    path: str
    created: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    train_s: float | None = Field(None, ge=0)


class EnsembleRecord(_Record):
    """The runs an ensemble package was made of (``tensorfab ensemble``), in order."""

    members: list[EnsembleMember] = Field(min_length=2)


class PackageMeta(_Record):
    """``tensorfab.json``: written by ``save_package`` (and by export for a version)."""

    format_version: Literal[1]
    task: str = Field(pattern=r"^[a-z0-9_-]+$")
    model: ModelRecord
    labels: list[str] = Field(min_length=1)
    input: InputRecord
    task_config: dict[str, Any] = Field(default_factory=dict)
    preprocessing: dict[str, Scalar | list[float]] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    data: DataRecord | None = None
    run: RunRecord | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    created: str | None = None
    onnx: OnnxRecord | None = None
    runtime: RuntimeRecord | None = None
    privacy: PrivacyRecord | None = None
    ensemble: EnsembleRecord | None = None


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _reason(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key (not something tensorfab writes)"
    return _CLASS_NAME.sub("", str(err["msg"]).removeprefix("Value error, "))


def check_meta(meta: Any, where: str) -> PackageMeta:
    """``meta`` validated, or one :class:`TensorfabError` line: ``<where>: <field>: <why>``.

    ``format_version`` is checked first, so a newer package says so rather than listing
    the fields this version does not know.
    """
    if not isinstance(meta, dict):
        raise TensorfabError(f"{where}: expected a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise TensorfabError(
            f"{where}: package format {version!r} is not supported "
            f"(this tensorfab reads format {FORMAT_VERSION})"
        )
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise TensorfabError(f"{where}: missing {', '.join(missing)}")
    try:
        checked = PackageMeta.model_validate(meta)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise TensorfabError(f"{where}: {_where(err['loc'])}: {_reason(err)}") from None
    try:
        check_task_config(checked.task, checked.task_config)
    except TensorfabError as exc:
        raise TensorfabError(f"{where}: {exc}") from None
    return checked


def check_no_remote_code(model_dir: Path) -> None:
    """Refuse a package whose Hugging Face configs (``encoder/config.json``, a tokenizer's
    ``tokenizer_config.json``, ...) name custom code through ``auto_map``: tensorfab never
    runs code from a package, and says so in one line before anything loads."""
    for path in sorted(model_dir.glob("*config.json")) + sorted(model_dir.glob("*/*config.json")):
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TensorfabError(f"{path}: unreadable ({type(exc).__name__})") from None
        if isinstance(config, dict) and "auto_map" in config:
            raise TensorfabError(
                f"{path}: auto_map names custom code, which tensorfab never runs from a package"
            )


def model_args(meta: PackageMeta) -> dict[str, Any]:
    """The recorded model arguments as keywords for ``create_model`` (only those set)."""
    return meta.model.args.model_dump(exclude_none=True)
