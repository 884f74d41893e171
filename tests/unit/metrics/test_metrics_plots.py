"""Tests for tensorfab.metrics.plots: PNG files are written, edge cases fail clearly."""

import numpy as np
import pytest

from tensorfab.metrics import plot_confusion_matrix, plot_curves, plot_stacked_bars

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
