"""Tests for tensorfab.metrics.report: formatting, markdown rendering, atomic file writes."""

import json
from unittest import mock

import numpy as np
import pytest

from tensorfab.metrics import (
    classification_scores,
    format_metric,
    format_percent,
    render_markdown,
    write_report,
)

NAMES = ["cat", "dog", "fox"]


def full_report():
    scores = classification_scores([0, 0, 1, 2], [0, 1, 1, 2], NAMES)
    return {
        "name": "digits-lenet",
        "task": "image-classification",
        "status": "completed",
        "created": "2025-01-01T12:00:00+00:00",
        "spec": {"model": {"name": "lenet"}, "train": {"epochs": 2}},
        "data": {
            "source": {"format": "digits"},
            "split": {"eval": 0.1},
            "train_size": 1200,
            "eval_size": 150,
            "test_size": 447,
        },
        "model": {"name": "lenet", "parameters": 61706, "flops_per_sample": 8.4e5},
        "hardware": {
            "device": "cpu",
            "device_name": "Intel Xeon",
            "precision": "fp32",
            "threads": 16,
        },
        "metrics": {
            "eval": scores,
            "test": scores,
            "best": {"metric": "accuracy", "value": 0.75, "epoch": 2},
        },
        "throughput": {
            "train_samples_per_s": 12345.6,
            "eval_samples_per_s": 40000.0,
            "mfu": None,
            "peak_tflops": None,
            "datasheet_peak_tflops": None,
            "epoch_time_s": [1.5, 1.25],
        },
        "timings": {"total_s": 3.5, "train_s": 2.75, "eval_s": 0.5},
        "history": [
            {"epoch": 1, "train_loss": 1.2, "eval_loss": 0.9, "accuracy": 0.5},
            {"epoch": 2, "train_loss": 0.7, "eval_loss": 0.6, "accuracy": 0.75},
        ],
        "artifacts": {"model": "model/", "plots": ["plots/curves.png", "plots/confusion.png"]},
        "something_new": {"kept": True},
    }


def test_format_metric():
    assert format_metric(0.123456) == "0.1235"
    assert format_metric(1.0) == "1.0000"
    assert format_metric(None) == "n/a"
    assert format_metric(7) == "7"
    assert format_metric("x") == "x"
    assert format_metric(0.5, digits=2) == "0.50"


def test_format_percent():
    assert format_percent(0.4213) == "42.13%"
    assert format_percent(None) == "n/a"
    assert format_percent(0.5, digits=0) == "50%"


def test_markdown_has_sections_class_names_and_numbers():
    text = render_markdown(full_report())
    assert text.startswith("# Run report: digits-lenet\n")
    for section in (
        "## Summary",
        "## Per class (test)",
        "## Per class (eval)",
        "## History",
        "## Timings",
        "## Data and model",
        "## Artifacts",
    ):
        assert section in text
    for name in NAMES:
        assert f"| {name} |" in text
    assert "| status | completed |" in text
    assert "| device | cpu (Intel Xeon) |" in text
    assert "| best | accuracy = 0.7500 (epoch 2) |" in text
    assert "| test accuracy | 0.7500 |" in text
    assert "| train samples/s | 12,345.6 |" in text
    assert "| parameters | 61,706 |" in text
    # per-class row: cat has precision 1, recall 1/2, F1 2/3, support 2
    assert "| cat | 1.0000 | 0.5000 | 0.6667 | 2 |" in text
    assert "| epoch | train_loss | eval_loss | accuracy |" in text
    assert "| 2 | 0.7000 | 0.6000 | 0.7500 |" in text
    assert "| per epoch | 1.50, 1.25 |" in text


def test_markdown_shows_na_for_missing_mfu():
    text = render_markdown(full_report())
    assert "| MFU | n/a |" in text


def test_markdown_shows_mfu_with_measured_and_datasheet_peaks():
    report = full_report()
    report["throughput"].update(mfu=0.4213, peak_tflops=700.0, datasheet_peak_tflops=989.4)
    text = render_markdown(report)
    assert "| MFU | 42.13% (measured peak 700.0 TFLOP/s, datasheet peak 989.4 TFLOP/s) |" in text


def test_markdown_ignores_unknown_keys():
    text = render_markdown(full_report())
    assert "something_new" not in text


@pytest.mark.parametrize(
    "missing",
    [
        "metrics",
        "throughput",
        "hardware",
        "history",
        "timings",
        "data",
        "model",
        "artifacts",
        "name",
        "status",
        "created",
    ],
)
def test_markdown_survives_a_missing_section(missing):
    report = full_report()
    del report[missing]
    text = render_markdown(report)
    assert text.startswith("# Run report:")
    assert "## Summary" in text


def test_markdown_of_empty_report():
    text = render_markdown({})
    assert text.startswith("# Run report: unnamed\n")
    assert "| MFU | n/a |" in text
    assert "## History" not in text
    assert "## Per class" not in text


def test_markdown_survives_partial_sections():
    report = {
        "metrics": {"eval": {"accuracy": 0.5}, "best": {"metric": "accuracy", "value": None}},
        "history": [{"train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5, "accuracy": None}],
        "hardware": {"device": "cuda:0"},
        "throughput": {"mfu": 0.1},
        "model": {"name": "x", "flops_per_sample": None},
    }
    text = render_markdown(report)
    assert "| eval accuracy | 0.5000 |" in text
    assert "| best | n/a |" in text
    assert "| device | cuda:0 |" in text
    assert "| FLOPs per sample | n/a |" in text
    assert "| MFU | 10.00% |" in text
    assert "| 2 | 0.5000 | n/a |" in text


def test_write_report_round_trip(tmp_path):
    report = full_report()
    json_path, md_path = write_report(tmp_path, report)
    assert json_path == tmp_path / "report.json"
    assert md_path == tmp_path / "report.md"
    loaded = json.loads(json_path.read_text())
    assert loaded == report
    assert list(loaded) == list(report)  # insertion order kept, not sorted
    assert md_path.read_text() == render_markdown(report)


def test_write_report_creates_run_dir_and_leaves_no_temp_files(tmp_path):
    run_dir = tmp_path / "runs" / "a"
    write_report(run_dir, full_report())
    write_report(run_dir, full_report())  # overwrite in place
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.json", "report.md"]


def test_write_report_converts_numpy_values(tmp_path):
    report = {"metrics": {"eval": {"accuracy": np.float32(0.5), "cm": np.eye(2, dtype=np.int64)}}}
    json_path, _ = write_report(tmp_path, report)
    loaded = json.loads(json_path.read_text())
    assert loaded["metrics"]["eval"] == {"accuracy": 0.5, "cm": [[1, 0], [0, 1]]}


def test_failed_write_keeps_old_report_and_removes_temp_file(tmp_path):
    json_path, _ = write_report(tmp_path, {"name": "old"})
    with (
        mock.patch("tensorfab.files.os.replace", side_effect=OSError("disk full")),
        pytest.raises(OSError, match="disk full"),
    ):
        write_report(tmp_path, {"name": "new"})
    assert json.loads(json_path.read_text()) == {"name": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]


def test_markdown_timings_drop_the_unit_suffix():
    text = render_markdown({"timings": {"total_s": 3.5}})
    assert "| total | 3.50 |" in text


def test_markdown_escapes_pipes_in_cells():
    scores = classification_scores([0, 1], [0, 1], ["a|b", "c"])
    text = render_markdown({"metrics": {"eval": scores}})
    assert "| a\\|b | 1.0000 |" in text


def test_markdown_names_the_split_the_final_scores_come_from():
    scores = classification_scores([0, 1], [0, 1], ["a", "b"])
    given = {"data": {"split": {"method": "given", "test": "eval"}}, "metrics": {"test": scores}}
    text = render_markdown(given)  # CoNLL with eval_path only: "test" is the valid file
    assert "| eval accuracy | 1.0000 |" in text and "## Per class (eval)" in text
    assert "(test)" not in text and "test accuracy" not in text
    own = {"data": {"split": {"method": "stratified"}}, "metrics": {"test": scores}}
    assert "## Per class (test)" in render_markdown(own)
