"""``train.average_last``: the running average by hand, its checkpoint round trip, the spec's
limits and the report's section."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tensorfab.engine.averaging import WeightAverage, create_average, evaluate_average
from tensorfab.engine.rundir import MetricsLog
from tensorfab.engine.state import TrainState
from tensorfab.errors import TensorfabError
from tensorfab.metrics.report import render_markdown
from tensorfab.spec import load_spec


def _model(fill: float) -> nn.Module:
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for t in m.state_dict().values():
            t.fill_(fill)  # weights, biases, running stats and the batch count alike
    return m


def test_average_is_the_mean_of_the_epoch_ends_and_leaves_integer_buffers() -> None:
    avg = WeightAverage((2, 4))
    assert [e for e in range(1, 6) if avg.wants(e)] == [2, 3, 4]
    for epoch, fill in ((2, 1.0), (3, 2.0), (4, 6.0)):
        avg.update(_model(fill), epoch)
    assert avg.epochs == [2, 3, 4] and not avg.wants(3)  # an epoch counts once
    target = _model(0.0)
    avg.load_into(target)
    sd = target.state_dict()
    for name in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
        assert torch.allclose(sd[name], torch.full_like(sd[name], 3.0)), name  # (1+2+6)/3
    assert sd["1.num_batches_tracked"].item() == 0  # not averaged: the target's own
    assert avg.nbytes() == 4 * (4 + 2 + 2 + 2 + 2 + 2)  # one fp32 copy, floating tensors only


def test_checkpoint_round_trip_continues_bitwise_and_a_new_window_restarts() -> None:
    torch.manual_seed(0)
    ends = [nn.Linear(3, 3) for _ in range(3)]
    straight = WeightAverage((1, 3))
    for epoch, m in enumerate(ends, 1):
        straight.update(m, epoch)
    first = WeightAverage((1, 3))
    first.update(ends[0], 1)
    resumed = WeightAverage((1, 3))
    assert resumed.load_state_dict(first.state_dict(), torch.device("cpu"))
    resumed.update(ends[1], 2)
    resumed.update(ends[2], 3)
    assert resumed.epochs == [1, 2, 3]
    for k, v in straight.tensors.items():
        assert torch.equal(v, resumed.tensors[k]), k
    other = WeightAverage((2, 4))
    assert not other.load_state_dict(first.state_dict(), torch.device("cpu"))
    assert other.epochs == [] and other.tensors == {}


def test_create_average_takes_the_last_k_epochs() -> None:
    assert create_average(None, 5) is None
    assert create_average(2, 5).window == (4, 5)
    assert create_average(5, 5).window == (1, 5)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["train.average_last=1"],
            "train.average_last: Input should be greater than or equal to 2",
        ),
        (
            ["train.epochs=3", "train.average_last=4"],
            "train.average_last 4 is more than train.epochs 3",
        ),
    ],
)
def test_spec_refuses_an_impossible_window(sets: list[str], message: str) -> None:
    with pytest.raises(TensorfabError) as err:
        load_spec(None, sets)
    assert message in str(err.value)


def test_report_says_what_was_averaged_which_was_packaged_and_the_cost() -> None:
    report = {
        "name": "r",
        "metrics": {
            "best": {"metric": "f1", "value": 0.91, "epoch": None, "averaged_epochs": [3, 4]}
        },
        "averaging": {
            "epochs": [3, 4],
            "metric": "f1",
            "value": 0.91,
            "best_epoch": {"epoch": 4, "value": 0.9},
            "packaged": "average",
            "cost": {"extra_memory_bytes": 3 * 2**20, "average_s": 0.25, "eval_s": 1.5},
        },
    }
    text = render_markdown(report)
    assert "f1 = 0.9100 (weights averaged over epochs 3-4)" in text
    assert "| averaged | the weights at the ends of epochs 3-4 (2) |" in text
    assert "| best epoch (4) f1 | 0.9000 |" in text
    assert "| packaged | average |" in text
    assert "| extra memory | 3.0 MiB (one fp32 copy) |" in text
    assert "| extra time | 0.25 s averaging + 1.50 s eval |" in text


def test_a_run_that_stops_before_two_epochs_are_averaged_says_so() -> None:
    avg = WeightAverage((3, 4))
    avg.update(_model(1.0), 3)
    lines: list[str] = []
    ctx = SimpleNamespace(average=avg, info={}, progress=SimpleNamespace(log=lines.append))
    evaluate_average(ctx, TrainState(epoch=3, best_epoch=2))  # early-stopped after epoch 3
    why = (
        "train.average_last: training ended at epoch 3 with 1 of epochs 3-4 in the average "
        "(early stopping or train.max_steps); an average needs two, so the best epoch is the "
        "package"
    )
    assert ctx.info["averaging"] == {"epochs": [3], "skipped": why}
    assert lines == [f"warning: {why}"]
    assert f"## Weight averaging\n\n{why}" in render_markdown({"averaging": ctx.info["averaging"]})


def test_resume_drops_the_logged_evaluation_of_an_average(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    records = [
        {"kind": "eval", "step": 10, "epoch": 1},
        {"kind": "eval", "step": 20, "epoch": 2},
        {"kind": "average", "step": 20, "averaged_epochs": [1, 2]},
    ]
    for r in records:
        log.append(r)
    log.truncate_after(20)  # a resume from the last checkpoint re-evaluates the average
    kept = [json.loads(x) for x in log.path.read_text().splitlines()]
    assert kept == records[:2]
