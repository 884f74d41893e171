"""``bench time-to-accuracy``: where an epoch is cut for evaluation, and the engine source
that trains an epoch in parts (the end-to-end run takes minutes: measured, not tested)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tensorfab.bench.time_to_accuracy import _Upto, eval_cuts


@pytest.mark.parametrize(
    ("batches", "evals", "cuts"),
    [(878, 4, [220, 439, 659, 878]), (10, 4, [3, 5, 8, 10]), (2, 4, [1, 2]), (5, 1, [5])],
)
def test_eval_cuts(batches: int, evals: int, cuts: list[int]) -> None:
    assert eval_cuts(batches, evals) == cuts


class _Source:
    batch_size = 16

    def __len__(self) -> int:
        return 10

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[int, int]]:
        return ((epoch, i) for i in range(start_batch, 10))


def test_upto_trains_an_epoch_in_parts() -> None:
    upto = _Upto(_Source())
    assert len(upto) == 10 and upto.batch_size == 16
    upto.end = 3
    assert list(upto.epoch(1, 0)) == [(1, 0), (1, 1), (1, 2)]
    upto.end = 5
    assert list(upto.epoch(1, 3)) == [(1, 3), (1, 4)]  # resumes where the last part ended
