"""Sparse embedding rows vs the dense step: the engine's minilm NER step, both in one process.

    taskset -c 1 nice -n 10 .venv/bin/python benchmarks/sparse_rows_ab.py --rounds 8 --block 5

Two runs of the engine as ``bench train --workloads minilm-ner`` sets it up (batch 16, one
thread, precision auto), one with ``engine/sparse_rows.py`` (the default on a CPU) and one
with the word table's gradient dense as before; they take the same batches in alternating
blocks of ``--block`` steps, the order swapped every round, so the machine's load falls on
both. Two states are measured:

- ``fresh``: from the first step, as ``bench train`` times it (few rows have moved);
- ``after_epoch``: the optimizer's moments already non-zero for every row that one epoch
  of the training split reads (14,097 of 30,522 for CoNLL-2003), the state of a run past its
  first epoch, where the sparse step runs the kernel over the whole table.

Result: real tokens/s per side and their ratio, the load average, the moving rows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tensorfab.bench.train import tensorfab_spec
from tensorfab.bench.workloads import Plan, create_workload
from tensorfab.data import create_dataset
from tensorfab.engine.fit import train_step
from tensorfab.engine.train import setup
from tensorfab.files import atomic_path
from tensorfab.hardware import device_name
from tensorfab.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]


def _context(workload: Any, plan: Plan, sparse: bool, runs: str) -> Any:
    raw = tensorfab_spec(workload, plan, 16)
    raw["output"] = {"runs_dir": runs, "name": f"sparse-{sparse}"}
    ctx = setup(parse_spec(raw), quiet=True)
    if not sparse:  # the step as it was: dense gradient, the kernel over the whole table
        ctx.runtime.sparse_rows = None
        for m in ctx.model.modules():
            if isinstance(m, torch.nn.Embedding):
                m.sparse = False
    ctx.step_model.train()
    return ctx


def _age(ctx: Any, rows: torch.Tensor) -> None:
    """Moments as after an epoch: small non-zero values on the rows the epoch reads."""
    weight = ctx.model.get_input_embeddings().weight
    state = ctx.optimizer.state[weight]
    state["exp_avg"][rows] = 1e-4
    state["exp_avg_sq"][rows] = 1e-8
    if ctx.runtime.sparse_rows is not None:
        ctx.runtime.sparse_rows.reread()


def _epoch_rows(workload: Any) -> torch.Tensor:
    """The word-table rows one epoch of the whole training split reads."""
    limits = workload.limits
    splits = create_dataset("conll", path=limits["path"], eval_path=limits["eval_path"])
    seen: set[int] = set()
    for example in splits.train:
        seen.update(workload.tokenizer(example.words, is_split_into_words=True)["input_ids"])
    return torch.tensor(sorted(seen))


def _alternate(ctxs: dict[str, Any], batches: list, block: int) -> dict[str, Any]:
    spent = dict.fromkeys(ctxs, 0.0)
    tokens = 0
    loads = [os.getloadavg()[0]]
    for r in range(len(batches) // block):
        chunk = batches[r * block : (r + 1) * block]
        tokens += sum(int((b[2] > 0).sum()) for b in chunk)
        for name in list(ctxs) if r % 2 == 0 else list(ctxs)[::-1]:
            t0 = time.perf_counter()
            for b in chunk:
                train_step(ctxs[name], b)
            spent[name] += time.perf_counter() - t0
        loads.append(os.getloadavg()[0])
    rates = {name: tokens / s for name, s in spent.items()}
    return {
        "tokens_per_s": rates,
        "sparse_vs_dense": rates["sparse"] / rates["dense"],
        "steps_each": len(batches) // block * block,
        "load_average_1m": {"min": min(loads), "max": max(loads)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds (default 8)")
    parser.add_argument("--block", type=int, default=5, help="steps per side a round")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="benchmarks/results/cpu-2026-11-30-sparse-rows-ab.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    steps = args.rounds * args.block
    plan = Plan(torch.device("cpu"), False, 0, 2 * steps + 1, Path(args.data_dir))
    workload = create_workload("minilm-ner", plan)
    result: dict[str, Any] = {"date": "2026-11-30", "script": "benchmarks/sparse_rows_ab.py"}
    result["args"] = vars(args)
    with tempfile.TemporaryDirectory(prefix="tensorfab-sparse-ab-") as runs:
        ctxs = {"sparse": _context(workload, plan, True, runs)}
        ctxs["dense"] = _context(workload, plan, False, runs)
        batches = list(itertools.islice(ctxs["sparse"].train.epoch(0, 0), 2 * steps + 1))
        for ctx in ctxs.values():
            train_step(ctx, batches[0])  # optimizer state made; allocator warm
        result["precision"] = ctxs["sparse"].runtime.precision
        result["fresh"] = _alternate(ctxs, batches[1 : steps + 1], args.block)
        epoch_ids = _epoch_rows(workload)
        for ctx in ctxs.values():
            _age(ctx, epoch_ids)
        result["after_epoch"] = {
            "moving_rows": int(epoch_ids.numel()),
            **_alternate(ctxs, batches[steps + 1 :], args.block),
        }
    result["device"] = f"{device_name(torch.device('cpu'))}, one thread"
    out = REPO / args.out
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    json.dump({k: result[k] for k in ("fresh", "after_epoch")}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
