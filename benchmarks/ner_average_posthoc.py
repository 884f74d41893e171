"""Would ``train.average_last: 2`` have paid on a finished run? Average its package (the
best epoch) with its last checkpoint (the last epoch) by the engine's own ``WeightAverage``
and score both on the run's eval split, the same way (fp32), side by side.

    .venv/bin/python benchmarks/ner_average_posthoc.py runs/ner-quality/context-crf-lld \\
        --out benchmarks/results/cpu-2026-11-30-ner-average-posthoc.json

Meaningful when the best epoch is the one before the last (then the pair is what
``average_last: 2`` averages); the script says which epochs it averaged.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tensorfab.engine.averaging import WeightAverage
from tensorfab.engine.evaluate import evaluate_batches
from tensorfab.engine.runtime import create_runtime
from tensorfab.files import atomic_path
from tensorfab.package import load_package
from tensorfab.tasks.eval_data import load_eval_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    run, runtime = Path(args.run), create_runtime("cpu", "fp32")
    pkg = load_package(run, runtime.device)
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    best_epoch, last_epoch = pkg.meta["run"]["epoch"], last["state"]["epoch"]
    data, source = load_eval_split(pkg.meta, None)
    scores = {}

    def score(name: str) -> None:
        t0 = time.perf_counter()
        batches = pkg.task.eval_batches(data, 64, runtime.device)
        result = evaluate_batches(pkg.model, pkg.task, batches.epoch(0), runtime)
        scores[name] = {"f1": result.scores["f1"], "seconds": time.perf_counter() - t0}

    score(f"epoch {best_epoch} (the package)")
    average = WeightAverage((best_epoch, last_epoch))
    average.update(pkg.model, best_epoch)
    pkg.model.load_state_dict(last["model"])
    score(f"epoch {last_epoch} (the last checkpoint)")
    average.update(pkg.model, last_epoch)
    average.load_into(pkg.model)
    score(f"average of epochs {best_epoch}-{last_epoch}")
    result = {"run": str(run), "data": source, "precision": "fp32", "scores": scores}
    with atomic_path(Path(args.out)) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
