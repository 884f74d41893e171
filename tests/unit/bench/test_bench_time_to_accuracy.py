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


def test_tensorfab_side_takes_set_overrides_and_one_thread_side_by_side() -> None:
    from pathlib import Path

    from tensorfab.bench.time_to_accuracy import TtaPlan, _engine_spec

    plan = TtaPlan(Path("d"), tensorfab_sets=("train.lr=2e-4", "train.epochs=2"))
    train = _engine_spec(plan, "runs")["train"]
    assert (float(train["lr"]), train["epochs"], "threads" in train) == (2e-4, 2, False)
    assert train["warmup_steps"] == 200  # what is not overridden stays the example's
    alone = _engine_spec(TtaPlan(Path("d"), side_by_side=True), "runs")["train"]
    assert alone["threads"] == 1 and alone["lr"] == 1e-4


def test_side_by_side_pins_each_side_to_its_own_core(monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorfab.bench import time_to_accuracy as tta
    from tensorfab.errors import TensorfabError

    monkeypatch.setattr(tta.os, "sched_getaffinity", lambda pid: {3, 1})
    assert tta.side_cores(["tensorfab", "hf-trainer"], True) == {"tensorfab": 1, "hf-trainer": 3}
    assert tta.side_cores(["tensorfab", "hf-trainer"], False) == {
        "tensorfab": None, "hf-trainer": None,
    }  # fmt: skip
    monkeypatch.setattr(tta.os, "sched_getaffinity", lambda pid: {0})
    with pytest.raises(TensorfabError, match="2 sides, 1 cores"):
        tta.side_cores(["tensorfab", "hf-trainer"], True)


def test_a_plan_survives_the_trip_to_the_child() -> None:
    from pathlib import Path

    from tensorfab.bench.time_to_accuracy import TtaPlan, _plan_from_json, _plan_json

    plan = TtaPlan(Path("x/y"), 0.8, 2, 1, 10, 5, ("train.lr=1e-3",), True)
    assert _plan_from_json(_plan_json(plan)) == plan
