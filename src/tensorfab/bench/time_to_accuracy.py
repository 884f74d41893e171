"""``bench time-to-accuracy``: wall clock from process start to a valid entity F1 target.

minilm-l6 on CoNLL-2003, each side in a process of its own (so "from process start" counts
imports, data reading and tokenizing): tensorfab's engine (``setup`` + ``train_epoch``, the
example spec's settings) and the Hugging Face ``Trainer`` (the tutorial's set-up: fp32,
batch 16, lr 5e-5). Both evaluate the whole valid set ``evals_per_epoch`` times an epoch,
evaluation time counted, and stop at the first evaluation reaching ``target``. The parent
stamps the start with the system's monotonic clock, the child stamps each evaluation with
the same clock.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tensorfab.errors import TensorfabError

SIDES = ("tensorfab", "hf-trainer")


@dataclass(frozen=True)
class TtaPlan:
    data_dir: Path
    target: float = 0.90
    evals_per_epoch: int = 4
    max_epochs: int = 3
    limit_train: int | None = None  # a scaled run: the first N train sentences
    limit_eval: int | None = None  # ... and valid sentences (default: all of them)


def eval_cuts(batches: int, evals_per_epoch: int) -> list[int]:
    """Batch counts after which an epoch of ``batches`` is evaluated (the last is the end)."""
    cuts = [math.ceil(batches * (k + 1) / evals_per_epoch) for k in range(evals_per_epoch)]
    return sorted(set(cuts))


class _Upto:
    """An engine batch source that ends each epoch at batch ``end`` (train_epoch resumes
    from ``state.batch_in_epoch``, so consecutive ends train the epoch in parts)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.end = inner, len(inner)

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def epoch(self, epoch: int, start_batch: int = 0) -> Any:
        return itertools.islice(self.inner.epoch(epoch, start_batch), self.end - start_batch)


def _engine_spec(plan: TtaPlan, runs_dir: str) -> dict[str, Any]:
    folder = plan.data_dir / "conll2003"
    data = {"format": "conll", "path": str(folder / "train.txt")}
    data.update(eval_path=str(folder / "valid.txt"), batch_size=16, length_bucketing=True)
    data.update(limit_train=plan.limit_train, limit_eval=plan.limit_eval, limit_test=8)
    train = {"epochs": plan.max_epochs, "optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.01}
    train.update(scheduler="linear", warmup_steps=200, clip_grad_norm=1.0, metric="f1")
    output = {"runs_dir": runs_dir, "name": "tta"}
    model = {"name": "minilm-l6"}
    return {"task": "token-classification", "data": data, "model": model, "train": train,
            "output": output}  # fmt: skip


def run_tensorfab(plan: TtaPlan) -> list[dict[str, Any]]:
    """Train with the engine, evaluating the valid set at each cut; stop at the target."""
    import tempfile

    from tensorfab.engine.evaluate import evaluate_batches
    from tensorfab.engine.fit import train_epoch
    from tensorfab.engine.signals import StopFlag
    from tensorfab.engine.state import TrainState
    from tensorfab.engine.train import setup
    from tensorfab.spec import parse_spec

    with tempfile.TemporaryDirectory(prefix="tensorfab-tta-") as tmp:
        ctx = setup(parse_spec(_engine_spec(plan, tmp)), quiet=True)
        upto = _Upto(ctx.train)
        ctx.train = upto
        state, stop, evals = TrainState(), StopFlag(), []
        for epoch in range(plan.max_epochs):
            for cut in eval_cuts(len(upto), plan.evals_per_epoch):
                upto.end = cut
                train_epoch(ctx, state, stop)
                scores = evaluate_batches(ctx.model, ctx.task, ctx.eval.epoch(0), ctx.runtime)
                evals.append(_stamp(epoch + cut / len(upto), scores.scores["f1"]))
                if evals[-1]["f1"] >= plan.target:
                    return evals
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    return evals


def run_hf_trainer(plan: TtaPlan) -> list[dict[str, Any]]:
    """The Trainer side (``bench.baselines.hf_trainer_ner``)."""
    from tensorfab.bench.baselines import hf_trainer_ner

    why = hf_trainer_ner.missing()
    if why is not None:
        raise TensorfabError(f"--sides hf-trainer: {why}")
    return hf_trainer_ner.train_to_f1(plan, _stamp)


def _stamp(epoch: float, f1: float) -> dict[str, Any]:
    return {"epoch": epoch, "f1": f1, "monotonic_s": time.monotonic()}


def child_main(side: str, plan_json: str) -> None:
    """What the child process runs: one side, its evaluations as JSON on stdout."""
    raw = json.loads(plan_json)
    plan = TtaPlan(**{**raw, "data_dir": Path(raw["data_dir"])})
    evals = run_tensorfab(plan) if side == "tensorfab" else run_hf_trainer(plan)
    print(json.dumps(evals))


def measure_side(side: str, plan: TtaPlan) -> dict[str, Any]:
    """Start one side in a new process; wall clock from its start to each evaluation."""
    plan_json = json.dumps({**asdict(plan), "data_dir": str(plan.data_dir)})
    code = (
        "import sys; from tensorfab.bench.time_to_accuracy import child_main; "
        "child_main(*sys.argv[1:])"
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code, side, plan_json], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise TensorfabError(f"time-to-accuracy, side {side}: failed ({last})")
    evals = json.loads(proc.stdout.strip().splitlines()[-1])
    for e in evals:
        e["wall_s"] = e.pop("monotonic_s") - started
    reached = next((e for e in evals if e["f1"] >= plan.target), None)
    return {
        "evaluations": evals,
        "reached": reached is not None,
        "time_to_target_s": reached["wall_s"] if reached else None,
        "process_wall_s": time.monotonic() - started,
    }


def bench_time_to_accuracy(sides: list[str], plan: TtaPlan) -> dict[str, Any]:
    """Each side in turn; the ratio is tensorfab's time over the Trainer's."""
    found = {side: measure_side(side, plan) for side in sides}
    times = {s: r["time_to_target_s"] for s, r in found.items()}
    ours, theirs = times.get("tensorfab"), times.get("hf-trainer")
    return {
        "kind": "time-to-accuracy",
        "plan": {**asdict(plan), "data_dir": str(plan.data_dir)},
        "sides": found,
        "tensorfab_over_hf_trainer_time": ours / theirs if ours and theirs else None,
    }
