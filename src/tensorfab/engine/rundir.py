"""The run directory: creation rules, the resolved spec, and the metrics log.

An existing run directory is never overwritten: without ``--resume`` it is an error. The
rules are checked before anything is built and the directory is created only once
everything else has been (``check_run_dir`` then ``open_run_dir``), so a failed start
leaves nothing behind. On resume the metrics log keeps only records up to the
checkpoint's step, so the log reads as one uninterrupted run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorfab.engine.loggers import flatten
from tensorfab.errors import TensorfabError
from tensorfab.files import write_text_atomic
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


def spec_differences(a: JobSpec, b: JobSpec) -> list[str]:
    fa, fb = flatten(a.model_dump(mode="json")), flatten(b.model_dump(mode="json"))
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def check_run_dir(spec: JobSpec, *, resume: bool) -> RunDir:
    """Check the rules for ``spec``'s run directory without writing anything.

    Called before data and model are built, so a start that breaks a rule fails fast, and
    kept apart from :func:`open_run_dir` so that a start failing on any other input leaves
    no directory behind (and an existing one untouched).

    ``--resume`` needs ``checkpoints/last.pt``: it never silently starts from scratch. A
    mistyped ``--name`` would otherwise train a new run for hours under the wrong name
    (Lightning's ``ckpt_path`` likewise fails on a missing file); a run stopped before its
    first checkpoint has nothing to continue, and its files stay until the user removes them.
    """
    run = RunDir(run_path(spec))
    if resume:
        _check_resumable(run, spec)
    elif run.path.exists():
        raise TensorfabError(
            f"{run.path}: run directory already exists; pass --resume to continue it "
            "or --name NEW to start another run"
        )
    return run


def _check_resumable(run: RunDir, spec: JobSpec) -> None:
    """``run`` holds a checkpoint and was started with ``spec`` (up to RESUMABLE_CHANGES)."""
    if not run.checkpoint.is_file():
        hint = (
            "; it stopped before its first checkpoint: remove it or start a new run with --name"
            if run.path.exists()
            else ""
        )
        raise TensorfabError(f"{run.path}: no run to resume (no checkpoints/last.pt){hint}")
    saved = run.path / "spec.yaml"
    if saved.is_file():
        changed = [
            k for k in spec_differences(load_spec(saved), spec) if k not in RESUMABLE_CHANGES
        ]
        if changed:
            raise TensorfabError(
                f"{saved}: --resume with a different spec ({', '.join(changed)}); "
                "resume with the run's own spec or start a new run with --name"
            )


def open_run_dir(run: RunDir, spec: JobSpec) -> None:
    """Create the run directory and write the resolved spec: the run's first write."""
    run.path.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run.path / "spec.yaml", dump_spec(spec))


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
        """Drop records logged after ``step`` (they belong to work the resume redoes), and
        the evaluation of a weight average (``train.average_last``): it ends a run, after
        its last checkpoint, so a resumed run makes its own.

        Every line is parsed before anything is written, so a corrupt log is an error that
        leaves the file exactly as it was.
        """
        if not (self.enabled and self.path.is_file()):
            return
        kept = [
            line
            for line, record in _parsed_lines(self.path)
            if record.get("step", 0) <= step and record.get("kind") != "average"
        ]
        write_text_atomic(self.path, "".join(f"{line}\n" for line in kept))


def _parsed_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Each non-blank line of a JSON-lines file with its record; bad JSON names file:line."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TensorfabError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise TensorfabError(f"{path}:{number}: not a JSON object")
        out.append((line, record))
    return out


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [record for _, record in _parsed_lines(path)]
