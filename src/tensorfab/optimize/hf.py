"""``export --format hf``: a model package as a Hugging Face model directory.

What goes into the directory is the package's task's (``Task.hf_export``: a text model's
config with its labels, safetensors weights and tokenizer; other tasks refuse with one
line). This module makes the write all-or-nothing, as ``files.atomic_path`` does for one
file: the task fills a temporary folder beside the target, which is renamed into place
once complete, so a failed export never leaves a directory that ``from_pretrained`` would
half-load.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tensorfab.errors import TensorfabError
from tensorfab.package import LoadedPackage


def check_hf_target(out: Path) -> None:
    """``out`` must be new or an empty folder: an export never mixes with other files."""
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise TensorfabError(f"{out}: already exists and is not an empty folder; give a new one")
    above = next((p for p in out.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise TensorfabError(f"{out}: {above} is a file, not a folder")


def export_hf(pkg: LoadedPackage, out: str | Path) -> list[str]:
    """Write ``pkg`` as a Hugging Face model directory at ``out``; returns its file names."""
    out = Path(out)
    check_hf_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        pkg.task.hf_export(pkg.model, tmp)
        if out.exists():
            out.rmdir()  # empty (checked above): os.replace cannot replace a folder
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(p.name for p in out.iterdir())
