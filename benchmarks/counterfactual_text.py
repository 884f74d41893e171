"""The counterfactual text test on a real sentiment model, with what the CLI report leaves out:
a bootstrap interval of each pair's mean paired gap, and whether the model reads the templates'
sentiment at all (accuracy of P(positive) >= 0.5 against the emotion word's polarity; the
sets list five positive words, then five negative ones).

Run: python benchmarks/counterfactual_text.py runs/sst2-minilm-brief --sets gender,name --out F
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tensorfab.audit.fairness_text import (
    counterfactual_gaps,
    probe_sets,
    score_rows,
    sentences,
)
from tensorfab.engine.inference import predict_inputs
from tensorfab.files import atomic_path
from tensorfab.package import load_package


def paired_gap_ci(probes: list, scores: np.ndarray, a: str, b: str, rounds: int = 2000) -> list:
    """95 % percentile bootstrap of the mean of score(a) - score(b) over matched sentences."""
    cell = {(p.group, p.person, p.cell): s for p, s in zip(probes, scores, strict=True)}
    diffs = np.array([x - cell[(b, i, k)] for (g, i, k), x in cell.items() if g == a])
    rng = np.random.default_rng(0)
    means = [rng.choice(diffs, len(diffs)).mean() for _ in range(rounds)]
    return [float(v) for v in np.percentile(means, [2.5, 97.5])]


def measure(model: str, attribute: str) -> dict[str, Any]:
    words = probe_sets()[attribute]["words"]
    positive_words = set(words[: len(words) // 2])
    probes = sentences(attribute)
    classes = load_package(model).meta["labels"]
    rows = predict_inputs(model, [p.text for p in probes], device="cpu", top_k=len(classes))
    scores = score_rows("positive_probability", probes, rows, classes[-1])
    truth = np.array([p.cell.split("|", 1)[1] in positive_words for p in probes])
    report = counterfactual_gaps(probes, scores)
    for name in report["pairs"]:
        a, b = name.split(" - ")
        report["pairs"][name]["mean_gap_ci95"] = paired_gap_ci(probes, scores, a, b)
    report["template_polarity_accuracy"] = float(((scores >= 0.5) == truth).mean())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a text-classification run or package (sentiment)")
    parser.add_argument("--sets", default="gender,name", help="comma-separated (gender,name)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    out = {"model": args.model, "sets": {s: measure(args.model, s) for s in args.sets.split(",")}}
    text = json.dumps(out, indent=2) + "\n"
    if args.out:
        with atomic_path(Path(args.out)) as tmp:
            tmp.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
