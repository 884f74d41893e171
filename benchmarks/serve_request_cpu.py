"""The CPU a served text request costs outside the model call, stage by stage, in process.

Usage (from the repository root, with the serving-efficiency NER run):

    .venv/bin/python benchmarks/serve_request_cpu.py runs/srveff-ner \
        --texts ../shared/data/conll2003/valid.txt --requests 600 \
        --compare-src runs/base-main/src --out benchmarks/results/FILE.json

Each sentence is one ``/v1/models/ner:predict`` body (``{"instances": [text]}``) pushed
through what the server does with it, without the server, the batcher or the runtime:

- ``decode``: the request's texts (``convenience.decode``: the task's ``decode_request``);
- ``feeds``: the task's ``input_batches`` at the server's batch size (words, tokenizing,
  padding); ``decode`` and ``feeds`` are ``prepare``, the worker thread's share;
  ``feeds_first_pass``: the first pass over the requests, once, before any other (what
  the tokenizer's first sight of each word costs: ``tasks/word_pieces.py``);
- ``checks``: what ``ModelRepository.infer`` checks on the event loop per request
  (``check_inputs``, ``check_tokens``);
- ``rows``: the task's ``rows`` on the logits the model gave for the feed (computed once
  with the PyTorch runtime before any timing, then stored: not timed);
- ``answer``: the answer dict as ``convenience.predict`` builds it, and its JSON bytes as
  the response renders them; ``metrics``: the per-request Prometheus bookkeeping.

CPU microseconds per request (``time.process_time``, every stage over all the requests,
best of ``--passes``), a cProfile top list of one pass through every stage, and the SHA-256
of all the answers' bytes (equal digests: byte-identical answers). ``--compare-src DIR``
runs the same measurement from another source tree (e.g. the branch's start unpacked with
``git archive``) in a child process, alternating with this tree ``--rounds`` times, so both
sides share the machine's load. One thread for torch, as the served runtime has.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import hashlib
import io
import json
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_efficiency import json_child, sentences

from tensorfab.files import write_text_atomic
from tensorfab.optimize.runtime import input_signature, load_runtime
from tensorfab.package import resolve_model_dir
from tensorfab.serve.convenience import decode
from tensorfab.serve.metrics import ServerMetrics
from tensorfab.serve.protocol import check_inputs, check_tokens
from tensorfab.tasks import task_from_meta

MAX_BATCH = 32  # serve_efficiency.py's config
STAGES = ("decode", "feeds", "checks", "rows", "answer", "metrics")
TOP = 25  # functions in the profile's list


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def served_model(model_dir: Path) -> tuple[Any, Any]:
    """What ``convenience.prepare`` reads of a loaded version (task, limits, config), and
    the PyTorch runtime that computes the stored logits, as the server loads them."""
    runtime = load_runtime(model_dir, "torch", "cpu", threads=1)
    task = task_from_meta(runtime.meta, package_dir=str(model_dir))
    limits = task.serving_limits(model_dir)
    config = SimpleNamespace(max_batch_size=MAX_BATCH)
    model = SimpleNamespace(task=task.within(limits), limits=limits, config=config)
    model.signature = input_signature(runtime.meta)
    return model, runtime


class Pipeline:
    """The stages of every request, each run over all the requests at once."""

    def __init__(self, model: Any, runtime: Any, bodies: list[bytes]) -> None:
        self.model, self.bodies = model, bodies
        self.metrics = ServerMetrics()
        self.inputs = [decode(model, b) for b in bodies]
        start = time.process_time()
        self.feeds = [self._feeds(i) for i in self.inputs]
        self.feeds_first_us = 1e6 * (time.process_time() - start) / len(bodies)
        self.logits = [
            [np.asarray(runtime(f), dtype=np.float32) for f, _ in fs] for fs in self.feeds
        ]
        self.parts: list[list[dict[int, Any]]] = []
        self.answers: list[bytes] = []

    def _feeds(self, inputs: Any) -> list[tuple[Any, Any]]:
        size = min(len(inputs.data), MAX_BATCH)
        return list(self.model.task.input_batches(inputs, size))

    def decode(self) -> None:
        for body in self.bodies:
            decode(self.model, body)

    def feeds_stage(self) -> None:
        for inputs in self.inputs:
            self._feeds(inputs)

    def checks(self) -> None:
        specs, limits = self.model.signature[0], self.model.limits
        for feeds in self.feeds:
            for feed, _ in feeds:
                check_inputs(feed, specs, MAX_BATCH)
                check_tokens(feed, limits.vocab_size, limits.max_positions)

    def rows(self) -> None:
        task = self.model.task
        self.parts = [
            [task.rows(inputs, key, out, 3) for (_, key), out in zip(fs, ls, strict=True)]
            for inputs, fs, ls in zip(self.inputs, self.feeds, self.logits, strict=True)
        ]

    def answer(self) -> None:
        self.answers = [
            _render(_answer(p, i)) for p, i in zip(self.parts, self.inputs, strict=True)
        ]

    def metrics_stage(self) -> None:
        for _ in self.bodies:
            with self.metrics.request("ner", "1"):
                pass

    def stage(self, name: str) -> Callable[[], None]:
        return {"feeds": self.feeds_stage, "metrics": self.metrics_stage}.get(name) or getattr(
            self, name
        )


def _answer(parts: list[dict[int, Any]], inputs: Any) -> dict[str, Any]:
    """``convenience.predict``'s answer from its rows."""
    rows: dict[int, Any] = {}
    for part in parts:
        rows.update(part)
    answer = {
        "model_name": "ner",
        "model_version": "1",
        "predictions": [rows[i] for i in range(len(rows))],
    }
    if inputs.notes:
        answer["notes"] = list(inputs.notes)
    return answer


def _render(content: dict[str, Any]) -> bytes:
    """The bytes of a ``JSONResponse``'s body (starlette's ``render``)."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def measure(pipe: Pipeline, passes: int) -> dict[str, float]:
    """CPU µs per request of each stage: its best pass over every request."""
    out = {}
    for name in STAGES:
        run = pipe.stage(name)
        best = float("inf")
        for _ in range(passes):
            start = time.process_time()
            run()
            best = min(best, time.process_time() - start)
        out[name] = 1e6 * best / len(pipe.bodies)
    out["worker"] = out["decode"] + out["feeds"]
    out["loop"] = out["checks"] + out["rows"] + out["answer"] + out["metrics"]
    out["total"] = out["worker"] + out["loop"]
    return out


def profile(pipe: Pipeline) -> list[dict[str, Any]]:
    """The top functions by own time over one pass of every stage."""
    prof = cProfile.Profile()
    prof.enable()
    for name in STAGES:
        pipe.stage(name)()
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (path, line, func), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{_short(path)}:{line}({func})",
                "calls": calls,
                "own_us_per_request": 1e6 * own / len(pipe.bodies),
                "cumulative_us_per_request": 1e6 * cumulative / len(pipe.bodies),
            }
        )
    rows.sort(key=lambda r: -r["own_us_per_request"])
    return rows[:TOP]


def _short(path: str) -> str:
    """A profiled file's name without the machine's folders (no absolute paths)."""
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in path:
            return path.split(marker, 1)[1]
    return Path(path).name


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One side's measurement: this process's source tree."""
    torch.set_num_threads(1)
    model, runtime = served_model(resolve_model_dir(args.model))
    texts = sentences(args.texts, args.requests)
    bodies = [json.dumps({"instances": [t]}).encode() for t in texts]
    pipe = Pipeline(model, runtime, bodies)
    load = load_average()
    cpu_us = measure(pipe, args.passes)
    top = profile(pipe)
    digest = hashlib.sha256(b"\n".join(pipe.answers)).hexdigest()
    cpu_us["feeds_first_pass"] = pipe.feeds_first_us  # a tokenizer's word cache empty
    return {"requests": len(bodies), "load_1min_before": load, "cpu_us_per_request": cpu_us,
            "answers_sha256": digest, "profile_top": top}  # fmt: skip


def run_side(args: argparse.Namespace, src: str | None) -> dict[str, Any]:
    """:func:`child` in a child process, from ``src`` (a source tree) or this one."""
    cmd = [sys.executable, __file__, args.model, "--texts", args.texts, "--child"]
    cmd += ["--requests", str(args.requests), "--passes", str(args.passes)]
    return json_child(cmd, src)


def summary(side: str, result: dict[str, Any]) -> str:
    us = result["cpu_us_per_request"]
    names = (*STAGES, "worker", "loop", "total", "feeds_first_pass")
    stages = ", ".join(f"{k} {us[k]:.0f}" for k in names)
    return f"{side}: {stages} µs/request (load {result['load_1min_before']:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="example: .venv/bin/python benchmarks/serve_request_cpu.py runs/srveff-ner "
        "--texts ../shared/data/conll2003/valid.txt --compare-src runs/base-main/src "
        "--out benchmarks/results/cpu-2026-12-01-serve-request-cpu.json",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", help="run directory or model package (token classification)")
    parser.add_argument("--texts", required=True, help="CoNLL file whose sentences are sent")
    parser.add_argument("--requests", type=int, default=600, help="sentences, one a request")
    parser.add_argument("--passes", type=int, default=3, help="passes per stage (best taken)")
    parser.add_argument("--compare-src", help="another source tree measured alternately")
    parser.add_argument("--rounds", type=int, default=1, help="alternations with --compare-src")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    sides: dict[str, list[dict[str, Any]]] = {"branch": []}
    if args.compare_src:
        sides["compare"] = []
    for _ in range(args.rounds):
        for side in sides:
            result = run_side(args, args.compare_src if side == "compare" else None)
            sides[side].append(result)
            print(summary(side, result), flush=True)
    record = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(sys.argv),
        "device": "2-core CPU (Intel Xeon, AVX-512 BF16/AMX), shared with other jobs",
        "compare_src": args.compare_src,
        "sides": sides,
    }
    if args.out:
        write_text_atomic(args.out, json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
