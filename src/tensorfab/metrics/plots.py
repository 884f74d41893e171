"""Plots as PNG files: loss per step and per epoch, metric curves, the confusion matrix, bars.

matplotlib is imported inside each function, and figures are drawn with the Agg canvas directly
(``matplotlib.figure.Figure``, not pyplot): importing this module costs nothing, it works without a
display, and it never switches the backend of a user's interactive session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tensorfab.files import atomic_path

MAX_ANNOTATED_CLASSES = 20


def _figure(width_in: float, height_in: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


POSITION_KEYS = ("epoch", "step")  # where a row was logged: an axis, never a curve
TITLES = {
    "steps": "training loss per step",
    "loss": "loss per epoch",
    "metric": "evaluation metrics per epoch",
}


def _present_keys(history: Sequence[Mapping[str, Any]], keys: list[str] | None) -> list[str]:
    """Keys (in first-seen order, or the order given) that at least one row holds a number for."""
    if keys is None:
        keys = []
        for row in history:
            keys += [key for key in row if key not in keys and key not in POSITION_KEYS]
    return [k for k in keys if any(_is_number(row.get(k)) for row in history)]


def _series(
    history: Sequence[Mapping[str, Any]], key: str, x: str = "epoch"
) -> tuple[list[float], list[float]]:
    """(x, values) for rows that hold ``key``; x defaults to the row's 1-based position."""
    xs, ys = [], []
    for i, row in enumerate(history, start=1):
        value = row.get(key)
        if _is_number(value):
            xs.append(float(row.get(x, i)))
            ys.append(float(value))
    return xs, ys


def _draw(
    ax: Any, history: Sequence[Mapping[str, Any]], keys: list[str], panel: str, x: str
) -> None:
    from matplotlib.ticker import MaxNLocator

    for key in keys:
        xs, ys = _series(history, key, x)
        ax.plot(xs, ys, marker="o" if x == "epoch" else None, label=key)
    ax.set_title(TITLES[panel])
    ax.set_xlabel(x)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.2"
    ax.set_ylabel("loss" if panel != "metric" else "value")
    ax.grid(alpha=0.3)
    ax.legend()


def curves_figure(
    history: Sequence[Mapping[str, Any]],
    keys: list[str] | None = None,
    steps: Sequence[Mapping[str, Any]] = (),
) -> Any:
    """The figure of :func:`plot_curves`: one panel per kind of number, each with a title.

    ``steps`` are the per-step training records (``{"step", "loss"}``, metrics.jsonl's
    ``train`` rows): a loss-per-step panel. Then losses per epoch (keys ending in "loss"),
    then the other metrics per epoch. Positions (``epoch``, ``step``) are axes, never curves,
    so a step count does not flatten the accuracy curve beside it.
    """
    if not history:
        raise ValueError("no history to plot")
    present = _present_keys(history, keys)
    if not present:
        raise ValueError(f"no history to plot: none of {keys} appear in any row")
    losses = [k for k in present if k.endswith("loss")]
    others = [k for k in present if not k.endswith("loss")]
    panels = [(steps, ["loss"], "steps", "step")] if any("loss" in r for r in steps) else []
    panels += [
        (history, group, panel, "epoch")
        for group, panel in ((losses, "loss"), (others, "metric"))
        if group
    ]
    fig = _figure(6 * len(panels), 4)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (rows, group, panel, x) in zip(axes[0], panels, strict=True):
        _draw(ax, rows, group, panel, x)
    return fig


def plot_curves(
    history: Sequence[Mapping[str, Any]],
    path: Path,
    keys: list[str] | None = None,
    steps: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """:func:`curves_figure` as a PNG at ``path``.

    ``keys`` picks what to draw per epoch (default: every numeric key but the positions);
    keys absent from all rows are skipped.
    """
    return _save(curves_figure(history, keys, steps), path)


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def plot_stacked_bars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    path: Path,
    ylabel: str,
    title: str = "",
) -> Path:
    """One bar per label (say, a day), stacked from one segment per series (say, a team).

    Every series holds one value per label; the legend lists the series in the order given.
    """
    if not labels or not series:
        raise ValueError("nothing to plot: no labels or no series")
    for name, values in series.items():
        if len(values) != len(labels):
            raise ValueError(f"series {name!r}: {len(values)} values for {len(labels)} labels")
    fig = _figure(max(6.0, 0.5 * len(labels) + 2), 4)
    ax = fig.subplots()
    bottom = np.zeros(len(labels))
    for name, values in series.items():
        ax.bar(labels, values, bottom=bottom, label=name)
        bottom += np.asarray(values, dtype=np.float64)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=45)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _annotate(ax: Any, counts: np.ndarray, shown: np.ndarray, normalize: bool) -> None:
    """Write each cell's count (and its row fraction when normalized) on the heat map."""
    threshold = shown.max() / 2 if shown.size else 0
    for (i, j), count in np.ndenumerate(counts):
        text = f"{count}\n{shown[i, j]:.2f}" if normalize else f"{count}"
        color = "white" if shown[i, j] > threshold else "black"
        ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)


def plot_confusion_matrix(
    cm: Any, class_names: list[str], path: Path, normalize: bool = True
) -> Path:
    """Heat map, rows = true class, columns = predicted; rows scaled to sum to 1 if ``normalize``.

    Counts are written in the cells when there are at most 20 classes.
    """
    counts = np.asarray(cm, dtype=np.int64)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix shape {counts.shape} does not match {n} class names")
    shown = counts.astype(np.float64)
    if normalize:
        row_sums = shown.sum(axis=1, keepdims=True)
        shown = np.divide(shown, row_sums, out=np.zeros_like(shown), where=row_sums != 0)
    size = max(4.0, 0.5 * n + 2)
    fig = _figure(size, size)
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= MAX_ANNOTATED_CLASSES:
        _annotate(ax, counts, shown, normalize)
    return _save(fig, path)
