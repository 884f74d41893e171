"""``train.average_last``: the model's weights averaged over the ends of the last k epochs.

A uniform running average (torch's SWA update, ``swa_utils.get_swa_multi_avg_fn``) of the
parameters and floating buffers, one fp32 copy beside the model. It lives in
``checkpoints/last.pt``, so a resumed run averages exactly what an uninterrupted one does.
At the end of training the average is evaluated like an epoch and becomes the package only
if it beats the best epoch by the same rule (``TrainState.improved``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import get_swa_multi_avg_fn

from tensorfab.engine.context import RunContext
from tensorfab.engine.evaluate import evaluate_batches
from tensorfab.engine.fit import metric_value, phase, save_best
from tensorfab.engine.state import TrainState

_SWA_UPDATE = get_swa_multi_avg_fn()


def averaged_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What is averaged: the state dict's floating tensors (parameters, BatchNorm's running
    statistics); integer buffers (a batch count, token positions) stay the model's own."""
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


@dataclass
class WeightAverage:
    """The running mean of the weights at the ends of epochs ``window[0]..window[1]``."""

    window: tuple[int, int]  # 1-based, inclusive: the last k epochs of train.epochs
    epochs: list[int] = field(default_factory=list)  # the epochs averaged so far
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # fp32, on the device
    seconds: float = 0.0  # spent updating the average

    def wants(self, epoch: int) -> bool:
        return self.window[0] <= epoch <= self.window[1] and epoch not in self.epochs

    @torch.no_grad()
    def update(self, model: nn.Module, epoch: int) -> None:
        """Fold the model's weights at the end of ``epoch`` (1-based) into the average."""
        t0 = time.perf_counter()
        current = averaged_tensors(model)
        if not self.epochs:
            self.tensors = {k: v.detach().float().clone() for k, v in current.items()}
        else:
            now = [current[k].float() for k in self.tensors]
            _SWA_UPDATE(list(self.tensors.values()), now, len(self.epochs))
        self.epochs.append(epoch)
        self.seconds += time.perf_counter() - t0

    @torch.no_grad()
    def load_into(self, model: nn.Module) -> None:
        """Overwrite the model's averaged tensors with the average (in place)."""
        for k, v in averaged_tensors(model).items():
            v.copy_(self.tensors[k])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def state_dict(self) -> dict[str, Any]:
        return {
            "window": list(self.window),
            "epochs": list(self.epochs),
            "tensors": self.tensors,
            "seconds": self.seconds,
        }

    def load_state_dict(self, saved: dict[str, Any], device: torch.device) -> bool:
        """Take a checkpoint's average; False (nothing taken) when it averaged another
        window, as after ``--resume --set train.epochs=<more>``: it restarts then."""
        if tuple(saved["window"]) != self.window:
            return False
        self.epochs = list(saved["epochs"])
        self.tensors = {k: v.to(device) for k, v in saved["tensors"].items()}
        self.seconds = float(saved["seconds"])
        return True


def create_average(average_last: int | None, epochs: int) -> WeightAverage | None:
    """The run's average, None without ``train.average_last``."""
    if average_last is None:
        return None
    return WeightAverage((epochs - average_last + 1, epochs))


def span(epochs: list[int]) -> str:
    """``3-4`` for the epochs averaged (consecutive by construction)."""
    return f"{epochs[0]}-{epochs[-1]}" if epochs else "none"


def evaluate_average(ctx: RunContext, state: TrainState) -> None:
    """Score the average on the eval split like an epoch; package it if it beats the best
    epoch. Its record joins the history; ``ctx.info["averaging"]`` tells the report."""
    avg = ctx.average
    if avg is None:
        return
    if len(avg.epochs) < 2:
        ctx.info["averaging"] = _skipped(avg, state)
        ctx.progress.log(f"warning: {ctx.info['averaging']['skipped']}")
        return
    t0 = time.perf_counter()
    avg.load_into(ctx.model)  # the last epoch's weights are in last.pt already
    loaded_s = time.perf_counter() - t0
    record = _average_record(ctx, state, avg)
    spec = ctx.spec.train
    value = metric_value(record, spec.metric)
    best = {"epoch": state.best_epoch, "value": state.best_value}
    packaged = state.improved(value, spec.metric_mode, spec.early_stopping.min_delta)
    if packaged:
        # the package's run record names the last epoch; its selection record, the span
        save_best(ctx, record, {"epoch": avg.epochs[-1], "step": record["step"]})
    ctx.info["averaging"] = {
        "epochs": avg.epochs,
        "metric": spec.metric,
        "value": value,
        "best_epoch": best,
        "packaged": "average" if packaged else f"epoch {best['epoch']}",
        "cost": {
            "extra_memory_bytes": avg.nbytes(),
            "average_s": avg.seconds + loaded_s,
            "eval_s": record["eval_time_s"],
        },
    }
    ctx.progress.log(_line(ctx.info["averaging"]))


def _average_record(ctx: RunContext, state: TrainState, avg: WeightAverage) -> dict[str, Any]:
    t0 = time.perf_counter()
    label = f"evaluating the average of epochs {span(avg.epochs)} on the"
    result = evaluate_batches(
        ctx.model, ctx.task, ctx.eval.epoch(0), ctx.runtime, phase(ctx, label, "eval")
    )
    scores = result.scores
    record: dict[str, Any] = {
        "averaged_epochs": list(avg.epochs),
        "step": state.global_step,
        "eval_loss": scores["loss"],
        **{k: v for k, v in scores.items() if isinstance(v, float) and k != "loss"},
        "eval_time_s": time.perf_counter() - t0,
    }
    state.history.append(record)
    ctx.log.append({"kind": "average", **record})
    return record


def _skipped(avg: WeightAverage, state: TrainState) -> dict[str, Any]:
    a, b = avg.window
    why = (
        f"train.average_last: training ended at epoch {state.epoch} with "
        f"{len(avg.epochs)} of epochs {a}-{b} in the average (early stopping or "
        "train.max_steps); an average needs two, so the best epoch is the package"
    )
    return {"epochs": avg.epochs, "skipped": why}


def _line(info: dict[str, Any]) -> str:
    best, cost = info["best_epoch"], info["cost"]
    return (
        f"average of epochs {span(info['epochs'])}: {info['metric']} {info['value']:.4f} "
        f"(best epoch {best['epoch']}: {best['value']:.4f}); packaged: {info['packaged']}; "
        f"cost {cost['extra_memory_bytes'] / 2**20:.1f} MiB, "
        f"{cost['average_s'] + cost['eval_s']:.1f} s"
    )
