"""Make one model package of several finished runs: an ensemble (``tensorfab ensemble``).

The members must be the same model trained again (another seed, another learning rate):
the same task, labels, inputs, task settings, architecture, training data and assets (the
tokenizer, the encoder's config), checked file by file, so the ensemble reads a text the
way each member does. Its package is an ordinary one (``model.args.ensemble`` members,
their weights under ``members.<i>.``; ``models/ensemble.py`` runs them as one model), so
``evaluate``, ``predict``, ``export`` and ``serve`` take it as they take any package, and
it records each member's run, metrics and training time, which is its cost. It is written
to a temporary folder and renamed into place: a failure leaves nothing behind, and an
existing package is never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path, current_umask
from tensorfab.models.crf import CRF_PARAM
from tensorfab.models.ensemble import Ensemble
from tensorfab.package.io import (
    ENCODER_DIR,
    META_FILE,
    WEIGHTS_FILE,
    load_package,
    read_meta,
    resolve_model_dir,
    save_package,
)
from tensorfab.package.manifest import MANIFEST_FILE, check_manifest, file_digest, package_files

# what the members must share, as their tensorfab.json says it
SAME_FIELDS = ("task", "labels", "input", "preprocessing", "model", "data")
OWN_FILES = {META_FILE, WEIGHTS_FILE, MANIFEST_FILE, "README.md", "manifest.sig"}
OWN_CONFIG = (CRF_PARAM,)  # task settings each member learned: averaged, not compared


def _member_meta(path: Path) -> tuple[Path, dict[str, Any]]:
    """A member's package directory and its checked description, or why it cannot be one."""
    model_dir = resolve_model_dir(path)
    if not (model_dir / MANIFEST_FILE).is_file():  # the comparisons below trust its digests
        raise TensorfabError(f"{path}: no {MANIFEST_FILE}, so its files cannot be checked")
    check_manifest(model_dir)
    meta = read_meta(model_dir)
    if "onnx" in meta or "runtime" in meta:
        raise TensorfabError(f"{path}: an exported version; give the run or its model package")
    if meta["model"].get("args", {}).get("ensemble"):
        raise TensorfabError(f"{path}: already an ensemble; give its members' runs")
    if "privacy" in meta:
        raise TensorfabError(
            f"{path}: trained with DP-SGD; an ensemble of such models spends the sum of their "
            "privacy budgets, which tensorfab does not account: not made"
        )
    if not (model_dir / ENCODER_DIR / "config.json").is_file():
        raise TensorfabError(
            f"{path}: not a transformer-encoder package (no {ENCODER_DIR}/config.json): "
            "ensembles are made of token and text classifiers"
        )
    return model_dir, meta


def _settings(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.get("task_config", {}).items() if k not in OWN_CONFIG}


def _asset_names(model_dir: Path) -> list[str]:
    """The package's files besides its own weights and description (tokenizer, encoder)."""
    return [name for name in package_files(model_dir) if name not in OWN_FILES]


def _assets(model_dir: Path) -> dict[str, str]:
    """Those files' sha256 (the weights, most of the bytes, are not read for this)."""
    return {name: file_digest(model_dir / name) for name in _asset_names(model_dir)}


def difference(a: Any, b: Any, where: str) -> str | None:
    """The dotted name of the first value that differs between ``a`` and ``b``, with both
    values (objects compared key by key, anything else as a whole); None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            found = difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if a == b else f"{where} differs ({json.dumps(a)} vs {json.dumps(b)})"


def check_alike(members: Sequence[tuple[Path, dict[str, Any]]], given: Sequence[str]) -> None:
    """Refuse, naming the member and the field, unless every member is the first one's kind."""
    first_dir, first = members[0]
    assets = _assets(first_dir)
    for (model_dir, meta), name in zip(members[1:], given[1:], strict=True):
        found = difference(_settings(meta), _settings(first), "task_config")
        for key in SAME_FIELDS:
            found = found or difference(meta.get(key), first.get(key), key)
        own = _assets(model_dir)
        for file in sorted(own.keys() | assets.keys()):
            if not found and own.get(file) != assets.get(file):
                found = f"{file} differs (or is missing)"
        if found:
            raise TensorfabError(f"{name}: {found}, against {given[0]}: not the same model")


def _train_seconds(model_dir: Path) -> float | None:
    """The run's training time from its ``report.json``, beside the package's ``model/``."""
    report = model_dir.parent / "report.json"
    try:
        return float(json.loads(report.read_text(encoding="utf-8"))["timings"]["train_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record(path: str, model_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    run = meta.get("run") or {}
    in_run = model_dir.name == "model"  # a run's package, not a copied one
    return {
        "run": run.get("name"),
        "path": str(path),
        "created": meta.get("created"),
        "metrics": meta.get("metrics", {}).get("test", {}),
        "train_s": _train_seconds(model_dir) if in_run else None,
    }


def ensemble_meta(members: Sequence[tuple[Path, dict[str, Any]]], given: Sequence[str]) -> dict:
    """The ensemble's description: the first member's, with the members recorded."""
    first = members[0][1]
    meta = {k: v for k, v in first.items() if k not in ("versions", "created", "run", "metrics")}
    meta["model"] = {**first["model"], "args": {**first["model"].get("args", {})}}
    meta["model"]["args"]["ensemble"] = len(members)
    meta["ensemble"] = {
        "members": [_record(name, d, m) for (d, m), name in zip(members, given, strict=True)]
    }
    return meta


def _write(out: Path, model: Ensemble, meta: dict[str, Any], assets_from: Path) -> None:
    """The package in a temporary sibling folder, renamed to ``out`` when complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # a folder as mkdir makes it (mkdtemp: 0700)
        for name in _asset_names(assets_from):  # first: the manifest covers them
            if not name.startswith(ENCODER_DIR + "/"):  # save_package writes the config
                with atomic_path(tmp / name) as part:
                    part.write_bytes((assets_from / name).read_bytes())
        save_package(tmp, model, meta)
        if out.exists() and not any(out.iterdir()):
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def pack_ensemble(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write the ensemble of the runs or packages ``paths`` to the package folder ``out``."""
    out = Path(out)
    given = [str(p) for p in paths]
    if len(given) < 2:
        raise TensorfabError("an ensemble needs at least 2 runs or packages")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TensorfabError(f"--out {out}: exists and is not an empty folder (nothing replaced)")
    members = [_member_meta(Path(p)) for p in given]
    seen: dict[Path, str] = {}
    for (model_dir, _), name in zip(members, given, strict=True):
        first = seen.setdefault(model_dir.resolve(), name)
        if first != name:
            raise TensorfabError(f"{name} is the same package as {first}: give different runs")
    check_alike(members, given)
    loaded = [load_package(model_dir).model for model_dir, _ in members]
    model = Ensemble(loaded)
    meta = ensemble_meta(members, given)
    if CRF_PARAM in meta.get("task_config", {}):
        meta["task_config"][CRF_PARAM] = getattr(model, CRF_PARAM).detach().tolist()
    with torch.no_grad():
        _write(out, model, meta, members[0][0])
    return out
