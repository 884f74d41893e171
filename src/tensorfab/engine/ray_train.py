"""``tensorfab train SPEC --ray ADDR --workers N``: the engine under Ray Train's TorchTrainer.

Ray Train starts N workers (placed by Ray, across nodes), sets up their process group
(gloo on CPUs, NCCL on GPUs) and calls :func:`worker_loop` in each. The loop is not a
second training loop: each worker calls :func:`tensorfab.engine.train.train`, which sees the
process group already made (``engine/distributed.py`` reads RANK/WORLD_SIZE/LOCAL_RANK, set
here from Ray's context) and runs DDP exactly as under torchrun.

Checkpoints: after each of the engine's checkpoints (``train.checkpoint_every_steps`` and
every epoch) every worker calls ``ray.train.report``, rank 0 with a copy of ``last.pt``, so
Ray Train keeps it in its storage. When a worker is lost, Ray Train restarts the worker
group (``--max-failures``) and each new worker gets that checkpoint from
``ray.train.get_checkpoint()``: rank 0 writes it back as the run's ``last.pt`` and all
resume from it, so the first step trained afterwards is the checkpointed step + 1 and the
run continues the same epoch order. The run directory and Ray Train's storage must be on
a path every node sees (``output.runs_dir`` on a shared filesystem; on one machine any path).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tensorfab.engine.checkpoint import load_checkpoint
from tensorfab.engine.context import RunContext
from tensorfab.engine.raycluster import connect, import_ray
from tensorfab.engine.rundir import MetricsLog, RunDir, check_run_dir, run_path
from tensorfab.engine.state import TrainState
from tensorfab.errors import TensorfabError
from tensorfab.files import atomic_path
from tensorfab.spec import JobSpec

CHECKPOINT_FILE = "last.pt"


def _absolute(spec: JobSpec) -> JobSpec:
    """Paths the workers can open from any working directory."""
    output = spec.output.model_copy(update={"runs_dir": str(Path(spec.output.runs_dir).resolve())})
    data = spec.data
    if data.path:
        data = data.model_copy(update={"path": str(Path(data.path).resolve())})
    return spec.model_copy(update={"output": output, "data": data})


def _report(ctx: RunContext, state: TrainState) -> None:
    """Every rank reports the checkpoint just written; rank 0 hands Ray a copy of it."""
    import ray.train

    metrics = {"step": state.global_step, "epoch": state.epoch}
    if not ctx.env.is_main:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="tensorfab-ckpt-") as folder:
        with atomic_path(Path(folder) / CHECKPOINT_FILE) as tmp:
            shutil.copyfile(ctx.run.checkpoint, tmp)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _set_rank_environment() -> int:
    """RANK/WORLD_SIZE/LOCAL_RANK from Ray's context, as torchrun would set them."""
    import ray.train

    context = ray.train.get_context()
    rank = context.get_world_rank()
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(context.get_world_size()),
        LOCAL_RANK=str(context.get_local_rank()),
    )
    return rank


def _prepare_run_dir(spec: JobSpec, resume: bool, rank: int) -> bool:
    """Put Ray Train's checkpoint (if any) in place; returns whether to resume.

    A worker group started again after a loss resumes from the checkpoint Ray kept; one
    started again before any checkpoint was reported starts afresh (the driver checked
    that the run directory did not exist before the first start, so what is there now is
    the failed attempt's).
    """
    import ray.train
    import torch.distributed as dist

    restored = ray.train.get_checkpoint()
    run = run_path(spec)
    if rank == 0 and restored is not None:
        _restore(restored, run)
    elif rank == 0 and not resume and run.exists():
        shutil.rmtree(run)
    if dist.is_initialized():
        dist.barrier()  # the others read the run directory only once it is in place
    return resume or restored is not None


def _restore(restored: Any, run: Path) -> None:
    """Ray Train's checkpoint becomes the run's ``last.pt``; the metrics log says so.

    The ``resume`` record carries the checkpoint's step, so the log shows where the
    restarted workers took over (the records after it start at that step + 1).
    """
    target = RunDir(run)
    with restored.as_directory() as folder, atomic_path(target.checkpoint) as tmp:
        shutil.copyfile(Path(folder) / CHECKPOINT_FILE, tmp)
    step = TrainState.from_dict(load_checkpoint(target.checkpoint)["state"]).global_step
    MetricsLog(target.metrics_file).append(
        {"kind": "resume", "step": step, "source": "ray-train checkpoint"}
    )


def worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: tensorfab's ``train`` with the checkpoint report hook."""
    from tensorfab.engine.train import train

    rank = _set_rank_environment()
    spec = JobSpec.model_validate(config["spec"])
    resume = _prepare_run_dir(spec, bool(config["resume"]), rank)
    train(spec, resume=resume, quiet=True, on_checkpoint=_report)


def train_on_ray(
    spec: JobSpec, address: str, workers: int, *, resume: bool = False, max_failures: int = 3
) -> dict[str, Any]:
    """Run ``spec`` on ``workers`` Ray Train workers; returns the run's report."""
    import_ray()  # without Ray: the line that says how to install it, first
    if workers < 1:
        raise TensorfabError(f"--workers {workers}: need at least 1")
    spec = _absolute(spec)
    check_run_dir(spec, resume=resume)  # bad input ends here, before Ray starts anything
    connect(address)
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = spec.train.device in ("cuda", "auto") and _cluster_gpus() >= workers
    run = run_path(spec)
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"spec": spec.model_dump(mode="json"), "resume": resume},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=f"{run.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(run.parent / ".ray-train"),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
    try:
        trainer.fit()
    except Exception as exc:  # Ray Train's TrainingFailedError wraps the worker's error
        raise TensorfabError(f"Ray Train run {run} failed: {_first_line(exc)}") from None
    return json.loads((run / "report.json").read_text(encoding="utf-8"))


def _cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "TensorfabError:" in line:
            return line.split("TensorfabError:", 1)[1].strip()
    return (text.splitlines() or [type(exc).__name__])[0]
