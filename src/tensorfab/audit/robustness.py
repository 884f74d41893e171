"""Accuracy under perturbation: the package's task runs its own attacks (FGSM and PGD for
images, character noise for texts) on a seeded sample of its test split; this module picks
the data, times it and writes the report beside the package."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from tensorfab.audit.card import AUDIT_DIR
from tensorfab.engine.runtime import create_runtime
from tensorfab.errors import TensorfabError
from tensorfab.files import write_text_atomic
from tensorfab.package import load_package
from tensorfab.package.manifest import amending
from tensorfab.tasks.eval_data import load_eval_split

REPORT_FILE = "robustness.json"


def robustness_report(
    model: str | Path,
    data_path: str | None = None,
    *,
    samples: int = 1000,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Rows of attack, eps and scores on up to ``samples`` examples drawn with ``seed``."""
    if samples < 1:  # 0 leaves nothing to attack; a negative count would slice from the end
        raise TensorfabError(f"--samples {samples}: must be at least 1")
    runtime = create_runtime(device, "fp32")
    pkg = load_package(model, runtime.device)
    data, source = load_eval_split(pkg.meta, data_path)
    n = len(data)
    index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:samples]
    sample = pkg.task.take_samples(data, index.sort().values)
    start = time.perf_counter()
    rows = pkg.task.robustness(pkg.model, sample, runtime.device, seed)
    return {
        "model": str(pkg.path),
        "data": f"{source} ({len(index)} of {n}, seed {seed})",
        "device": str(runtime.device),
        "seconds": round(time.perf_counter() - start, 2),
        "metric": pkg.task.metric_names[0],
        "rows": rows,
    }


def write_report(report: dict[str, Any]) -> Path:
    """The report as ``audit/robustness.json`` in the package (re-manifested), where the
    model card reads it."""
    model_dir = Path(report["model"])
    with amending(model_dir):
        path = model_dir / AUDIT_DIR / REPORT_FILE
        write_text_atomic(path, json.dumps(report, indent=2, default=float) + "\n")
    return path
