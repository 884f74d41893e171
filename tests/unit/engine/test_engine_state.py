"""TrainState.finished: the training loop's end conditions, read from a checkpoint's state."""

from __future__ import annotations

import pytest

from tensorfab.engine.state import TrainState


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
