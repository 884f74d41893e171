"""Would an ensemble of finished CRF NER runs pay? Score each package alone, every pair and
all of them together on the packages' own eval split (fp32, CPU), and state the cost.

    nice -n 10 .venv/bin/python benchmarks/ner_ensemble_posthoc.py \\
        runs/ner-quality/context-crf-lld runs/ner-quality/context-crf-lld-lr3e-4 \\
        runs/ner-quality-s13/context128-crf-lld-avg2 \\
        --out benchmarks/results/cpu-2026-11-30-ner-ensemble-posthoc.json

Each member reads the split with its own task (its own context and ``max_length``) through
the task's ``logits``; its emissions at each word's first sub-token (``word_starts``, as the
task scores) become log-probabilities. An ensemble averages them per word, averages the
members' CRF weights, and decodes with the CRF's own constrained ``viterbi`` (IOB2's rule
applied to the averaged weights, as the task's decoder applies it to one model's); the
task's ``eval_scores`` (seqeval) scores it. One member alone decodes as the task does (a
per-word log-softmax shifts every tag's score of a word alike, so Viterbi's path is the
same). A measurement only: predict, export and serve run one model.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tensorfab.engine.runtime import create_runtime
from tensorfab.files import atomic_path
from tensorfab.models.crf import compact, viterbi
from tensorfab.package import load_package
from tensorfab.tasks.alignment import word_starts
from tensorfab.tasks.eval_data import load_eval_split

DECODE_ROWS = 256  # sentences per Viterbi call


@dataclass
class Member:
    name: str  # the run as given, relative to the checkout
    task: Any
    weights: torch.Tensor  # [C + 2, C] the package's CRF weights
    words: dict[int, torch.Tensor]  # example index -> [W, C] word log-probabilities
    gold: dict[int, list[int]]  # example index -> the words' gold tags
    seconds: float  # reading the split and the forward passes
    report: dict[str, Any]


def ensemble_decode(
    emissions: Sequence[torch.Tensor],
    mask: torch.Tensor,
    weights: Sequence[torch.Tensor],
    classes: Sequence[str],
) -> list[list[int]]:
    """Members' word emissions ``[B, W, C]`` (left-aligned ``mask`` ``[B, W]``) -> each row's
    tags: Viterbi over the mean of the members' log-probabilities, with the mean of their
    CRF weights ``[C + 2, C]`` under IOB2's rule."""
    logp = torch.stack([e.float().log_softmax(-1) for e in emissions]).mean(0)
    mean_weights = torch.stack([w.float() for w in weights]).mean(0)
    return viterbi(logp, mask, mean_weights, classes)


def relative(run: str) -> str:
    """A run path as committed: what follows ``/work/main/`` (the checkout), else as given."""
    marker = "/work/main/"
    return run.split(marker, 1)[1] if marker in run else run


@torch.no_grad()
def read_member(run: str, batch_size: int) -> Member:
    """One package's word log-probabilities and gold tags over its own eval split."""
    runtime = create_runtime("cpu", "fp32")
    pkg = load_package(Path(run), runtime.device)
    pkg.model.eval()
    if not pkg.task.crf:
        raise SystemExit(f"error: {relative(run)}: not a CRF package (head: crf)")
    t0 = time.perf_counter()
    data, source = load_eval_split(pkg.meta, None)
    words, gold = {}, {}
    for batch in pkg.task.eval_batches(data, batch_size, runtime.device).epoch(0):
        labels = batch[3].cpu()
        keep = word_starts(labels)
        emissions, mask, _ = compact(pkg.task.logits(pkg.model, batch).float().cpu(), keep)
        logp = emissions.log_softmax(-1)
        for r, i in enumerate(batch[0].tolist()):
            n = int(mask[r].sum())
            words[i], gold[i] = logp[r, :n].clone(), labels[r][keep[r]].tolist()
    seconds = time.perf_counter() - t0
    report = json.loads((Path(run) / "report.json").read_text(encoding="utf-8"))
    report["source"] = source
    weights = pkg.task.weights()
    return Member(relative(run), pkg.task, weights, words, gold, seconds, report)


def padded(rows: list[torch.Tensor], classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[W_i, C]`` -> ``[B, W, C]`` and the left-aligned mask ``[B, W]``."""
    width = max((len(r) for r in rows), default=0)
    out = torch.zeros(len(rows), width, classes)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for b, row in enumerate(rows):
        out[b, : len(row)], mask[b, : len(row)] = row, True
    return out, mask


def score(members: Sequence[Member]) -> dict[str, Any]:
    """The members' ensemble (one member: the package alone) scored by the task's metric."""
    first = members[0]
    classes = first.task.classes
    index = sorted(first.words)
    rows, cut = [], 0
    for start in range(0, len(index), DECODE_ROWS):
        chunk = index[start : start + DECODE_ROWS]
        n = [min(len(m.gold[i]) for m in members) for i in chunk]  # words every member read
        cut += sum(len(first.gold[i]) - k for i, k in zip(chunk, n, strict=True))
        em = [
            padded([m.words[i][:k] for i, k in zip(chunk, n, strict=True)], len(classes))
            for m in members
        ]
        preds = ensemble_decode([e for e, _ in em], em[0][1], [m.weights for m in members], classes)
        rows += [(i, first.gold[i][:k], p) for i, k, p in zip(chunk, n, preds, strict=True)]
    scores = first.task.eval_scores([rows])
    entity = scores["entity"]
    return {
        "members": [m.name for m in members],
        "f1": entity["f1"],
        "precision": entity["precision"],
        "recall": entity["recall"],
        "per_type_f1": {t: row["f1"] for t, row in entity["per_type"].items()},
        "words_cut": cut,
        "inference_s": sum(m.seconds for m in members),
        "train_s": sum(m.report["timings"]["train_s"] for m in members),
    }


def check_members(members: Sequence[Member]) -> None:
    """Members must tag the same classes and read the same sentences with the same gold."""
    first = members[0]
    for m in members[1:]:
        if list(m.task.classes) != list(first.task.classes) or set(m.gold) != set(first.gold):
            raise SystemExit(f"error: {m.name}: other classes or sentences than {first.name}")
        for i, tags in first.gold.items():
            k = min(len(tags), len(m.gold[i]))
            if tags[:k] != m.gold[i][:k]:
                raise SystemExit(f"error: {m.name}: sentence {i}'s gold tags differ")


def single_row(member: Member) -> dict[str, Any]:
    """One package's score beside the F1 its run reported (bf16 there, fp32 here)."""
    row = score([member])
    reported = member.report["metrics"]["test"]["f1"]
    row |= {"reported_f1": reported, "reported_precision": member.report["hardware"]["precision"]}
    row["delta_vs_reported"] = row["f1"] - reported
    return row


def load_1min() -> float:
    """The machine's 1-minute load average (it is shared: timings move with it)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories of CRF token classification")
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_start = load_1min()
    members = [read_member(run, args.batch_size) for run in args.runs]
    check_members(members)
    singles = [single_row(m) for m in members]
    ensembles = [
        score(combo)
        for size in range(2, len(members) + 1)
        for combo in itertools.combinations(members, size)
    ]
    result = {
        "data": members[0].report["source"],
        "eval_path": members[0].report["spec"]["data"]["eval_path"],  # the packages' test split
        "sentences": len(members[0].gold),
        "precision": "fp32",
        "threads": torch.get_num_threads(),
        "device": "2-core CPU, shared",
        "loadavg_1min": {"start": load_start, "end": load_1min()},
        "member_inference_s": {m.name: m.seconds for m in members},
        "member_train_s": {m.name: m.report["timings"]["train_s"] for m in members},
        "singles": singles,
        "ensembles": ensembles,
    }
    with atomic_path(Path(args.out)) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
