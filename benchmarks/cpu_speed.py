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

Run dirs go to a temporary folder; the result names commands and paths relative to the
repository. Ratios only: the machine is shared with other jobs (load averages recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
            elif part == "bench":
                result["minilm_ner_bench"] = ner_bench(runs / "bench.json", args.ner_steps)
            elif part == "ner":
                result["minilm_ner_bf16_vs_fp32"] = ner_precision(runs, args.ner_train)
            out.write_text(_relative(json.dumps(result, indent=2)) + "\n")  # kept as each ends


if __name__ == "__main__":
    main()
