"""The bench report: n/a for missing numbers, the files written beside the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tensorfab.bench.report import default_out_path, fmt, markdown, save_results, unused_path


def _side(samples_per_s: float, mfu: float | None) -> dict:
    return {
        "precision": "fp32",
        "samples_per_s": samples_per_s,
        "tokens_per_s": None,
        "step_time_ms": {"median": 2.0, "p10": 1.5, "p90": 3.0},
        "peak_memory_bytes": 3_000_000,
        "mfu": mfu,
        "energy_j_per_sample": None,
    }


def _result() -> dict:
    return {
        "kind": "train",
        "environment": {
            "device": "cpu",
            "device_name": "Test CPU",
            "date": "2026-11-25",
            "command": "tensorfab bench train",
            "torch_version": "2.13.0",
            "note": "shared machine",
        },
        "results": [
            {
                "workload": "lenet-mnist",
                "batch_size": 64,
                "data": {"source": "synthetic", "path": "/nowhere/mnist"},
                "baseline": _side(1000.0, None),
                "tensorfab": _side(800.0, 0.125),
                "ratio": 0.8,
            }
        ],
    }


def test_fmt_says_na_for_missing_numbers() -> None:
    assert fmt(None) == "n/a"
    assert fmt(0.125, ".1%") == "12.5%"
    assert fmt(3_000_000, ",.0f", 1e-6) == "3"


def test_train_table_shows_ratio_below_one_and_na() -> None:
    table = markdown(_result())
    assert "Note: shared machine" in table
    base, ours = (line for line in table.splitlines() if line.startswith("| lenet-mnist"))
    # the baseline row leaves the ratio cell empty (markdown_table writes it as "| |")
    assert base.endswith("| 1,000.0 | n/a | 2.00 (1.50-3.00) | 3 | n/a | n/a | |")
    assert ours.endswith("| 12.5% | n/a | 0.80x |")
    assert "- lenet-mnist: synthetic, /nowhere/mnist" in table


def test_save_results_writes_json_table_and_chart(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "cpu.json"
    files = save_results(_result(), out)
    assert files == {
        "json": str(out),
        "markdown": str(out.with_suffix(".md")),
        "chart": str(out.with_suffix(".png")),
    }
    assert json.loads(out.read_text())["files"] == files
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_default_path_names_device_date_and_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default is relative to where bench runs
    path = default_out_path(torch.device("cuda", 0), "train", "2026-11-25")
    assert path.as_posix() == "benchmarks/results/cuda-2026-11-25-bench-train.json"
    quick = default_out_path(torch.device("cpu"), "infer", "2026-11-25", quick=True)
    assert quick.as_posix() == "benchmarks/results/cpu-2026-11-25-bench-infer-quick.json"


def test_default_path_never_names_results_already_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "cpu-2026-11-25-bench-train.json").write_text("{}")
    (results / "cpu-2026-11-25-bench-train-2.md").write_text("")  # a table alone counts too
    path = default_out_path(torch.device("cpu"), "train", "2026-11-25")
    assert path.as_posix() == "benchmarks/results/cpu-2026-11-25-bench-train-3.json"
    assert unused_path(tmp_path / "free.json") == tmp_path / "free.json"
