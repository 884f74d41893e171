"""``bench time-to-accuracy``: where an epoch is cut for evaluation, and the engine source
that trains an epoch in parts (the end-to-end run takes minutes: measured, not tested)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

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


class _Child:
    """A finished side's process: what the child printed, exit status 0."""

    returncode = 0

    def __init__(self, printed: str) -> None:
        self.printed = printed

    def communicate(self) -> tuple[str, str]:
        return self.printed, ""


def test_a_sides_result_names_the_precision_its_child_chose() -> None:
    from tensorfab.bench import time_to_accuracy as tta

    now = tta.time.monotonic()
    evals = [tta._stamp(0.25, 0.85), tta._stamp(0.5, 0.91)]
    runtime = {"precision": "bf16", "precision_choice": {"probe_speedup": 1.3}}
    printed = "progress line\n" + json.dumps({"evaluations": evals, "runtime": runtime})
    plan = tta.TtaPlan(data_dir=Path("."), target=0.9)
    side = tta._finish("tensorfab", plan, _Child(printed), now - 10.0)  # type: ignore[arg-type]
    assert side["runtime"] == runtime
    assert side["reached"] and side["evaluations"][1]["f1"] == 0.91
    assert 10.0 <= side["time_to_target_s"] < 20.0


def test_the_table_names_each_sides_precision() -> None:
    from tensorfab.bench.report import markdown

    env = {"device_name": "cpu", "device": "cpu", "date": "2026-11-30", "command": "c"}
    env["torch_version"] = "2"
    side = {"reached": True, "time_to_target_s": 12.0, "evaluations": [{"f1": 0.91}]}
    result = {"kind": "time-to-accuracy", "environment": env, "plan": {"target": 0.9}}
    result["sides"] = {"tensorfab": {**side, "runtime": {"precision": "bf16"}}, "hf-trainer": side}
    result["tensorfab_over_hf_trainer_time"] = 0.5
    table = re.sub(" +", " ", markdown(result))
    assert "| tensorfab | bf16 | yes |" in table
    assert "| hf-trainer | ? | yes |" in table  # a result from before sides named theirs
