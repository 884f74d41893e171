"""Dynamic batching on vs off: the same server, 32 concurrent clients, real sentences.

Usage (from the repository root, with a trained NER run or package):

    .venv/bin/python benchmarks/serve_batching.py runs/ner-minilm \
        --texts ../shared/data/conll2003/valid.txt --variant int8-dynamic

Exports the model once, then serves it three times from a temporary repository with
``tensorfab serve`` in its own process: once with dynamic batching (``max_batch_size``
32, run in length groups within 25 % padding), once with the same batches padded whole to
their longest request (``max_padding: null``), and once with batching off
(``max_batch_size: 0``, each request alone), and drives
each with the same bounded load (``tensorfab.serve.loadgen``) from this process. Writes
the JSON summary with the device, date and command to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import torch

from tensorfab.data.conll import read_conll
from tensorfab.optimize import export_package
from tensorfab.package import load_package, resolve_model_dir
from tensorfab.serve.loadgen import LoadSpec, run_load, wait_until_ready

BATCHING = {
    "batching-on": "max_batch_size: 32\nmax_queue_delay_us: 5000\nmax_queue_size: 512\n"
    "max_padding: 0.25\n",
    "batching-on-one-padded-batch": "max_batch_size: 32\nmax_queue_delay_us: 5000\n"
    "max_queue_size: 512\nmax_padding: null\n",
    "batching-off": "max_batch_size: 0\nmax_queue_size: 512\n",
}


def start_server(
    repo: Path, port: int, *options: str, stdout: int = subprocess.DEVNULL
) -> subprocess.Popen:
    """``tensorfab serve repo`` on 127.0.0.1:port (plus ``options``), once every model is ready."""
    cmd = [sys.executable, "-m", "tensorfab.cli.main", "serve", str(repo), "--port", str(port)]
    proc = subprocess.Popen([*cmd, *options], stdout=stdout, stderr=subprocess.PIPE, text=True)
    if wait_until_ready(f"http://127.0.0.1:{port}", proc):
        return proc
    proc.kill()
    raise SystemExit(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="run directory or model package (token classification)")
    parser.add_argument("--texts", required=True, help="CoNLL file whose sentences are sent")
    parser.add_argument(
        "--variant",
        default="int8-dynamic",
        choices=["fp32", "int8-dynamic", "torch"],
        help="an ONNX variant, or torch: the model package itself on the PyTorch backend",
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=240)
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--out", default="benchmarks/results/serve-batching.json")
    args = parser.parse_args()

    sentences = [" ".join(ex.words) for ex in read_conll(Path(args.texts))][: args.requests]
    bodies = [json.dumps({"text": s}).encode() for s in sentences]
    pkg = load_package(resolve_model_dir(args.model))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.variant == "torch":
            version_dir = pkg.path
        else:
            exported = export_package(pkg, Path(tmp) / "export", "ner", variants=(args.variant,))
            version_dir = exported[0].path.parent
        for mode, config in BATCHING.items():
            repo = Path(tmp) / mode
            shutil.copytree(version_dir, repo / "ner" / "1")
            (repo / "ner" / "config.yaml").write_text(config)
            server = start_server(repo, args.port)
            try:
                url = f"http://127.0.0.1:{args.port}/v1/models/ner:predict"
                run_load(LoadSpec(url, bodies[:64], clients=args.clients, requests=128))  # warm
                spec = LoadSpec(url, bodies, args.clients, args.requests, args.max_seconds)
                results[mode] = {"config": config, **run_load(spec)}
                metrics = httpx.get(f"http://127.0.0.1:{args.port}/metrics").text
                results[mode]["batch_size_metric"] = [
                    line
                    for line in metrics.splitlines()
                    if line.startswith("tensorfab_batch_size_")
                    and ("_sum" in line or "_count" in line)
                ]
            finally:
                server.terminate()
                server.wait(timeout=60)
            print(mode, {k: v for k, v in results[mode].items() if k != "batch_size_metric"})
    on, off = results["batching-on"], results["batching-off"]
    summary = {
        "device": f"cpu {platform.machine()}, {torch.get_num_threads()} threads",
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python", *sys.argv]),
        "model": str(args.model),
        "variant": args.variant,
        "texts": f"{args.texts} ({len(bodies)} sentences, one per request)",
        "results": results,
        "speedup_requests_per_s": on["requests_per_s"] / off["requests_per_s"],
        "speedup_one_padded_batch": results["batching-on-one-padded-batch"]["requests_per_s"]
        / off["requests_per_s"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"batching on / off: {summary['speedup_requests_per_s']:.2f}x requests/s -> {args.out}")


if __name__ == "__main__":
    main()
