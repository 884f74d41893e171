"""A fairness audit of a model package on a labelled table: predict, group, report.

The package's own task reads the file and decides each row (so a package with fairness
thresholds is audited as it serves); the labels and the sensitive columns come from the
same file. Writes the report as JSON and markdown and a PNG per metric.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tensorfab.audit.fairness import FairnessInput, fairness_report, plot_metrics, report_markdown
from tensorfab.data.tabular import read_table
from tensorfab.engine.inference import predict_inputs
from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path
from tensorfab.package import load_package


def audit_input(
    model: str, data: str, sensitive: list[str], positive: str | None = None, device: str = "cpu"
) -> tuple[FairnessInput, str]:
    """Labels, decisions, positive-class probabilities and groups of every row of ``data``;
    and the positive class (default: the package's last label, ``>50K`` for Adult)."""
    classes = load_package(model).meta["labels"]
    positive = positive or classes[-1]
    if positive not in classes:
        raise TensorfabError(f"--positive: {positive!r} is not a class of the model {classes}")
    table = read_table(data)
    missing = [c for c in sensitive if c not in table.columns]
    if missing:
        raise TensorfabError(f"{data}:1: no column {missing[0]!r} for --sensitive")
    rows = predict_inputs(model, [data], device=device, top_k=len(classes))
    groups = {c: [_group(r[table.columns.index(c)]) for r in table.rows] for c in sensitive}
    return (
        FairnessInput(
            y_true=np.array([int(y == positive) for y in table.labels or []]),
            y_pred=np.array([int(r["label"] == positive) for r in rows]),
            prob=np.array([r["top"][positive] for r in rows]),
            sensitive=groups,
        ),
        positive,
    )


def _group(cell: str | None) -> str:
    return "?" if cell is None else cell


def audit_model(
    model: str,
    data: str,
    sensitive: list[str],
    *,
    positive: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """The fairness report of ``model`` on ``data`` grouped by ``sensitive`` columns."""
    given, positive = audit_input(model, data, sensitive, positive)
    report = fairness_report(given, n_boot=n_boot, seed=seed)
    return {"model": model, "data": data, "positive": positive, **report}


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """fairness.json, fairness.md and the PNGs in ``out_dir``."""
    out_dir = Path(out_dir)
    paths = [out_dir / "fairness.json", out_dir / "fairness.md"]
    with atomic_path(paths[0]) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(report_markdown(report), encoding="utf-8")
    return paths + plot_metrics(report, out_dir)
