"""When a run is complete: the loop's end conditions on a checkpoint's state, and its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tensorfab.engine.state import TrainState
from tensorfab.engine.train import RunResult, completed_run
from tensorfab.spec import load_spec


@pytest.mark.parametrize(
    ("state", "limits", "expected"),
    [
        (TrainState(epoch=10, global_step=938), (10, None, None), "completed"),
        (TrainState(epoch=9, global_step=844), (10, None, None), None),
        (TrainState(epoch=10, global_step=938), (12, None, None), None),  # more epochs: go on
        # a checkpoint taken mid-epoch always has that epoch's evaluation left
        (TrainState(epoch=3, batch_in_epoch=5, global_step=500), (10, 500, None), None),
        (TrainState(epoch=6, global_step=500), (10, 500, None), "max-steps"),
        (TrainState(epoch=6, global_step=500), (10, 800, None), None),  # raised max_steps
        (TrainState(epoch=4, global_step=400, bad_evals=2), (10, None, 2), "early-stopped"),
        (TrainState(epoch=4, global_step=400, bad_evals=2), (10, None, 3), None),  # patience
        (TrainState(epoch=4, global_step=400, bad_evals=2), (10, None, None), None),
        # the loop's order: early stopping is named before the epoch count
        (TrainState(epoch=10, global_step=938, bad_evals=3), (10, None, 3), "early-stopped"),
        (TrainState(epoch=10, global_step=938), (10, 938, None), "max-steps"),
    ],
)
def test_finished(state: TrainState, limits: tuple, expected: str | None) -> None:
    assert state.finished(*limits) == expected


def test_state_round_trips_with_timings_and_reads_older_checkpoints() -> None:
    state = TrainState(epoch=2, global_step=20, train_samples=[640.0, 640.0])
    state.train_time_s.extend([1.5, 1.25])
    assert TrainState.from_dict(state.to_dict()) == state
    old = {k: v for k, v in state.to_dict().items() if not k.startswith("train_")}
    assert TrainState.from_dict(old).train_time_s == []  # a checkpoint from before timings


def _finished_run(tmp_path: Path, steps_in_report: int | None, *sets: str) -> RunResult | None:
    """completed_run for a run dir holding only a report (or none) and a state dict."""
    spec = load_spec(None, [f"output.runs_dir={tmp_path}", "output.name=x", *sets])
    run = tmp_path / "x"
    run.mkdir(parents=True)
    if steps_in_report is not None:
        (run / "report.json").write_text(json.dumps({"steps": steps_in_report}))
    state = TrainState(epoch=4, global_step=375, bad_evals=2)
    return completed_run(spec, {"state": state.to_dict()})


def test_complete_run_lines_say_how_the_run_ended(tmp_path: Path) -> None:
    early = _finished_run(tmp_path / "a", 375, "train.early_stopping.patience=2")
    assert early is not None and early.status == "already-complete"
    assert early.report == {"steps": 375}
    assert early.message == (
        f"run {tmp_path}/a/x is already complete (stopped early at epoch 4/10, step 375; "
        "raise train.early_stopping.patience to continue); nothing to do"
    )
    capped = _finished_run(tmp_path / "b", 375, "train.max_steps=375")
    assert capped is not None
    assert capped.message == (
        f"run {tmp_path}/b/x is already complete "
        "(train.max_steps=375 reached at epoch 4/10, step 375); nothing to do"
    )
    done = _finished_run(tmp_path / "c", 375, "train.epochs=4")
    assert done is not None
    assert (
        done.message
        == f"run {tmp_path}/c/x is already complete (epoch 4/4, step 375); nothing to do"
    )


def test_a_run_is_not_complete_without_its_report_or_with_work_left(tmp_path: Path) -> None:
    assert _finished_run(tmp_path / "a", None, "train.epochs=4") is None  # killed before it
    assert _finished_run(tmp_path / "b", 300, "train.epochs=4") is None  # an older report
    assert _finished_run(tmp_path / "c", 375, "train.epochs=6") is None  # more epochs asked
