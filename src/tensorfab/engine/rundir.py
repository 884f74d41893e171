"""The run directory: creation rules, the resolved spec, and the metrics log.

An existing run directory is never overwritten: without ``--resume`` it is an error. On
resume the metrics log keeps only records up to the checkpoint's step, so the log reads
as one uninterrupted run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorfab.errors import TensorfabError
from tensorfab.spec import JobSpec, dump_spec, load_spec

# Fields a resumed run may change: extending training is what resuming is often for.
RESUMABLE_CHANGES = {"train.epochs", "train.max_steps", "train.early_stopping.patience"}


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"


def run_path(spec: JobSpec) -> Path:
    return Path(spec.output.runs_dir) / (spec.output.name or spec.name)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def spec_differences(a: JobSpec, b: JobSpec) -> list[str]:
    fa, fb = _flatten(a.model_dump(mode="json")), _flatten(b.model_dump(mode="json"))
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def prepare_run_dir(spec: JobSpec, *, resume: bool) -> RunDir:
    """Check the rules for ``spec``'s run directory and write the resolved spec into it."""
    run = RunDir(run_path(spec))
    saved = run.path / "spec.yaml"
    if run.path.exists() and not resume:
        raise TensorfabError(
            f"{run.path}: run directory already exists; pass --resume to continue it "
            "or --name NEW to start another run"
        )
    if resume and saved.is_file():
        changed = [
            k for k in spec_differences(load_spec(saved), spec) if k not in RESUMABLE_CHANGES
        ]
        if changed:
            raise TensorfabError(
                f"{saved}: --resume with a different spec ({', '.join(changed)}); "
                "resume with the run's own spec or start a new run with --name"
            )
    run.path.mkdir(parents=True, exist_ok=True)
    _write_atomic(saved, dump_spec(spec))
    return run


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl``."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled

    def append(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records logged after ``step`` (they belong to work the resume redoes)."""
        if not (self.enabled and self.path.is_file()):
            return
        kept = [
            line
            for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        _write_atomic(self.path, "".join(f"{line}\n" for line in kept))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
