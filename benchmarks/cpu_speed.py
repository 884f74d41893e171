"""Issue 18's CPU measurements, side by side in one run, into one JSON file.

    nice -n 10 .venv/bin/python benchmarks/cpu_speed.py --epochs 1 --lenet-train 6400 \
        --ner-steps 6 --ner-train 160

1. LeNet on MNIST (examples/mnist-lenet.yaml): ``precision: fp32`` then ``auto`` (bf16 where
   the peaks and the probe say so), samples/s ratio and test accuracy.
2. minilm NER on CoNLL-2003: ``tensorfab bench train --workloads minilm-ner`` (the tutorial
   loop, the Hugging Face Trainer and tensorfab on the same sentences, one thread each:
   two OpenMP threads on a loaded 2-core machine wait on each other): tokens/s ratios.
3. minilm NER, a short run on a train subset: ``precision: bf16`` vs ``fp32``, valid entity F1
   (both runs at once: their speed is not compared).
4. ``--parts lenet-steps``: LeNet's fp32 and bf16 steps alternating in one process (CPU time),
   and the forward + backward alone.

Run dirs go to a temporary folder; the result names commands and paths relative to the
repository. Ratios only: the machine is shared with other jobs (load averages recorded).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
MNIST = "../shared/data/mnist"
DATA = "../shared/data"


def _train(runs: Path, name: str, spec: str, sets: list[str]) -> dict:
    args = ["train", spec, "--name", name, "--quiet", "--set", f"output.runs_dir={runs}"]
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    subprocess.run([sys.executable, "-m", "tensorfab.cli.main", *args], cwd=REPO, check=True)
    report = json.loads((runs / name / "report.json").read_text())
    return {
        "command": "tensorfab " + " ".join(args[:5] + args[7:]),  # without the runs dir
        "wall_s": time.perf_counter() - t0,
        "load_average_1m_before": load,
        "precision": report["hardware"]["precision"],
        "precision_choice": report["hardware"].get("precision_choice"),
        "threads": report["hardware"].get("threads"),
        "train_samples_per_s": report["throughput"]["train_samples_per_s"],
        "mfu": report["throughput"]["mfu"],
        "peak_tflops": report["throughput"]["peak_tflops"],
        "test": {k: v for k, v in report["metrics"]["test"].items() if isinstance(v, float)},
        "history": report["history"],
    }


def lenet(runs: Path, epochs: int, limit: int | None, repeats: int) -> dict:
    """fp32 and auto in turn, ``repeats`` pairs, so that a change of the machine's load
    hits both sides; the ratio is the median of the pairs'."""
    sets = [f"data.path={MNIST}", f"train.epochs={epochs}", "train.device=cpu"]
    if limit:
        sets += [f"data.limit_train={limit}", "data.limit_test=2000"]
    spec = "examples/mnist-lenet.yaml"
    pairs = []
    for i in range(repeats):
        fp32 = _train(runs, f"lenet-fp32-{i}", spec, [*sets, "train.precision=fp32"])
        auto = _train(runs, f"lenet-auto-{i}", spec, [*sets, "train.precision=auto"])
        ratio = auto["train_samples_per_s"] / fp32["train_samples_per_s"]
        pairs.append({"fp32": fp32, "auto": auto, "auto_vs_fp32_samples_per_s": ratio})
    ratios = sorted(p["auto_vs_fp32_samples_per_s"] for p in pairs)
    return {"pairs": pairs, "median_auto_vs_fp32_samples_per_s": ratios[len(ratios) // 2]}


def _cpu_ms(fn: Callable[[], None], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e3


def lenet_steps(rounds: int, block: int = 10) -> dict:
    """fp32 and bf16 in one process, alternating blocks of ``block`` steps: the loop's step
    (``train_step``: forward, loss, backward, fused Adam, zero_grad, schedule) and the
    forward + backward alone (what ``precision: auto`` probes); CPU ms per step, the median
    of ``rounds`` blocks after two. What the step adds to the forward + backward is shared
    by both precisions and takes the step's ratio below the probe's."""
    from tensorfab.engine.fit import train_step
    from tensorfab.engine.train import setup
    from tensorfab.spec import load_spec

    with tempfile.TemporaryDirectory(prefix="tensorfab-lenet-steps-") as tmp:
        sets = [f"data.path={REPO.parent / 'shared/data/mnist'}", "train.device=cpu"]
        sets += ["train.precision=fp32", f"output.runs_dir={tmp}", "data.limit_train=6400"]
        ctx = setup(load_spec(REPO / "examples/mnist-lenet.yaml", sets), quiet=True)
        batches = itertools.cycle(list(ctx.train.epoch(0)))

        def step() -> None:
            train_step(ctx, next(batches))

        def forward_backward() -> None:
            batch = next(batches)
            with ctx.runtime.autocast():
                logits = ctx.task.logits(ctx.model, batch)
            ctx.task.loss(logits, batch).backward()
            ctx.model.zero_grad(set_to_none=True)

        ms: dict[str, list[float]] = {}
        load = os.getloadavg()[0]
        for i in range(rounds + 2):
            for precision in ("fp32", "bf16"):
                ctx.runtime.precision = precision
                for kind, fn in (("step", step), ("forward_backward", forward_backward)):
                    t = _cpu_ms(fn, block)
                    if i >= 2:
                        ms.setdefault(f"{precision}_{kind}_ms", []).append(t)
    med = {k: statistics.median(v) for k, v in ms.items()}
    return {
        "threads": torch.get_num_threads(),
        "rounds": rounds,
        "block": block,
        "load_average_1m": [load, os.getloadavg()[0]],
        **med,
        "step_ratio": med["fp32_step_ms"] / med["bf16_step_ms"],
        "forward_backward_ratio": med["fp32_forward_backward_ms"] / med["bf16_forward_backward_ms"],
    }


def ner_bench(out: Path, steps: int) -> dict:
    args = ["bench", "train", "--device", "cpu", "--workloads", "minilm-ner", "--data-dir", DATA]
    args += ["--steps", str(steps), "--warmup", "1", "--threads", "1", "--out", str(out)]
    args += ["--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "tensorfab.cli.main", *args],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(proc.stdout)
    row = result["results"][0]
    keep = ("precision", "samples_per_s", "tokens_per_s", "mfu", "step_time_ms", "settings")
    return {
        "command": "tensorfab " + " ".join(a for a in args if a not in ("--out", str(out))),
        "sides": {
            s: {k: row[s].get(k) for k in keep} for s in ("baseline", "hf_trainer", "tensorfab")
        },
        "tensorfab_vs_hf_trainer": row.get("tensorfab_vs_hf_trainer"),
        "tensorfab_vs_tutorial_loop_tokens": row["tokens_ratio"],
        "environment": {k: result["environment"].get(k) for k in ("device_name", "torch_threads")},
    }


def ner_precision(runs: Path, train_limit: int) -> dict:
    sets = [
        f"data.limit_train={train_limit}",
        "data.limit_eval=200",
        "data.limit_test=50",
        "train.epochs=1",
        "train.device=cpu",
        "train.warmup_steps=10",
    ]
    spec = "examples/conll2003-minilm.yaml"
    # at once: F1 does not depend on the load, and the two finish in the time of one
    with ThreadPoolExecutor(2) as pool:
        runs_of = {
            p: pool.submit(_train, runs, f"ner-{p}", spec, [*sets, f"train.precision={p}"])
            for p in ("fp32", "bf16")
        }
        fp32, bf16 = runs_of["fp32"].result(), runs_of["bf16"].result()
    f1 = {p: r["history"][-1]["f1"] for p, r in (("fp32", fp32), ("bf16", bf16))}
    return {"fp32": fp32, "bf16": bf16, "valid_f1": f1, "f1_delta": f1["bf16"] - f1["fp32"]}


def _relative(text: str) -> str:
    """Paths relative to the repository: ../shared wherever the data's real path shows."""
    shared = REPO.parent / "shared"
    for absolute in {str(shared.resolve()), str(shared)}:
        text = text.replace(absolute, "../shared")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="LeNet epochs (default 10)")
    parser.add_argument("--lenet-train", type=int, help="LeNet: first N train images (all)")
    parser.add_argument("--lenet-repeats", type=int, default=1, help="fp32/auto pairs")
    parser.add_argument("--step-rounds", type=int, default=12, help="lenet-steps blocks")
    parser.add_argument("--ner-steps", type=int, default=40, help="bench timed steps")
    parser.add_argument("--ner-train", type=int, default=2000, help="NER F1 run: train sentences")
    parser.add_argument("--parts", default="lenet,bench,ner", help="which parts, in order")
    parser.add_argument("--out", default="benchmarks/results/cpu-2026-11-30-cpu-speed.json")
    args = parser.parse_args()
    result: dict = {"date": "2026-11-30", "script": "benchmarks/cpu_speed.py", "args": vars(args)}
    out = REPO / args.out
    if out.is_file():  # parts run at other times are kept; a part run again is replaced
        result = {**json.loads(out.read_text()), "args_" + args.parts: vars(args)}
    with tempfile.TemporaryDirectory(prefix="tensorfab-cpu-speed-") as tmp:
        runs = Path(tmp)
        for part in args.parts.split(","):
            if part == "lenet":
                result["lenet_mnist"] = lenet(
                    runs, args.epochs, args.lenet_train, args.lenet_repeats
                )
            elif part == "lenet-steps":
                result["lenet_steps_one_process"] = lenet_steps(args.step_rounds)
            elif part == "bench":
                result["minilm_ner_bench"] = ner_bench(runs / "bench.json", args.ner_steps)
            elif part == "ner":
                result["minilm_ner_bf16_vs_fp32"] = ner_precision(runs, args.ner_train)
            out.write_text(_relative(json.dumps(result, indent=2)) + "\n")  # kept as each ends


if __name__ == "__main__":
    main()
