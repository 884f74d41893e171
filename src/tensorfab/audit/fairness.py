"""Fairness by group: per-group metrics, their bootstrap intervals and the parity gaps.

Given labels, predictions, positive-class probabilities and one or more sensitive columns,
computes with Fairlearn's ``MetricFrame`` per group (and per intersection when several
columns are given): size, accuracy, selection rate, true- and false-positive rate and
calibration (mean predicted probability minus observed positive rate); percentile bootstrap
intervals, resampling rows; and demographic-parity and equalized-odds differences and ratios.
Reports are plain dicts (JSON) and markdown; plots one PNG per metric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tensorfab.errors import TensorfabError

METRICS = ("accuracy", "selection_rate", "tpr", "fpr", "calibration")


@dataclass(frozen=True)
class FairnessInput:
    """What a fairness audit needs, one entry per example; ``y_*`` are 0/1."""

    y_true: np.ndarray
    y_pred: np.ndarray
    prob: np.ndarray  # probability of the positive class
    sensitive: dict[str, list[str]]  # column name -> group of each example


def _rate(mask: np.ndarray, values: np.ndarray) -> float:
    return float(values[mask].mean()) if mask.any() else float("nan")


def _metric_functions() -> dict[str, Any]:
    """MetricFrame metrics; calibration reads the probability through ``sample_params``."""

    def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float((y_true == y_pred).mean())

    def selection_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(y_pred.mean())

    def tpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return _rate(y_true == 1, y_pred)

    def fpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return _rate(y_true == 0, y_pred)

    def calibration(y_true: np.ndarray, y_pred: np.ndarray, prob: np.ndarray) -> float:
        return float(np.asarray(prob).mean() - y_true.mean())

    def count(y_true: np.ndarray, y_pred: np.ndarray) -> int:
        return len(y_true)

    return {
        "count": count,
        "accuracy": accuracy,
        "selection_rate": selection_rate,
        "tpr": tpr,
        "fpr": fpr,
        "calibration": calibration,
    }


def _frame(data: FairnessInput) -> Any:
    try:
        from fairlearn.metrics import MetricFrame
    except ImportError:
        raise TensorfabError(
            "fairness audits need Fairlearn: pip install 'tensorfab[audit]'"
        ) from None
    import pandas as pd

    return MetricFrame(
        metrics=_metric_functions(),
        y_true=np.asarray(data.y_true),
        y_pred=np.asarray(data.y_pred),
        sensitive_features=pd.DataFrame(data.sensitive),
        sample_params={"calibration": {"prob": np.asarray(data.prob)}},
    )


def _group_name(key: Any) -> str:
    return " & ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def group_metrics(data: FairnessInput) -> dict[str, dict[str, float]]:
    """Metric values per group (``"Female & Black"`` for an intersection), by MetricFrame."""
    by_group = _frame(data).by_group
    return {
        _group_name(key): {name: float(row[name]) for name in ("count", *METRICS)}
        for key, row in by_group.iterrows()
    }


def parity_gaps(groups: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Demographic-parity and equalized-odds differences (max - min) and ratios (min / max)."""

    def spread(metric: str) -> tuple[float, float]:
        values = [g[metric] for g in groups.values() if not np.isnan(g[metric])]
        if not values:
            return float("nan"), float("nan")
        low, high = min(values), max(values)
        return high - low, (low / high if high > 0 else float("nan"))

    dp_diff, dp_ratio = spread("selection_rate")
    tpr_diff, tpr_ratio = spread("tpr")
    fpr_diff, fpr_ratio = spread("fpr")
    return {
        "demographic_parity_difference": dp_diff,
        "demographic_parity_ratio": dp_ratio,
        "equalized_odds_difference": max(tpr_diff, fpr_diff),
        "equalized_odds_ratio": min(tpr_ratio, fpr_ratio),
    }


def bootstrap_intervals(
    data: FairnessInput, n_boot: int = 200, level: float = 0.95, seed: int = 0
) -> dict[str, dict[str, list[float]]]:
    """Percentile intervals per group and metric, and for the parity gaps (key ``"gaps"``),
    from ``n_boot`` resamples of the rows (with replacement, seeded)."""
    rng = np.random.default_rng(seed)
    n = len(data.y_true)
    samples: dict[str, dict[str, list[float]]] = {}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        groups = group_metrics(_take(data, idx))
        for name, values in [*groups.items(), ("gaps", parity_gaps(groups))]:
            for metric, value in values.items():
                samples.setdefault(name, {}).setdefault(metric, []).append(value)
    tail = (1 - level) / 2 * 100
    return {
        name: {m: _percentiles(v, tail) for m, v in metrics.items() if m != "count"}
        for name, metrics in samples.items()
    }


def _percentiles(values: list[float], tail: float) -> list[float]:
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if not len(arr):
        return [float("nan"), float("nan")]
    return [float(np.percentile(arr, tail)), float(np.percentile(arr, 100 - tail))]


def _take(data: FairnessInput, idx: np.ndarray) -> FairnessInput:
    return FairnessInput(
        data.y_true[idx],
        data.y_pred[idx],
        data.prob[idx],
        {k: [v[i] for i in idx] for k, v in data.sensitive.items()},
    )


def fairness_report(data: FairnessInput, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """The whole audit as a JSON-ready dict: groups, gaps, intervals, what was grouped by."""
    _check(data)
    groups = group_metrics(data)
    return {
        "sensitive": list(data.sensitive),
        "examples": len(data.y_true),
        "groups": groups,
        "gaps": parity_gaps(groups),
        "intervals": bootstrap_intervals(data, n_boot, seed=seed) if n_boot else {},
        "bootstrap": {"resamples": n_boot, "level": 0.95, "seed": seed},
    }


def _check(data: FairnessInput) -> None:
    n = len(data.y_true)
    sizes = {"y_pred": len(data.y_pred), "prob": len(data.prob)}
    sizes.update({f"sensitive column {k!r}": len(v) for k, v in data.sensitive.items()})
    wrong = [f"{k} has {v}" for k, v in sizes.items() if v != n]
    if wrong:
        raise TensorfabError(f"fairness audit: {n} labels but {', '.join(wrong)}")
    if not data.sensitive:
        raise TensorfabError("fairness audit: no sensitive column given (--sensitive sex)")


def _fmt(value: float, interval: Sequence[float] | None) -> str:
    if np.isnan(value):
        return "n/a"
    if interval is None or np.isnan(interval[0]):
        return f"{value:.3f}"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def report_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: a table of groups, then the parity gaps (95 % intervals)."""
    intervals = report.get("intervals", {})
    lines = [
        f"# Fairness by {' x '.join(report['sensitive'])} ({report['examples']} examples)",
        "",
        "| group | size | " + " | ".join(METRICS) + " |",
        "| --- | ---: |" + " --- |" * len(METRICS),
    ]
    for name, values in report["groups"].items():
        cells = [_fmt(values[m], intervals.get(name, {}).get(m)) for m in METRICS]
        lines.append(f"| {name} | {int(values['count'])} | " + " | ".join(cells) + " |")
    lines += ["", "| gap | value |", "| --- | --- |"]
    for name, value in report["gaps"].items():
        lines.append(f"| {name} | {_fmt(value, intervals.get('gaps', {}).get(name))} |")
    return "\n".join(lines) + "\n"


def plot_metrics(report: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """One bar chart per metric (groups on the x axis, interval whiskers) as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tensorfab.files import atomic_path

    names = list(report["groups"])
    intervals = report.get("intervals", {})
    paths = []
    for metric in METRICS:
        values = [report["groups"][g][metric] for g in names]
        ci = [intervals.get(g, {}).get(metric, [v, v]) for g, v in zip(names, values, strict=True)]
        err = np.abs(np.array([[c[0] for c in ci], [c[1] for c in ci]]) - np.array(values))
        fig, ax = plt.subplots(figsize=(max(4, len(names) * 0.9), 3))
        ax.bar(names, values, yerr=np.nan_to_num(err), capsize=3)
        ax.set_title(f"{metric} by {' x '.join(report['sensitive'])}")
        ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        path = Path(out_dir) / f"fairness-{metric}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        paths.append(path)
    return paths
