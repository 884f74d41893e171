"""``train.average_last`` end to end on digits: a run killed between epochs and resumed ends
with bitwise the averaged weights of an uninterrupted run; the average is the mean of the
epoch ends, evaluated like an epoch, and packaged only when it beats the best epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tensorfab.engine.context import RunContext
from tensorfab.engine.state import TrainState
from tensorfab.engine.train import train
from tensorfab.spec import JobSpec, load_spec


def _spec(tmp: Path, name: str, average: str = "train.average_last=2") -> JobSpec:
    return load_spec(
        None,
        [
            "train.device=cpu",
            "train.epochs=3",
            average,
            "train.lr=0.01",
            "data.batch_size=64",
            "data.limit_train=256",
            "data.limit_eval=200",
            f"output.runs_dir={tmp / 'runs'}",
            f"name={name}",
        ],
    )


class Killed(Exception):
    """Stands for a SIGKILL right after the checkpoint that ends epoch 2."""


def _kill_after_epoch_2(ctx: RunContext, state: TrainState) -> None:
    if state.epoch == 2 and state.batch_in_epoch == 0:
        raise Killed


def _ckpt(run: Path) -> dict:
    return torch.load(run / "checkpoints/last.pt", weights_only=True)


def _no_plots(monkeypatch: pytest.MonkeyPatch) -> list[list[dict]]:
    """Plots cost seconds and say nothing here; what the curves are given is kept."""
    curves: list[list[dict]] = []

    def plot_curves(history: list[dict], path: Path, **_: object) -> Path:
        curves.append(list(history))
        return path

    monkeypatch.setattr("tensorfab.engine.report.plot_curves", plot_curves)
    monkeypatch.setattr("tensorfab.engine.report.plot_confusion_matrix", lambda *a: a[-1])
    return curves


def test_average_survives_a_kill_between_epochs_and_picks_by_the_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    curves = _no_plots(monkeypatch)
    straight = train(_spec(tmp_path, "straight"), quiet=True)
    # the curves are per epoch: the average's record is not an epoch
    assert [h["epoch"] for h in curves[0]] == [1, 2, 3]
    with pytest.raises(Killed):
        train(_spec(tmp_path, "killed"), quiet=True, on_checkpoint=_kill_after_epoch_2)
    at_kill = _ckpt(tmp_path / "runs/killed")
    assert at_kill["average"]["epochs"] == [2]
    resumed = train(_spec(tmp_path, "killed"), resume=True, quiet=True)

    one, two = _ckpt(straight.run_dir), _ckpt(resumed.run_dir)
    assert one["average"]["epochs"] == two["average"]["epochs"] == [2, 3]
    for k, v in one["average"]["tensors"].items():
        assert torch.equal(v, two["average"]["tensors"][k]), k
        mean = (at_kill["model"][k].float() + two["model"][k].float()) / 2  # epochs 2 and 3
        torch.testing.assert_close(v, mean)
    assert _same_scores(resumed.report["history"], straight.report["history"])
    _check_selection(straight.report, straight.run_dir, one["average"]["tensors"])

    # averaging only reads the weights: the epochs are those of a run without it
    plain = train(_spec(tmp_path, "plain", "train.average_last=null"), quiet=True)
    assert _same_scores(plain.report["history"], straight.report["history"][:-1])
    assert all(torch.equal(v, _ckpt(plain.run_dir)["model"][k]) for k, v in one["model"].items())


def _same_scores(a: list[dict], b: list[dict]) -> bool:
    keys = ("eval_loss", "accuracy")
    return [[h[k] for k in keys] for h in a] == [[h[k] for k in keys] for h in b]


def _check_selection(report: dict, run: Path, average: dict[str, torch.Tensor]) -> None:
    record = report["history"][-1]
    assert record["averaged_epochs"] == [2, 3] and record["eval_time_s"] > 0
    epochs = report["history"][:-1]
    best = max(epochs, key=lambda h: h["accuracy"])
    info = report["averaging"]
    assert info["best_epoch"] == {"epoch": best["epoch"], "value": best["accuracy"]}
    assert info["value"] == record["accuracy"]
    assert info["cost"]["extra_memory_bytes"] == 4 * sum(t.numel() for t in average.values())
    weights = load_file(str(run / "model/weights.safetensors"))
    meta = json.loads((run / "model/tensorfab.json").read_text())
    packaged_average = all(torch.equal(weights[k], v) for k, v in average.items())
    if record["accuracy"] > best["accuracy"]:  # the epochs' rule: strictly better
        assert info["packaged"] == "average" and packaged_average
        assert meta["metrics"]["selection"]["averaged_epochs"] == [2, 3]
        assert meta["run"]["epoch"] == 3
        assert report["metrics"]["best"]["averaged_epochs"] == [2, 3]
    else:
        assert info["packaged"] == f"epoch {best['epoch']}" and not packaged_average
        assert meta["run"]["epoch"] == best["epoch"]
    md = (run / "report.md").read_text()
    assert "## Weight averaging" in md and f"| packaged | {info['packaged']} |" in md
