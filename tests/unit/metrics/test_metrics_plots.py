"""Tests for tensorfab.metrics.plots: PNG files are written, edge cases fail clearly."""

import numpy as np
import pytest

from tensorfab.metrics import plot_confusion_matrix, plot_curves, plot_stacked_bars
from tensorfab.metrics.plots import curves_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = [
    {"epoch": 1, "train_loss": 1.2, "eval_loss": 0.9, "accuracy": 0.5, "macro_f1": 0.4},
    {"epoch": 2, "train_loss": 0.7, "eval_loss": 0.6, "accuracy": 0.75, "macro_f1": 0.7},
    {"epoch": 3, "train_loss": 0.5, "accuracy": 0.8},
]


def assert_png(path):
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000


def test_plot_curves_writes_png(tmp_path):
    path = plot_curves(HISTORY, tmp_path / "plots" / "curves.png")
    assert path == tmp_path / "plots" / "curves.png"
    assert_png(path)


def _lines(ax):
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}


def test_curves_have_titled_panels_and_step_is_an_axis_not_a_curve():
    # the engine's history rows hold the global step beside the scores (issue 21: a step
    # count 0-345 on the accuracy axis flattened the real curves)
    history = [{**row, "step": 115 * i} for i, row in enumerate(HISTORY, start=1)]
    steps = [{"kind": "train", "step": s, "epoch": 1, "loss": 2.0 / s} for s in (50, 100, 150)]
    fig = curves_figure(history, steps=steps)
    by_title = {ax.get_title(): ax for ax in fig.axes}
    assert list(by_title) == [
        "training loss per step",
        "loss per epoch",
        "evaluation metrics per epoch",
    ]
    per_step = by_title["training loss per step"]
    assert per_step.get_xlabel() == "step"
    assert _lines(per_step) == {"loss": ([50.0, 100.0, 150.0], [0.04, 0.02, 2.0 / 150])}
    assert _lines(by_title["loss per epoch"]) == {
        "train_loss": ([1.0, 2.0, 3.0], [1.2, 0.7, 0.5]),
        "eval_loss": ([1.0, 2.0], [0.9, 0.6]),
    }
    metrics = _lines(by_title["evaluation metrics per epoch"])
    assert set(metrics) == {"accuracy", "macro_f1"}  # no "step", no "epoch"
    assert metrics["accuracy"] == ([1.0, 2.0, 3.0], [0.5, 0.75, 0.8])


def test_curves_without_step_records_have_no_step_panel():
    fig = curves_figure(HISTORY)
    assert [ax.get_title() for ax in fig.axes] == ["loss per epoch", "evaluation metrics per epoch"]


def test_plot_curves_with_keys_skips_absent_ones(tmp_path):
    path = plot_curves(HISTORY, tmp_path / "loss.png", keys=["train_loss", "not_logged"])
    assert_png(path)


def test_plot_curves_only_metrics(tmp_path):
    assert_png(plot_curves([{"epoch": 1, "accuracy": 0.5}], tmp_path / "acc.png"))


def test_plot_curves_empty_history_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no history to plot"):
        plot_curves([], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_curves_no_requested_key_present_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"no history to plot: none of \['bleu'\] appear"):
        plot_curves(HISTORY, tmp_path / "x.png", keys=["bleu"])


def test_plot_confusion_matrix_writes_png(tmp_path):
    cm = np.array([[5, 1, 0], [0, 3, 2], [1, 0, 4]])
    path = plot_confusion_matrix(cm, ["cat", "dog", "fox"], tmp_path / "cm.png")
    assert_png(path)


def test_plot_confusion_matrix_counts_with_empty_row(tmp_path):
    cm = [[2, 0], [0, 0]]  # list of lists, as stored in report.json; class 1 never seen
    path = plot_confusion_matrix(cm, ["a", "b"], tmp_path / "cm.png", normalize=False)
    assert_png(path)
    assert_png(plot_confusion_matrix(cm, ["a", "b"], tmp_path / "cm_norm.png"))


def test_plot_confusion_matrix_many_classes_is_not_annotated(tmp_path):
    n = 25
    cm = np.random.default_rng(0).integers(0, 10, size=(n, n))
    assert_png(plot_confusion_matrix(cm, [f"c{i}" for i in range(n)], tmp_path / "cm.png"))


def test_plot_confusion_matrix_shape_mismatch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(2, 2\) does not match 3 class names"):
        plot_confusion_matrix(np.eye(2), ["a", "b", "c"], tmp_path / "cm.png")


def test_plot_stacked_bars_writes_png(tmp_path):
    days = ["2026-11-29", "2026-11-30"]
    path = plot_stacked_bars(days, {"a": [1.0, 2.0], "b": [0.5, 0.0]}, tmp_path / "s.png", "h")
    assert_png(path)
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]  # written atomically, no temp left


def test_plot_stacked_bars_needs_one_value_per_label(tmp_path):
    with pytest.raises(ValueError, match=r"series 'a': 1 values for 2 labels"):
        plot_stacked_bars(["x", "y"], {"a": [1.0]}, tmp_path / "s.png", "h")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_stacked_bars([], {}, tmp_path / "s.png", "h")
