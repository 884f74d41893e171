"""The end of a run: which rank scores and writes, and how the summary names the split."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from tensorfab.engine import report as report_mod
from tensorfab.engine.distributed import DistEnv
from tensorfab.engine.rundir import RunDir
from tensorfab.engine.state import TrainState


def test_other_ranks_neither_read_nor_write_the_package_and_wait_for_rank_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rank 1 once loaded model/weights.safetensors that only rank 0 writes: under torchrun
    # it raced rank 0 and died with FileNotFoundError. Here the file does not exist at all.
    waits: list[DistEnv] = []
    monkeypatch.setattr(report_mod, "barrier", waits.append)
    env = DistEnv(rank=1, local_rank=1, world_size=2)
    ctx = SimpleNamespace(env=env, run=RunDir(tmp_path / "runs/ddp"))
    assert report_mod.finish_run(ctx, TrainState(), "completed", 1.0) == {}
    assert waits == [env]
    assert not (tmp_path / "runs").exists()


def _report(split: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "ner",
        "status": "completed",
        "data": {"split": split},
        "metrics": {
            "test": {"f1": 0.5, "macro_f1": 0.25},
            "best": {"metric": "f1", "value": 0.5, "epoch": 1},
        },
        "throughput": {"train_samples_per_s": 100.0, "mfu": None},
        "hardware": {"device": "cpu", "device_name": "CPU", "precision": "fp32"},
        "timings": {"total_s": 1.0},
        "steps": 4,
    }


def _rows(report: dict[str, Any]) -> list[str]:
    console = Console(record=True, width=80)
    console.print(report_mod.summary_table(report))
    return [line.strip("│ ").split("│")[0].strip() for line in console.export_text().splitlines()]


def test_summary_names_the_eval_split_when_test_is_the_eval_split() -> None:
    # CoNLL with eval_path and no test_path: the final scores come from the valid file.
    rows = _rows(_report({"method": "given", "test": "eval"}))
    assert "eval f1" in rows and "eval macro_f1" in rows
    assert not [r for r in rows if r.startswith("test ")]


def test_summary_names_the_test_split_when_it_has_its_own_data() -> None:
    for split in ({"method": "given", "test": "given"}, {"method": "stratified"}):
        rows = _rows(_report(split))
        assert "test f1" in rows and "eval f1" not in rows


def test_summary_says_why_this_precision_and_thread_count() -> None:
    report = _report({"method": "stratified"})
    report["hardware"] |= {
        "precision": "bf16",
        "precision_choice": {"precision": "bf16", "reason": "probe 1.4x"},
        "threads": {"threads": 1, "reason": "busy"},
    }
    console = Console(record=True, width=100)
    console.print(report_mod.summary_table(report))
    text = console.export_text()
    assert "│ precision       │ bf16: probe 1.4x" in text
    assert "│ threads         │ 1: busy" in text
    from tensorfab.metrics.report import render_markdown

    markdown = render_markdown(report)  # report.md says the same
    assert "| precision | bf16: probe 1.4x |" in markdown and "| threads | 1: busy |" in markdown
    older = Console(record=True, width=100)  # a report from before issue 18: no reasons
    older.print(report_mod.summary_table(_report({"method": "stratified"})))
    assert "│ precision       │ fp32 " in older.export_text()
    assert "threads" not in older.export_text()
    assert "| precision | fp32 |" in render_markdown(_report({"method": "stratified"}))


def _limited() -> dict[str, Any]:
    """CoNLL with data.limit_eval=400 and no test file: best on 400 sentences, final on all."""
    split = {
        "method": "given",
        "test": "eval",
        "limit_eval": 400,
        "eval_size": 400,
        "eval_full_size": 3250,
        "test_size": 3250,
    }
    report = _report(split)
    report["data"]["subsets"] = report_mod.subsets(split)
    return report


def test_a_limited_eval_split_is_named_as_a_subset_where_the_best_value_is_shown() -> None:
    # issue 21: "best f1 0.4392 at epoch 1" beside "eval f1 0.4595" read as one split
    report = _limited()
    assert report["data"]["subsets"] == {"eval": {"used": 400, "of": 3250}}
    console = Console(record=True, width=120)
    console.print(report_mod.summary_table(report))
    text = console.export_text()
    assert "f1 0.5000 at epoch 1 (eval subset: 400 of 3,250)" in text
    final = next(line for line in text.splitlines() if "eval f1" in line)
    assert "0.5000" in final and "subset" not in final  # the final score is on all 3,250


def test_the_markdown_report_names_the_subset_too(tmp_path: Path) -> None:
    from tensorfab.metrics.report import render_markdown

    text = render_markdown(_limited())
    assert "f1 = 0.5000 (epoch 1) (eval subset: 400 of 3,250)" in text


def test_no_subset_without_a_limit_or_when_the_limit_kept_everything() -> None:
    assert report_mod.subsets({"eval_size": 3250}) == {}
    assert report_mod.subsets({"limit_test": 5000, "test_size": 3250, "test_full_size": 3250}) == {}
    assert report_mod.subsets(
        {"limit_train": 48, "train_size": 48, "train_full_size": 1437, "limit_test": 16}
    ) == {"train": {"used": 48, "of": 1437}}
