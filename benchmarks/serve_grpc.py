"""gRPC beside HTTP on one server: throughput of each front, the cost of the access log, and
the statistics extension checked against /metrics after the load.

Usage (from the repository root, with a trained image-classification run or package):

    .venv/bin/python benchmarks/serve_grpc.py runs/digits --clients 8 --requests 2000

Exports the model once (ONNX fp32) into a temporary repository and serves it twice with
``tensorfab serve`` in its own process: once with ``--grpc-port`` (the same load through an
unmodified ``tritonclient.grpc`` and ``tritonclient.http``, one image per request, binary
tensors), once with ``--grpc-port --access-log`` (the HTTP load again, the log lines going
to a pipe this process drains). After each load, ``/v2/models/{name}/stats`` and gRPC
``ModelStatistics`` must give the counts of ``/metrics``. Writes the JSON summary (device,
date, command; paths relative to the repository) to ``--out``.
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
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_batching import start_server  # run as a script: benchmarks/ is on sys.path

from tensorfab.files import atomic_path
from tensorfab.optimize import export_package
from tensorfab.package import load_package, resolve_model_dir
from tensorfab.serve.metrics import page_sample

MODEL = "digits"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _grpc_call(url: str) -> Callable[[np.ndarray], None]:
    client = grpcclient.InferenceServerClient(url)

    def call(images: np.ndarray) -> None:
        tensor = grpcclient.InferInput("images", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        client.infer(MODEL, [tensor])

    return call


def _http_call(url: str) -> Callable[[np.ndarray], None]:
    client = httpclient.InferenceServerClient(url)

    def call(images: np.ndarray) -> None:
        tensor = httpclient.InferInput("images", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images, binary_data=True)
        client.infer(MODEL, [tensor])

    return call


def run_load(make: Callable[[], Callable[[np.ndarray], None]], clients: int, total: int) -> dict:
    """``total`` one-image requests from ``clients`` threads, each with its own client."""
    images = np.random.default_rng(0).integers(0, 256, (1, 1, 28, 28), dtype=np.uint8)
    latencies: list[float] = []
    failures: list[str] = []
    left = [total]
    lock = threading.Lock()

    def worker() -> None:
        call = make()
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            start = time.perf_counter()
            try:
                call(images)
            except Exception as exc:  # counted, the first kept
                failures.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    return {
        "requests": total,
        "succeeded": len(latencies),
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
    }


def check_statistics(port: int, grpc_port: int) -> dict:
    """The statistics of both fronts against /metrics, after the load."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    http_stats = httpclient.InferenceServerClient(f"127.0.0.1:{port}").get_inference_statistics(
        MODEL
    )["model_stats"][0]
    grpc_stats = grpcclient.InferenceServerClient(
        f"127.0.0.1:{grpc_port}"
    ).get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    labels = {"model": MODEL, "version": "1"}
    metrics = {
        "success": page_sample(
            text, "tensorfab_inference_requests_total", **labels, outcome="success"
        ),
        "inference_count": page_sample(text, "tensorfab_batch_size_sum", **labels),
        "execution_count": page_sample(text, "tensorfab_batch_size_count", **labels),
    }
    stats = {
        "success": http_stats["inference_stats"]["success"]["count"],
        "inference_count": http_stats["inference_count"],
        "execution_count": http_stats["execution_count"],
    }
    grpc_success = int(grpc_stats["inference_stats"]["success"]["count"])  # int64 as a string
    return {
        "metrics": metrics,
        "stats_http": stats,
        "stats_grpc_success": grpc_success,
        "equal": all(metrics[k] == stats[k] for k in metrics) and grpc_success == stats["success"],
    }


def _drain(proc: subprocess.Popen, lines: list[str]) -> threading.Thread:
    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def serve_and_load(repo: Path, args: argparse.Namespace, access_log: bool) -> dict:
    options = ["--grpc-port", str(args.grpc_port), "--models", MODEL]
    options += ["--access-log"] if access_log else []
    proc = start_server(repo, args.port, *options, stdout=subprocess.PIPE)
    lines: list[str] = []
    _drain(proc, lines)
    http_url, grpc_url = f"127.0.0.1:{args.port}", f"127.0.0.1:{args.grpc_port}"
    try:
        out: dict = {}
        if not access_log:
            out["grpc"] = run_load(lambda: _grpc_call(grpc_url), args.clients, args.requests)
        out["http"] = run_load(lambda: _http_call(http_url), args.clients, args.requests)
        out["statistics"] = check_statistics(args.port, args.grpc_port)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if access_log:
        out["access_log_lines"] = sum(" /v2/models/digits/infer 200 " in line for line in lines)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="run directory or model package (image classification)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--grpc-port", type=int, default=8792)
    parser.add_argument("--out", default="benchmarks/results/serve-grpc.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tensorfab-grpc-"))
    try:
        repo = tmp / "repo"
        export_package(load_package(resolve_model_dir(args.model)), repo, MODEL, variants=("fp32",))
        runs = {
            "access-log-off": serve_and_load(repo, args, access_log=False),
            "access-log-on": serve_and_load(repo, args, access_log=True),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    model = Path(args.model).resolve()
    shown = model.relative_to(REPO_ROOT) if model.is_relative_to(REPO_ROOT) else Path(args.model)
    summary = {
        "what": "one server, gRPC and HTTP fronts, one image per request (binary tensors)",
        "model": str(shown),
        "clients": args.clients,
        "device": f"cpu {platform.machine()}, {torch.get_num_threads()} threads",
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python", *sys.argv]),
        "runs": runs,
    }
    with atomic_path(Path(args.out)) as path:
        path.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
