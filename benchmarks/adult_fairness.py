"""Adult fairness post-processing, measured: one trained package (examples/adult-mlp-fair.yaml),
its rule refitted on the validation part the run used (the same stratified split) for several
demographic-parity ``cut`` values and for equalized odds, each scored on the validation part
and on adult.test. The rules are fitted on validation only; adult.test only measures.

Run: python benchmarks/adult_fairness.py runs/adult-mlp-fair [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tensorfab.data.splits import stratified_split
from tensorfab.data.tabular import read_table
from tensorfab.files import atomic_path
from tensorfab.package import load_package
from tensorfab.tasks.prediction import softmax
from tensorfab.tasks.tabular_fairness import fit_thresholds

ADULT = "../shared/data/adult"
CUTS = (0.7, 0.8, 0.9, 1.0)


def _measure(task: Any, logits: torch.Tensor, data: Any, rule: dict | None, column: str) -> dict:
    """Accuracy, selection rate / TPR / FPR per group, DP and EO differences."""
    decided = dataclasses.replace(task, fairness=rule).decide(logits, data.codes)
    positive = len(task.classes) - 1
    y, chosen = data.labels.numpy(), decided == positive
    groups = np.array(task.groups(data.codes, column))
    by: dict[str, dict[str, float]] = {}
    for g in sorted(set(groups)):
        m = groups == g
        by[g] = {
            "rows": int(m.sum()),
            "selection_rate": float(chosen[m].mean()),
            "tpr": float(chosen[m & (y == positive)].mean()),
            "fpr": float(chosen[m & (y != positive)].mean()),
        }

    def spread(key: str) -> float:
        values = [v[key] for v in by.values()]
        return max(values) - min(values)

    return {
        "accuracy": float((decided == y).mean()),
        "dp_difference": spread("selection_rate"),
        "eo_difference": max(spread("tpr"), spread("fpr")),
        "groups": by,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run of examples/adult-mlp-fair.yaml (or adult-mlp.yaml)")
    parser.add_argument("--train", default=f"{ADULT}/adult.data")
    parser.add_argument("--test", default=f"{ADULT}/adult.test")
    parser.add_argument("--sensitive", default="sex")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    pkg = load_package(args.run)
    task = pkg.task
    train = task.encode_table(read_table(args.train))
    _, held = stratified_split(train.labels, args.val_fraction, args.split_seed)
    parts = {"validation": train.subset(held), "test": task.encode_table(read_table(args.test))}
    with torch.no_grad():
        logits = {k: task.logits(pkg.model, (d.numeric, d.codes)) for k, d in parts.items()}
    val = parts["validation"]
    scores = softmax(logits["validation"])[:, -1]
    labels = (val.labels == len(task.classes) - 1).long().numpy()
    groups = task.groups(val.codes, args.sensitive)
    rules: dict[str, dict | None] = {"unmitigated": None, "the package's own rule": task.fairness}
    for cut in CUTS:
        rule = fit_thresholds(scores, groups, labels, sensitive=args.sensitive, cut=cut)
        rules[f"demographic_parity cut={cut}"] = rule
    rules["equalized_odds"] = fit_thresholds(
        scores, groups, labels, "equalized_odds", args.sensitive
    )
    out: dict[str, Any] = {
        "command": "python benchmarks/adult_fairness.py " + " ".join(argv or sys.argv[1:]),
        "results": {},
    }
    for name, rule in rules.items():
        rule = None if rule is None else {**rule, "positive": task.classes[-1]}
        out["results"][name] = {
            k: _measure(task, logits[k], d, rule, args.sensitive) for k, d in parts.items()
        }
        r = out["results"][name]
        v, t = r["validation"], r["test"]
        print(
            f"{name:32s} val acc {v['accuracy']:.4f} dp {v['dp_difference']:.4f} | test acc "
            f"{t['accuracy']:.4f} dp {t['dp_difference']:.4f} eo {t['eo_difference']:.4f}"
        )
    if args.out:
        with atomic_path(Path(args.out)) as tmp:
            tmp.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
