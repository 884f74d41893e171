"""``bench time-to-accuracy``: wall clock from process start to a valid entity F1 target.

minilm-l6 on CoNLL-2003, each side in a process of its own (so "from process start" counts
imports, data reading and tokenizing): tensorfab's engine (``setup`` + ``train_epoch``, the
example spec's settings) and the Hugging Face ``Trainer`` (the tutorial's set-up: fp32,
batch 16, lr 5e-5). Both evaluate the whole valid set ``evals_per_epoch`` times an epoch,
evaluation time counted, and stop at the first evaluation reaching ``target``. The parent
stamps the start with the system's monotonic clock, the child stamps each evaluation with
the same clock.

``side_by_side`` starts both sides at once, each pinned to its own CPU core with one
intra-op thread, so on a shared machine both meet the same load at the same time (the ratio
is what is compared; a side alone on an idle machine would be faster). ``tensorfab_sets``
are ``--set`` overrides of tensorfab's side only (its recipe is ours to choose; the
``Trainer``'s is the tutorial's and stays fixed).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tensorfab.errors import TensorfabError
from tensorfab.spec.load import apply_overrides

SIDES = ("tensorfab", "hf-trainer")


@dataclass(frozen=True)
class TtaPlan:
    data_dir: Path
    target: float = 0.90
    evals_per_epoch: int = 4
    max_epochs: int = 3
    limit_train: int | None = None  # a scaled run: the first N train sentences
    limit_eval: int | None = None  # ... and valid sentences (default: all of them)
    tensorfab_sets: tuple[str, ...] = ()  # --set overrides of tensorfab's side
    side_by_side: bool = False  # both sides at once, one core and one thread each


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
    if plan.side_by_side:
        train["threads"] = 1
    raw = {"task": "token-classification", "data": data, "model": model, "train": train,
           "output": output}  # fmt: skip
    return apply_overrides(raw, list(plan.tensorfab_sets))


def run_tensorfab(plan: TtaPlan) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train with the engine, evaluating the valid set at each cut; stop at the target.
    Also returns the runtime it chose (precision and why, threads): the result names them."""
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
                    return evals, ctx.runtime.describe()
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        return evals, ctx.runtime.describe()


def run_hf_trainer(plan: TtaPlan) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The Trainer side (``bench.baselines.hf_trainer_ner``)."""
    from tensorfab.bench.baselines import hf_trainer_ner

    why = hf_trainer_ner.missing()
    if why is not None:
        raise TensorfabError(f"--sides hf-trainer: {why}")
    return hf_trainer_ner.train_to_f1(plan, _stamp), dict(hf_trainer_ner.SETTINGS)


def _stamp(epoch: float, f1: float) -> dict[str, Any]:
    return {"epoch": epoch, "f1": f1, "monotonic_s": time.monotonic()}


def _plan_from_json(plan_json: str) -> TtaPlan:
    raw = json.loads(plan_json)
    raw.update(data_dir=Path(raw["data_dir"]), tensorfab_sets=tuple(raw["tensorfab_sets"]))
    return TtaPlan(**raw)


def _plan_json(plan: TtaPlan) -> str:
    return json.dumps({**asdict(plan), "data_dir": str(plan.data_dir)})


def child_main(side: str, plan_json: str) -> None:
    """What the child process runs: one side; its evaluations and runtime as JSON on stdout."""
    plan = _plan_from_json(plan_json)
    if plan.side_by_side:
        import torch

        torch.set_num_threads(1)
    evals, runtime = run_tensorfab(plan) if side == "tensorfab" else run_hf_trainer(plan)
    print(json.dumps({"evaluations": evals, "runtime": runtime}))


_CHILD = (
    "import sys; from tensorfab.bench.time_to_accuracy import child_main; child_main(*sys.argv[1:])"
)


def side_cores(sides: list[str], side_by_side: bool) -> dict[str, int | None]:
    """The core each side is pinned to: one each, in order, when side by side."""
    if not side_by_side:
        return dict.fromkeys(sides)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < len(sides):
        raise TensorfabError(
            f"--side-by-side needs a core per side: {len(sides)} sides, {len(cores)} cores"
        )
    return {side: cores[i] for i, side in enumerate(sides)}


def _start(side: str, plan: TtaPlan, core: int | None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if core is not None:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, side, _plan_json(plan)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=pin,
    )  # fmt: skip


def _finish(side: str, plan: TtaPlan, proc: subprocess.Popen[str], started: float) -> dict:
    out, err = proc.communicate()
    ended = time.monotonic()
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise TensorfabError(f"time-to-accuracy, side {side}: failed ({last})")
    told = json.loads(out.strip().splitlines()[-1])
    evals = told["evaluations"]
    for e in evals:
        e["wall_s"] = e.pop("monotonic_s") - started
    reached = next((e for e in evals if e["f1"] >= plan.target), None)
    return {
        "evaluations": evals,
        "runtime": told["runtime"],
        "reached": reached is not None,
        "time_to_target_s": reached["wall_s"] if reached else None,
        "process_wall_s": ended - started,
    }


def measure_sides(sides: list[str], plan: TtaPlan) -> dict[str, dict[str, Any]]:
    """Each side in a new process (in turn, or all at once pinned when side by side); wall
    clock from each process's start to each of its evaluations."""
    cores, found = side_cores(sides, plan.side_by_side), {}
    if plan.side_by_side:
        started = {s: time.monotonic() for s in sides}
        procs = {s: _start(s, plan, cores[s]) for s in sides}
        for s in sides:
            found[s] = {**_finish(s, plan, procs[s], started[s]), "core": cores[s]}
        return found
    for s in sides:
        began = time.monotonic()
        found[s] = _finish(s, plan, _start(s, plan, None), began)
    return found


def bench_time_to_accuracy(sides: list[str], plan: TtaPlan) -> dict[str, Any]:
    """The sides' times to target; the ratio is tensorfab's time over the Trainer's."""
    found = measure_sides(sides, plan)
    times = {s: r["time_to_target_s"] for s, r in found.items()}
    ours, theirs = times.get("tensorfab"), times.get("hf-trainer")
    return {
        "kind": "time-to-accuracy",
        "plan": json.loads(_plan_json(plan)),
        "sides": found,
        "tensorfab_over_hf_trainer_time": ours / theirs if ours and theirs else None,
    }
