"""BANKING77 few-shot (10 queries per intent) on minilm-l6, two measurements.

``speed``: where a one-epoch ``tensorfab train`` spends its time (report.json's timings)
beside a bare PyTorch loop (forward, backward, AdamW step) of the same model on the same
batches, and a bare forward pass over the validation batches, in one process at one thread
count and precision:

    nice -n 10 python benchmarks/intents_fewshot.py speed \\
        --out benchmarks/results/cpu-2026-11-30-banking77-speed.json

``pooling``: the nearest-class-mean accuracy on the validation part of the untrained
encoder's embeddings, mean-pooled and through the first token's pooler.

``serve RUN``: validation accuracy of a trained run, the INT8 export's accuracy delta and
the served p50 per query of each ``--variants`` (fp32, int8-dynamic, int8-static), in one
JSON (the training command is in docs/intents.md):

    nice -n 10 python benchmarks/intents_fewshot.py serve runs/banking77-fewshot \\
        --out benchmarks/results/cpu-2026-11-30-banking77-fewshot.json

Export parity runs on the whole validation split; the server binds 127.0.0.1, one client
sends ``--requests`` single-query requests, and the server is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from tensorfab.files import atomic_path
from tensorfab.serve.loadgen import wait_until_ready

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tensorfab.cli.main"]


def _json(args: list[str]) -> Any:
    """The command's JSON; export exits 1 with its report when a variant fails parity."""
    done = subprocess.run([*CLI, *args, "--json"], capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise SystemExit(f"error: tensorfab {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout)


def _wait_ready(url: str, seconds: float) -> None:
    if wait_until_ready(url, None, seconds):
        return
    raise SystemExit(f"error: the server at {url} was not ready within {seconds:.0f} s")


def stages(version_dir: Path, texts: list[str], threads: int | None) -> dict[str, float]:
    """Median milliseconds of each step a served single-query predict takes in-process:
    reading the body, tokenizing and collating, the runtime's forward, the answer rows."""
    import statistics

    from tensorfab.optimize.runtime import load_runtime
    from tensorfab.tasks import task_from_meta

    runtime = load_runtime(version_dir, threads=threads)
    task = task_from_meta(runtime.meta, package_dir=str(version_dir))
    spent: dict[str, list[float]] = {"body": [], "tokenize": [], "forward": [], "rows": []}
    for text in texts:
        marks = [time.perf_counter()]
        inputs = task.decode_request(json.dumps({"text": text}).encode(), None)
        marks.append(time.perf_counter())
        ((feed, key),) = list(task.input_batches(inputs, 1))
        marks.append(time.perf_counter())
        logits = runtime(feed)
        marks.append(time.perf_counter())
        task.rows(inputs, key, logits, 3)
        marks.append(time.perf_counter())
        for name, a, b in zip(spent, marks, marks[1:], strict=False):
            spent[name].append((b - a) * 1000)
    return {f"{name}_ms": statistics.median(ms) for name, ms in spent.items()}


def served_p50(repo: Path, models: list[str], texts: Path, requests: int, port: int) -> dict:
    """Per model: p50/p99 of single-query requests from one client to a local server."""
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*CLI, "serve", str(repo), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(url, 180.0)
        timed = {}
        for model in models:
            args = ["perf", url, "--model", model, "--texts", str(texts), "--clients", "1"]
            timed[model] = _json([*args, "--requests", str(requests), "--max-seconds", "120"])
        return timed
    finally:
        server.terminate()
        server.wait(timeout=30)


SPEC = REPO / "examples/banking77-minilm.yaml"
SPEEDS = ("train_samples_per_s", "eval_samples_per_s")
FEW_SHOT = ["data.per_class_limit=10", "train.epochs=1", "train.device=cpu"]


def _timed_loop(step: Any, batches: Any) -> dict[str, float]:
    """Samples, seconds and samples/s of ``step(batch)`` over ``batches``."""
    samples, start = 0, time.perf_counter()
    for batch in batches:
        step(batch)
        samples += len(batch[0])
    seconds = time.perf_counter() - start
    return {"samples": samples, "seconds": seconds, "samples_per_s": samples / seconds}


def bare_loops(overrides: list[str]) -> dict[str, Any]:
    """A plain loop of the spec's model on the batches ``tensorfab train`` makes: one
    training epoch (autocast forward, cross-entropy, backward, fused AdamW step) and one
    forward pass over the validation batches."""
    import torch

    from tensorfab.data.sequence_batching import SequenceBatches
    from tensorfab.engine.train import build_workload
    from tensorfab.models import create_model
    from tensorfab.spec import load_spec
    from tensorfab.tasks import Placement

    spec = load_spec(SPEC, overrides)
    torch.set_num_threads(spec.train.threads)  # type: ignore[arg-type]
    torch.manual_seed(spec.seed)
    workload, _ = build_workload(spec)
    model = create_model(spec.model.name, **{**workload.model_args, **spec.model.args})
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.train.lr, fused=True)
    dtype = torch.bfloat16 if spec.train.precision == "bf16" else torch.float32
    where = Placement(torch.device("cpu"), spec.seed, bucket=spec.data.length_bucketing)

    def train_step(batch: Any) -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            logits = model(input_ids=batch[1], attention_mask=batch[2]).logits
        torch.nn.functional.cross_entropy(logits.float(), batch[3]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def eval_step(batch: Any) -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            model(input_ids=batch[1], attention_mask=batch[2])

    train = workload.make_batches("train", spec.data.batch_size, True, where)
    model.train()
    timed = {"train": {**_timed_loop(train_step, train.epoch(0)), "load_1m": os.getloadavg()[0]}}
    model.eval()
    evals = workload.make_batches("eval", 1024, False, where)  # as the engine asks for them
    timed["eval"] = {**_timed_loop(eval_step, evals.epoch(0)), "load_1m": os.getloadavg()[0]}
    # the form before: all 1,001 queries one length-sorted batch, padded to the longest
    one = SequenceBatches(
        evals.input_ids, evals.labels, 1024, device=where.device, shuffle=False, bucket=True
    )
    timed["eval_one_batch"] = {
        **_timed_loop(eval_step, one.epoch(0)),
        "load_1m": os.getloadavg()[0],
    }
    return timed


def engine_run(overrides: list[str], runs_dir: Path) -> dict[str, Any]:
    """``tensorfab train`` of the spec: wall time and report.json's speed and timings."""
    args = [*CLI, "train", str(SPEC), "--quiet", "--name", "speed"]
    args += [x for o in [*overrides, f"output.runs_dir={runs_dir}"] for x in ("--set", o)]
    load, start = os.getloadavg()[0], time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    wall = time.perf_counter() - start
    report = json.loads((runs_dir / "speed/report.json").read_text())
    return {
        "wall_s": wall,
        "load_1m": [load, os.getloadavg()[0]],
        "timings": report["timings"],
        "throughput": {
            k: report["throughput"][k] for k in ("train_samples_per_s", "eval_samples_per_s")
        },
    }


def speed(args: argparse.Namespace) -> dict[str, Any]:
    overrides = [*FEW_SHOT, f"train.threads={args.threads}", f"train.precision={args.precision}"]
    with tempfile.TemporaryDirectory() as tmp:
        engine = engine_run(overrides, Path(tmp))
    return {
        "what": "BANKING77 few-shot (per_class_limit 10), minilm-l6, one epoch: tensorfab "
        "train's time by phase beside a bare loop of the same model on the same batches",
        "date": date.today().isoformat(),
        "command": "python benchmarks/intents_fewshot.py speed "
        f"--threads {args.threads} --precision {args.precision}",
        "overrides": overrides,
        "tensorfab_train": engine,
        "bare": bare_loops(overrides),
    }


def _pooler_output(model: Any) -> Any:
    """What Hugging Face's sequence head reads: the pooler over the first token."""
    return lambda ids, mask: model.bert(ids, mask).pooler_output


def pooling(args: argparse.Namespace) -> dict[str, Any]:
    """Nearest-class-mean accuracy on the validation part, with no training: the training
    queries' class means of minilm-l6's embeddings, mean-pooled or the first token's pooler
    (what each head would read before its first step)."""
    import torch

    from tensorfab.engine.train import build_workload
    from tensorfab.models import create_model
    from tensorfab.spec import load_spec
    from tensorfab.tasks import Placement

    spec = load_spec(SPEC, ["data.per_class_limit=10", "train.device=cpu"])
    torch.set_num_threads(args.threads)
    workload, _ = build_workload(spec)
    where = Placement(torch.device("cpu"), spec.seed, bucket=True)
    scores = {}
    for kind in ("mean", "cls"):
        model = create_model(spec.model.name, **{**workload.model_args, "pooling": kind}).eval()
        embed = model.embed if kind == "mean" else _pooler_output(model)
        with torch.no_grad():
            parts = {}
            for split in ("train", "eval"):
                batches = workload.make_batches(split, 64, False, where).epoch(0)
                pairs = [(embed(b[1], b[2]), b[3]) for b in batches]
                parts[split] = (torch.cat([e for e, _ in pairs]), torch.cat([y for _, y in pairs]))
        (x, y), (vx, vy) = parts["train"], parts["eval"]
        means = torch.stack([x[y == c].mean(0) for c in range(int(y.max()) + 1)])
        scores[kind] = (torch.cdist(vx, means).argmin(1) == vy).float().mean().item()
    return {
        "what": "BANKING77 10-shot, minilm-l6, no training: nearest class mean accuracy on "
        "the validation part by pooling",
        "date": date.today().isoformat(),
        "command": f"python benchmarks/intents_fewshot.py pooling --threads {args.threads}",
        "load_1m": os.getloadavg()[0],
        "accuracy": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    fast = sub.add_parser("speed", help="tensorfab train against a bare loop")
    fast.add_argument("--threads", type=int, default=1)
    fast.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    fast.add_argument("--out", required=True, help="result JSON")
    pooled = sub.add_parser("pooling", help="nearest-class-mean accuracy by pooling")
    pooled.add_argument("--threads", type=int, default=1)
    pooled.add_argument("--out", required=True, help="result JSON")
    served = sub.add_parser("serve", help="accuracy, INT8 delta and served p50 of a run")
    served.add_argument("run", help="the trained run directory")
    served.add_argument("--out", required=True, help="result JSON")
    served.add_argument("--requests", type=int, default=200)
    served.add_argument("--port", type=int, default=8093)
    served.add_argument("--variants", default="fp32,int8-dynamic,int8-static")
    args = parser.parse_args()
    result = {"speed": speed, "pooling": pooling, "serve": serve}[args.mode](args)
    with atomic_path(Path(args.out)) as tmp_out:
        Path(tmp_out).write_text(json.dumps(result, indent=2) + "\n")


def serve(args: argparse.Namespace) -> dict[str, Any]:
    """Validation accuracy, the INT8 export's parity and the served p50 of a trained run."""
    run = Path(args.run)
    load = os.getloadavg()[0]
    report = json.loads((run / "report.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        export = _json(
            [
                "export", str(run), "--repo", str(repo), "--name", "banking",
                "--variants", args.variants, "--samples", "100000",
            ]
        )  # fmt: skip
        texts = Path(tmp) / "queries.txt"
        lines = (REPO.parent / "shared/data/banking77/train.csv").read_text().splitlines()
        texts.write_text("\n".join(line.rsplit(",", 1)[0].strip('"') for line in lines[1:301]))
        variants = args.variants.split(",")
        models = [f"banking-{v}" if v != "fp32" else "banking" for v in variants]
        perf = served_p50(repo, models, texts, args.requests, args.port)
        queries = texts.read_text().splitlines()[: args.requests]
        steps = {m: stages(repo / m / "1", queries, None) for m in models}
    return {
        "what": "BANKING77 few-shot (data.per_class_limit 10), minilm-l6: accuracy on the "
        "validation part carved from train (seed 0), INT8 export deltas, served p50",
        "date": date.today().isoformat(),
        "device": report["hardware"],
        "load_average": {"start": load, "end": os.getloadavg()[0]},
        "spec": report["spec"],
        "command": "see benchmarks/intents_fewshot.py (train, then this script)",
        "history": report.get("history"),
        "validation": {k: report["metrics"]["test"].get(k) for k in ("accuracy", "macro_f1")},
        "throughput": {k: report["throughput"].get(k) for k in ("train_samples_per_s",)},
        "export": {k: export[k] for k in ("variants", "samples") if k in export} or export,
        "served": perf,
        "in_process_steps": steps,
    }


if __name__ == "__main__":
    main()
