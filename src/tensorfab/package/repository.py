"""The model repository's layout, Triton's, and each model's ``config.yaml`` (:class:`ModelConfig`).

    repo/<model>/config.yaml                   how every version is served (optional)
    repo/<model>/<version>/                     a model package or an exported model
    repo/<model>/export-report-<version>.json   what one export measured (and ``.md``)

One export writes each variant as its own model: ``<name>`` for fp32, ``<name>-<variant>``
for the others, all with one version number. Export writes this layout and the server
reads it, so it lives here, below both ``optimize`` and ``serve``. ``config.yaml`` is
written from :class:`ModelConfig` itself (a comment per field from its description), so
the defaults are said once and what export writes reads back as the same settings.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tensorfab.errors import TensorfabError
from tensorfab.files import write_text_atomic
from tensorfab.spec import load_yaml_model
from tensorfab.spec.names import RULE, is_plain_name

CONFIG_FILE = "config.yaml"
REPORT_PREFIX = "export-report-"
BASE_VARIANT = "fp32"  # written as repo/<name>/; every other variant as repo/<name>-<variant>/
# every variant an export may write (optimize.export says how each is made)
VARIANTS = (
    "fp32",
    "int8-dynamic",
    "int8-static",
    "torch-fp16",
    "torch-bf16",
    "torch-compile",
    "torch-cudagraphs",
)
CONFIG_HEADER = "# serving settings for every version of this model"
CONFIG_WIDTH = 100  # longer comments are wrapped above their setting


class ModelConfig(BaseModel):
    """How one model (all its versions) is loaded, batched and protected from overload.

    Every field has a default, so a model folder without ``config.yaml`` serves with them;
    a typo or a wrong value is one error naming the file and line.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = Field(
        "auto",
        pattern=r"^[a-z0-9_-]+$",
        description="auto: onnxruntime when the version has model.onnx, else torch",
    )
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="cpu | cuda | auto")
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32", description="torch backend: fp32 | fp16 | bf16"
    )
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
        "longest request; a runtime that computes only real tokens (a BERT encoder, in "
        "PyTorch or exported) takes the batch whole",
    )
    max_queue_size: int = Field(256, ge=1, description="waiting requests; beyond: 429")
    timeout_ms: int = Field(30_000, ge=1, description="a request waiting longer fails (503)")
    instances: int = Field(1, ge=1, le=64, description="batches computed at the same time")
    versions: Literal["all", "latest"] = Field(
        "all", description="all | latest: which version folders are loaded"
    )
    warmup: bool = Field(True, description="run one request through each version on load")


def load_model_config(model_dir: Path) -> ModelConfig:
    """The model folder's ``config.yaml``, or the defaults when there is none."""
    path = model_dir / CONFIG_FILE
    if not path.exists():
        return ModelConfig()
    if not path.is_file():
        raise TensorfabError(f"{path}: not a file (a model's {CONFIG_FILE} is a YAML file)")
    return load_yaml_model(path, ModelConfig)


def config_yaml(
    config: ModelConfig, fields: Iterable[str] = (), notes: dict[str, str] | None = None
) -> str:
    """``config`` as config.yaml text: the fields set on it plus ``fields``, in declaration
    order, each with its description as a comment (``notes`` replaces it per field); a
    comment too long for the line goes above it.

    Fields left out keep their defaults when read back, so :func:`load_model_config` of the
    text gives an equal config.
    """
    shown = set(config.model_fields_set) | set(fields)
    lines = [CONFIG_HEADER]
    for name, info in ModelConfig.model_fields.items():
        if name in shown:
            setting = yaml.safe_dump({name: getattr(config, name)}, default_flow_style=False)
            lines += _commented(setting.strip(), (notes or {}).get(name, info.description))
    return "\n".join(lines) + "\n"


def _commented(setting: str, comment: str | None) -> list[str]:
    if not comment:
        return [setting]
    if len(setting) + len(comment) + 4 <= CONFIG_WIDTH:
        return [f"{setting}  # {comment}"]
    return [f"# {line}" for line in textwrap.wrap(comment, CONFIG_WIDTH - 2)] + [setting]


def write_model_config(
    model_dir: Path,
    config: ModelConfig,
    fields: Iterable[str] = (),
    notes: dict[str, str] | None = None,
) -> bool:
    """Write ``model_dir/config.yaml`` (:func:`config_yaml`) unless there is one: a user's
    tuned settings are never overwritten. True when written."""
    path = model_dir / CONFIG_FILE
    if path.exists():
        return False
    write_text_atomic(path, config_yaml(config, fields, notes))
    return True


def check_model_name(name: str, option: str = "--name") -> None:
    """A repository model name is one folder inside the repository, never a path out of it.

    Letters, digits, ``_``, ``-`` and ``.`` as Triton allows; ``.`` and ``..`` alone name
    the repository itself or its parent, where ``--name ../evil`` would have written.
    """
    if not is_plain_name(name):
        raise TensorfabError(f"{option} {name!r}: a model name is {RULE}")


def variant_model(name: str, variant: str) -> str:
    """The repository model an export of ``name`` writes ``variant`` as."""
    return name if variant == BASE_VARIANT else f"{name}-{variant}"


def version_dir(repo: Path, name: str, variant: str, version: int) -> Path:
    """``repo/<name>[-<variant>]/<version>/``."""
    return repo / variant_model(name, variant) / str(version)


def variant_models(repo: Path, name: str) -> list[Path]:
    """The repository folders one export of ``name`` may write: ``name`` and ``name-<variant>``."""
    return [repo / variant_model(name, v) for v in VARIANTS]


def version_dirs(model_dir: Path) -> list[str]:
    """The numbered version folders of a repository model, in numeric order (none: [])."""
    if not model_dir.is_dir():
        return []
    found = [p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=int)


def unversioned_models(root: Path) -> list[str]:
    """Folders of a repository with no numbered version folder: not models, not served."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not version_dirs(p))


def repository_models(root: Path) -> list[str]:
    """Every model folder of a repository (one with a version folder), sorted.

    A function of the folder alone, so ``tensorfab serve --models`` can check the names
    it is given before the server (and its models) start.
    """
    return sorted(p.name for p in root.iterdir() if p.is_dir() and version_dirs(p))


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
    repo: Path, name: str, variants: Sequence[str], version: int | None = None
) -> int:
    """``version``, or the next free one when None; a version already written is refused.

    No overwrite flag: a version a server may have loaded, and the parity report that
    vouched for it, are replaced only by someone who removes them on purpose.
    """
    if version is None:
        return next_version(repo, name)
    check_version_number(version)
    taken = [version_dir(repo, name, v, version) for v in variants]
    taken += [report_path(repo, name, version)]
    for path in taken:
        if path.exists():
            raise TensorfabError(f"{path} exists; pick another --version or remove it")
    return version
