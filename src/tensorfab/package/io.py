"""Save and load the model package, the one portable artifact of a run.

The package holds tensors only in safetensors (never pickle) and everything needed to
rebuild the model and its task in ``tensorfab.json``: registry name and arguments,
labels, input spec, preprocessing, metrics, versions, and the training data's source and
licence. Files are written to temporary names and renamed, JSON last, so a reader never
sees weights without their description.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tensorfab import __version__
from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path, write_text_atomic
from tensorfab.models import create_model, save_encoder_config
from tensorfab.models.registry import model_entry
from tensorfab.package.manifest import check_manifest, write_manifest
from tensorfab.package.meta import (
    FORMAT_VERSION,
    check_meta,
    check_no_remote_code,
    model_args,
)
from tensorfab.tasks import Task, task_from_meta

META_FILE = "tensorfab.json"
WEIGHTS_FILE = "weights.safetensors"
ENCODER_DIR = "encoder"  # transformer packages: the architecture's config.json


@dataclass
class LoadedPackage:
    model: nn.Module
    task: Task
    meta: dict[str, Any]
    path: Path


def resolve_model_dir(path: str | Path) -> Path:
    """A run directory resolves to its ``model/``; a package directory is itself."""
    p = Path(path)
    if (p / META_FILE).is_file():
        return p
    if (p / "model" / META_FILE).is_file():
        return p / "model"
    if not p.exists():
        raise TensorfabError(f"{p}: no such run or model directory")
    raise TensorfabError(f"{p}: not a run or model directory (no {META_FILE} in it or in model/)")


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    # Clone so tied/shared tensors become separate storage, as safetensors requires.
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_package(directory: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model`` and ``meta`` (task, model, labels, input, ...) as a package."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    full = {
        "format_version": FORMAT_VERSION,
        **meta,
        "versions": {
            "tensorfab": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    save_encoder_config(model, d / ENCODER_DIR)
    with atomic_path(d / WEIGHTS_FILE) as tmp:
        save_file(_state_dict(model), str(tmp), metadata={"format": "pt"})
    _write_meta(d, full)
    return d


def _write_meta(d: Path, meta: dict[str, Any]) -> None:
    write_text_atomic(d / META_FILE, json.dumps(meta, indent=2) + "\n")
    write_manifest(d)  # the meta is written last: the manifest covers every file


def update_metrics(model_dir: Path, metrics: dict[str, Any]) -> None:
    """Add ``metrics`` to a saved package's description, leaving its weights untouched."""
    meta = read_meta(model_dir)
    meta["metrics"] = {**meta.get("metrics", {}), **metrics}
    _write_meta(model_dir, meta)


def read_meta(model_dir: Path) -> dict[str, Any]:
    """The package's description, every field checked (:func:`package.meta.check_meta`),
    and no config in the package naming custom code (``check_no_remote_code``)."""
    path = model_dir / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TensorfabError(f"{path}:{exc.lineno}: invalid JSON") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TensorfabError(f"{path}: cannot read ({exc})") from None
    check_meta(meta, str(path))
    check_no_remote_code(model_dir)
    return meta


def _check_fit(model: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    # load_state_dict raises a multi-line RuntimeError on a shape mismatch (e.g. the JSON
    # says 5 classes, the weights hold 10) even with strict=False, so compare first.
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong = [
        f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}"
        for k in sorted(expected.keys() & state.keys())
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise TensorfabError(
            f"{path}: weights do not fit model {name!r} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})"
        )


def _rebuild_model(meta: dict[str, Any], model_dir: Path) -> nn.Module:
    """The package's architecture through the model registry, with only the arguments
    tensorfab records. A model that rebuilds from a saved encoder config must have it in
    the package: nothing is loaded from the place its name points to (a folder outside
    the package may hold pickles or remote code)."""
    record = check_meta(meta, str(model_dir / META_FILE))
    name = record.model.name
    saved = model_dir / ENCODER_DIR
    if (saved / "config.json").is_file():
        return create_model(name, encoder_config=saved, **model_args(record))
    if "from_encoder_config" in model_entry(name).meta:
        raise TensorfabError(
            f"{model_dir}: model {name!r} rebuilds from the package's "
            f"{ENCODER_DIR}/config.json, which is missing"
        )
    return create_model(name, **model_args(record))


def load_package(path: str | Path, device: torch.device | str = "cpu") -> LoadedPackage:
    """Rebuild the model (eval mode, on ``device``) and its task from a package or run dir."""
    model_dir = resolve_model_dir(path)
    check_manifest(model_dir)
    meta = read_meta(model_dir)
    model = _rebuild_model(meta, model_dir)
    try:
        state = load_file(str(model_dir / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise TensorfabError(f"{model_dir / WEIGHTS_FILE}: cannot read weights ({exc})") from None
    _check_fit(model, state, model_dir / WEIGHTS_FILE, meta["model"]["name"])
    model.load_state_dict(state)
    task = task_from_meta(meta, package_dir=str(model_dir))
    return LoadedPackage(model.to(device).eval(), task, meta, model_dir)
