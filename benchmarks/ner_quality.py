"""NER quality (issue 20): train minilm-l6 on CoNLL-2003 with and without the issue's
switches (document context, CRF head, layer-wise LR decay) and write their valid scores
side by side: micro F1, F1 per type, and the error counts of the run report.

    .venv/bin/python benchmarks/ner_quality.py --runs-dir runs/ner-quality \\
        --set data.limit_train=1000 --set data.limit_eval=1000 --set data.limit_test=1000 \\
        --set train.epochs=2 --set train.warmup_steps=20 --set train.log_every_steps=10 \\
        --configs baseline --out benchmarks/results/cpu-2026-11-30-ner-quality-baseline.json

Each configuration is one ``tensorfab train`` of examples/conll2003-minilm.yaml (valid only;
CoNLL-2003's test split is never read). A finished run is not retrained: its report is read.
``average-k`` (``train.average_last=k``) needs no run without it beside it: averaging only
reads the weights, so its epochs are the baseline's (a test asserts it on digits), and its
report holds the best epoch's F1, the average's, and the seconds the average cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from tensorfab.files import atomic_path

SPEC = "examples/conll2003-minilm.yaml"
CONFIGS = {
    "baseline": [],
    "crf-lld": ["model.head=crf", "train.layer_lr_decay=0.9"],
    "context": ["data.context=true", "data.max_length=64"],
    "context-crf-lld-lr3e-4": [
        "data.context=true",
        "data.max_length=64",
        "model.head=crf",
        "train.layer_lr_decay=0.9",
        "train.lr=3e-4",
    ],
    "context-crf-lld": [
        "data.context=true",
        "data.max_length=64",
        "model.head=crf",
        "train.layer_lr_decay=0.9",
    ],
    # the same with another seed: how much one seed tells, and a seed ensemble's second member
    "context-crf-lld-seed1": [
        "data.context=true",
        "data.max_length=64",
        "model.head=crf",
        "train.layer_lr_decay=0.9",
        "seed=1",
    ],
    # FLERT's wider context (128 tokens in all), with the last two epochs averaged
    "context128-crf-lld-avg2": [
        "data.context=true",
        "data.max_length=128",
        "model.head=crf",
        "train.layer_lr_decay=0.9",
        "train.average_last=2",
    ],
    # checkpoint averaging: the weights of the last k epochs' ends, packaged if they beat
    # the best epoch (the baseline's epochs are the same run's up to the average)
    "average-2": ["train.average_last=2"],
    "average-3": ["train.average_last=3"],
}


def train(name: str, extra: list[str], sets: list[str], runs_dir: str, read_only: bool) -> dict:
    """Run one configuration (unless its report exists, or ``read_only``) and summarise it."""
    run = Path(runs_dir) / name
    args = [f"output.runs_dir={runs_dir}", *sets, *extra]
    command = ["tensorfab", "train", SPEC, "--name", name, *(x for a in args for x in ("--set", a))]
    started = time.perf_counter()
    if not read_only and not (run / "report.json").is_file():
        cli = str(Path(sys.executable).parent / "tensorfab")  # the venv's entry point
        subprocess.run([cli, *command[1:]], check=True)
    row = {"command": " ".join(command), "wall_s": round(time.perf_counter() - started, 1)}
    return {**row, **summary(run)}


def summary(run: Path) -> dict:
    """The finished run's valid scores, or the evaluations it logged so far (unfinished)."""
    if not (run / "report.json").is_file():
        log = run / "metrics.jsonl"
        lines = log.read_text().splitlines() if log.is_file() else []
        records = [json.loads(line) for line in lines if line.strip()]
        evals = [r for r in records if r.get("kind") == "eval"]
        steps = max((r.get("step", 0) for r in records), default=0)
        return {"finished": False, "steps_done": steps, "evaluations": evals}
    report = json.loads((run / "report.json").read_text())
    scores = report["metrics"]["test"]  # the eval split again (no test_path): CoNLL valid
    return {
        "finished": True,
        "valid_entity_f1": scores["f1"],
        "per_type_f1": {t: r["f1"] for t, r in scores["entity"]["per_type"].items()},
        "errors": scores.get("errors", {}).get("per_type"),
        "train_s": report.get("timings", {}).get("train_s"),
        "history": [
            {k: h[k] for k in ("epoch", "averaged_epochs", "f1", "train_loss") if k in h}
            for h in report["history"]
        ],
        **({"averaging": report["averaging"]} if "averaging" in report else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default="runs/ner-quality")
    parser.add_argument("--set", action="append", default=[], help="applied to every run")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"of {list(CONFIGS)}")
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--read-only", action="store_true", help="train nothing: summarise the runs as they are"
    )
    args = parser.parse_args()
    names = args.configs.split(",")
    rows = {n: train(n, CONFIGS[n], args.set, args.runs_dir, args.read_only) for n in names}
    result = {
        "what": "minilm-l6 NER on CoNLL-2003 valid: baseline vs the issue-20 switches",
        "date": time.strftime("%Y-%m-%d"),
        "device": "2-core AMD EPYC CPU, shared with other jobs",
        "common_overrides": args.set,
        "runs": rows,
    }
    with atomic_path(Path(args.out)) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
