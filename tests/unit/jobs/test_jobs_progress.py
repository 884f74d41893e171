"""A run's live progress from the tail of its metrics.jsonl: values, ETA, a file being written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tensorfab.jobs.progress import Progress, eta_s, progress_of, read_tail, run_progress


def _train(step: int, t: float, loss: float, total: int | None = 100) -> dict:
    return {
        "kind": "train",
        "step": step,
        "epoch": 1 + step // 50,
        "loss": loss,
        "lr": 0.1,
        "samples_per_s": 640.0,
        "time": t,
        "total_steps": total,
        "mfu": None,
    }


EVAL = {
    "kind": "eval",
    "epoch": 1,
    "step": 50,
    "train_loss": 0.6,
    "eval_loss": 0.5,
    "accuracy": 0.9,
}


def test_progress_takes_the_last_train_and_eval_records_and_the_recent_pace() -> None:
    records = [_train(10, 100.0, 0.9), _train(20, 110.0, 0.7), EVAL, _train(60, 150.0, 0.3)]
    # pace: 50 steps in 50 s -> 1 step/s; 40 steps left -> 40 s
    assert progress_of(records) == Progress(
        epoch=2,
        step=60,
        total_steps=100,
        loss=0.3,
        metric="accuracy",
        metric_value=0.9,
        samples_per_s=640.0,
        mfu=None,
        eta_s=40.0,
    )
    assert progress_of(records).fraction == 0.6  # type: ignore[union-attr]


def test_the_pace_is_that_of_the_last_ten_records() -> None:
    slow = [_train(s, float(10 * s), 1.0) for s in range(1, 6)]  # 10 s per step
    fast = [_train(s, 50.0 + (s - 5), 1.0) for s in range(6, 16)]  # then 1 s per step
    assert eta_s(slow + fast) == 85.0  # 10 records: steps 6..15 in 9 s; 85 steps left


@pytest.mark.parametrize(
    "records",
    [
        [_train(10, 100.0, 0.9)],  # one record: no pace yet
        [_train(10, 100.0, 0.9, total=None), _train(20, 110.0, 0.8, total=None)],
        [{**_train(10, 100.0, 0.9), "time": None}, _train(20, 110.0, 0.8)],  # older engine
        [_train(10, 100.0, 0.9), _train(10, 110.0, 0.8)],  # no step made
    ],
)
def test_no_eta_without_a_pace_or_a_plan(records: list[dict]) -> None:
    assert eta_s(records) is None


def test_nothing_logged_is_no_progress_and_an_eval_alone_gives_epoch_and_metric() -> None:
    assert progress_of([]) is None
    assert run_progress(None) is None
    only_eval = progress_of([EVAL])
    assert only_eval is not None
    assert (only_eval.epoch, only_eval.metric, only_eval.step, only_eval.fraction) == (
        1,
        "accuracy",
        None,
        None,
    )


def test_the_tail_skips_a_cut_first_line_and_a_half_written_last_one(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps(_train(s, float(s), 1.0 / s)) for s in (1, 2, 3)]
    path.write_text("\n".join(lines) + '\n{"kind": "train", "st')
    assert [r["step"] for r in read_tail(path)] == [1, 2, 3]
    tail = len(lines[2]) + len(lines[1]) // 2 + 40  # cuts record 2 in half: it is dropped
    assert [r["step"] for r in read_tail(path, max_bytes=tail)] == [3]
    assert read_tail(tmp_path / "missing.jsonl") == []
    progress = run_progress(str(tmp_path))
    assert progress is not None and (progress.step, progress.eta_s) == (3, 97.0)
