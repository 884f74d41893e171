"""What the server's length groups cost the runtime, replayed offline, by grouping rule.

Usage (from the repository root, with the NER run ``serve_efficiency.py`` serves):

    taskset -c 0 .venv/bin/python benchmarks/serve_groups.py runs/srveff-ner \\
        --texts ../shared/data/conll2003/valid.txt --variant fp32

The runtime (one thread) on the sentences' token ids, CPU ms per sentence, best of 3
passes: in batches sorted by length over all sentences (what ``serve_efficiency.py``'s
offline side does), and as the server computes them: the sentences in random order, cut in
batches of ``--batch`` (what the concurrent clients bring per batch), each split by a
grouping rule: ``greedy`` (the start's rule: a group grows while its padding keeps within
``max_padding``) or ``cheapest`` (the server's ``length_groups``: the cheapest split within
the bound, a group costing its padded positions plus the runtime call's fixed cost, fitted
first: least squares of each group's CPU time on its padded positions). Writes JSON with
the device, date, command and load average to ``--out``. ``--call-scales 2,4`` also splits
with the fitted call cost doubled and quadrupled (fewer, larger groups).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from serve_efficiency import load_average, padded, sentences, token_ids, version_dir

from tensorfab.files import atomic_path
from tensorfab.serve.batching import CALL_TOKENS, Pending, length_groups, length_of

RULES = (
    ("greedy", 0.1),
    ("greedy", 0.25),
    ("greedy", 0.5),
    ("cheapest", 0.25),
    ("cheapest", 0.5),
    ("cheapest", 1.0),
    ("cheapest", 4.0),
)


def greedy_groups(batch: list[Pending], max_padding: float) -> list[list[Pending]]:
    """The start's rule: sorted by length, a group grows while its padding keeps the bound."""
    groups: list[list[Pending]] = []
    rows = positions = 0
    for p in sorted(batch, key=lambda p: length_of(p.feed)):
        length = length_of(p.feed)
        padded_ = (rows + p.rows) * length
        if groups and padded_ <= (1.0 + max_padding) * (positions + p.rows * length):
            groups[-1].append(p)
            rows, positions = rows + p.rows, positions + p.rows * length
        else:
            groups.append([p])
            rows, positions = p.rows, p.rows * length
    return groups


def cpu_ms(run: Any, feeds: list[dict[str, np.ndarray]], sentences_: int) -> float:
    """CPU ms per sentence of running every feed, the best of 3 passes."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for feed in feeds:
            run(feed)
        best = min(best, 1e3 * (time.process_time() - start) / sentences_)
    return best


def served_groups(
    ids: list[list[int]], batch: int, rule: str, bound: float, call_tokens: float = CALL_TOKENS
) -> list[list[int]]:
    """The sentences (indices) of each group the server would compute, random arrival."""
    order = np.random.default_rng(0).permutation(len(ids))
    groups = []
    for i in range(0, len(ids), batch):
        queued = [
            Pending({"x": np.zeros((1, len(ids[j])))}, 1, 0.0, 0.0, j) for j in order[i : i + batch]
        ]
        if rule == "greedy":
            split = greedy_groups(queued, bound)
        else:
            split = length_groups(queued, bound, call_tokens)
        groups += [[p.future for p in g] for g in split]
    return groups


def call_cost(run: Any, feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """The fitted fixed cost of a call and cost per padded position (each feed's median
    CPU time of 3 calls), and the fixed cost in positions."""
    sizes, times = [], []
    for feed in feeds:
        one = []
        for _ in range(3):
            start = time.thread_time()
            run(feed)
            one.append(time.thread_time() - start)
        sizes.append(feed["input_ids"].size)
        times.append(float(np.median(one)))
    per_position, fixed = np.polyfit(np.array(sizes, float), np.array(times), 1)
    return {
        "fixed_ms": 1e3 * fixed,
        "per_position_ms": 1e3 * per_position,
        "call_tokens": fixed / per_position,
    }


def groups_part(
    path: Path, texts: list[str], sizes: list[int], batch: int, scales: list[float]
) -> dict[str, Any]:
    from tensorfab.optimize.runtime import load_runtime

    run = load_runtime(path, "auto", "cpu", threads=1)
    ids = token_ids(path, texts)
    run(padded(ids[:8]))  # warm
    ranked = sorted(ids, key=len)
    out: dict[str, Any] = {"sorted": {}, "served": {}}
    for size in sizes:
        feeds = [padded(ranked[i : i + size]) for i in range(0, len(ranked), size)]
        out["sorted"][str(size)] = cpu_ms(run, feeds, len(ids))
    fit_groups = served_groups(ids, batch, "greedy", 0.5)
    out["call_cost"] = call_cost(run, [padded([ids[j] for j in g]) for g in fit_groups])
    for rule, bound in RULES:  # "cheapest" with the fitted call cost
        groups = served_groups(ids, batch, rule, bound, out["call_cost"]["call_tokens"])
        feeds = [padded([ids[j] for j in g]) for g in groups]
        out["served"][f"{rule} {bound}"] = {
            "groups": len(groups),
            "cpu_ms": cpu_ms(run, feeds, len(ids)),
        }
    for scale in scales:  # fewer, larger groups: the fitted call cost counted x scale
        groups = served_groups(ids, batch, "cheapest", 4.0, scale * out["call_cost"]["call_tokens"])
        feeds = [padded([ids[j] for j in g]) for g in groups]
        out["served"][f"cheapest 4.0, call cost x{scale:g}"] = {
            "groups": len(groups),
            "cpu_ms": cpu_ms(run, feeds, len(ids)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="run directory or model package (token classification)")
    parser.add_argument("--texts", required=True, help="CoNLL file whose sentences are used")
    parser.add_argument("--variant", default="fp32", help="torch, fp32 or int8-dynamic")
    parser.add_argument("--requests", type=int, default=600, help="sentences")
    parser.add_argument("--batch", type=int, default=24, help="requests a served batch takes")
    parser.add_argument("--sorted-sizes", default="8,16")
    parser.add_argument(
        "--call-scales", default="", help="also the cheapest split with the call cost x these"
    )
    parser.add_argument("--out", default="benchmarks/results/serve-groups.json")
    args = parser.parse_args()
    texts = sentences(args.texts, args.requests)
    load = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        path = version_dir(args.model, args.variant, Path(tmp))
        sizes = [int(s) for s in args.sorted_sizes.split(",")]
        scales = [float(s) for s in args.call_scales.split(",") if s]
        result = groups_part(path, texts, sizes, args.batch, scales)
    summary = {
        "device": f"cpu {platform.machine()}, one thread (pin it: taskset)",
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python", *sys.argv]),
        "load_average_1min": [load, load_average()],
        "variant": args.variant,
        "server_call_tokens": CALL_TOKENS,
        "groups": result,
    }
    print(json.dumps(summary, indent=2))
    with atomic_path(Path(args.out)) as part:
        part.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
