"""Serving under change, abuse and bursts (issue 12): the load targets, measured once.

Usage (from the repository root):

    .venv/bin/python benchmarks/serve_hardening.py \
        --out benchmarks/results/cpu-2026-11-30-serve-hardening.json

Trains a digits model for one epoch (seconds on CPU), exports it as two models of a
temporary repository, serves them with ``tensorfab serve --model-control explicit`` in its
own process, and drives it from this one (loopback only, every loop bounded):

- reloads: ``--reloads`` loads of the two models, alternating, while ``--clients`` clients
  infer; counts failed valid requests;
- idle: ``--idle`` sockets that send nothing or half a request line; valid p99 before and
  while they are open, and how many the server closed by the header timeout;
- bombs: 20 KB PNGs of 13000x13000 pixels and 15 MB JSON bodies sent in parallel with small
  valid requests; the valid requests' p99;
- flood: the server's resident memory before, right after and 5 s after a flood of large
  requests that fills the queue;
- mixed: ``--mixed`` requests, 5 % malformed; every valid one must be answered 200;
- fuzz (``--fuzz-examples N``): the OpenAPI fuzz test with N examples per route.

The abuse of ``idle`` and ``bombs`` is sent from a forked process, so that it does not
compete for this process's GIL with the clients whose latency is measured;
``bombs_same_process`` sends the bombs from threads of this process, as the first run did;
``bombs_control`` sends them to a sink that refuses them as the server does, not to the
server: the valid p99 left then is the machine's (the senders' and the kernel's work).
Each step records the 1-minute load average at its end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import multiprocessing
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from serve_batching import start_server  # run as a script: benchmarks/ is on sys.path

from tensorfab.engine.train import train
from tensorfab.files import atomic_path
from tensorfab.optimize import export_package
from tensorfab.package import load_package
from tensorfab.serve.server import raise_open_file_limit
from tensorfab.spec import load_spec

HEADER_TIMEOUT_S = 2.0
GOOD = {
    "inputs": [{"name": "images", "shape": [1, 1, 28, 28], "datatype": "UINT8", "data": [0] * 784}]
}
STEPS = ("reloads", "idle", "bombs", "bombs_same_process", "bombs_control", "flood", "mixed")
BAD = [b'{"inputs": [{"name": "images", "shape": [true, 1, 28, 28]}]}', b"[" * 100_000,
       b'{"inputs": 5}', b"{not json"]  # fmt: skip


def _repo(tmp: Path) -> Path:
    spec = load_spec(None, ["train.device=cpu", f"output.runs_dir={tmp}/runs", "train.epochs=1",
                            "name=digits"])  # fmt: skip
    run = train(spec, quiet=True).run_dir
    repo = tmp / "repo"
    export_package(load_package(run), repo, "digits", variants=("fp32",))
    shutil.copytree(repo / "digits", repo / "digits-b")
    for name in ("digits", "digits-b"):
        (repo / name / "config.yaml").write_text("max_batch_size: 32\nmax_queue_size: 64\n")
    return repo


def _serve(repo: Path, port: int) -> subprocess.Popen:
    return start_server(
        repo, port, "--model-control", "explicit", "--header-timeout", str(HEADER_TIMEOUT_S),
        "--body-timeout", "5", "--max-queue-mb", "64", stdout=subprocess.PIPE,
    )  # fmt: skip


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _p99(latencies: list[float]) -> float:
    return float(np.percentile(latencies, 99) * 1000) if latencies else float("nan")


def _valid_load(url: str, clients: int, stop: threading.Event) -> tuple[list, list]:
    """Clients sending valid requests until ``stop``; (statuses, latencies), filled live."""
    statuses: list[int] = []
    latencies: list[float] = []

    def client(i: int) -> None:
        model = ("digits", "digits-b")[i % 2]
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                start = time.perf_counter()
                try:
                    code = http.post(f"/v2/models/{model}/infer", json=GOOD).status_code
                except httpx.HTTPError:
                    code = -1
                latencies.append(time.perf_counter() - start)
                statuses.append(code)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    return statuses, latencies


def _during(url: str, clients: int, action: Callable[[], dict]) -> dict:
    stop = threading.Event()
    statuses, latencies = _valid_load(url, clients, stop)
    try:
        extra = action()
    finally:
        stop.set()
        time.sleep(0.5)
    failed = sum(1 for s in statuses if s != 200)
    return {"valid": len(statuses), "failed": failed, "valid_p99_ms": _p99(latencies), **extra}


def reloads(url: str, clients: int, count: int) -> dict:
    def action() -> dict:
        codes = []
        for i in range(count):
            model = ("digits", "digits-b")[i % 2]
            codes.append(httpx.post(f"{url}/v2/repository/models/{model}/load", timeout=120)
                         .status_code)  # fmt: skip
        return {"reloads": count, "reload_statuses": sorted(set(codes))}

    return _during(url, clients, action)


def _in_child(work: Callable[[], dict]) -> Callable[[], dict]:
    """``work`` run in a forked process: the abuse it sends does not compete for this
    process's GIL with the clients whose latency is measured."""

    def run() -> dict:
        context = multiprocessing.get_context("fork")
        reader, writer = context.Pipe(duplex=False)
        proc = context.Process(target=lambda: writer.send(work()), daemon=True)
        proc.start()
        result = reader.recv()
        proc.join()
        return result

    return run


def _open_idle(port: int, count: int, hold_s: float) -> dict:
    """``count`` sockets that send nothing or half a request line, held ``hold_s`` seconds;
    then how many of them the server had closed by its header timeout."""
    sockets = []
    start = time.perf_counter()
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        if i % 2:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\n")  # never finished
        sockets.append(s)
    opened_s = time.perf_counter() - start
    time.sleep(hold_s + HEADER_TIMEOUT_S + 2)
    closed = 0
    for s in sockets:
        s.settimeout(0.5)
        with contextlib.suppress(TimeoutError, OSError):
            closed += s.recv(10) == b""
        s.close()
    return {"sockets": count, "opened_in_s": opened_s, "closed_by_server": closed}


def idle(url: str, port: int, count: int, window_s: float = 6.0) -> dict:
    """Valid p99 for ``window_s`` with nothing else, then for ``window_s`` from the moment
    ``count`` idle sockets start opening (a forked process opens and holds them)."""
    unloaded = _during(url, 2, lambda: (time.sleep(window_s), {})[1])
    held: list[dict] = []
    opener = threading.Thread(
        target=lambda: held.append(_in_child(lambda: _open_idle(port, count, window_s))())
    )
    stop = threading.Event()
    statuses, latencies = _valid_load(url, 2, stop)
    opener.start()
    time.sleep(window_s)
    stop.set()
    opener.join()
    time.sleep(0.5)
    return {"header_timeout_s": HEADER_TIMEOUT_S, **held[0],
            "unloaded": {k: unloaded[k] for k in ("valid", "failed", "valid_p99_ms")},
            "valid": len(statuses), "failed": sum(1 for s in statuses if s != 200),
            "valid_p99_ms": _p99(latencies)}  # fmt: skip


def _bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (13000, 13000)).save(buf, "PNG")
    return buf.getvalue()


def _send_bombs(url: str, png: bytes, big: bytes) -> dict:
    """Three senders of the PNG bomb and three of the large JSON body, 5 requests each."""
    codes: list[int] = []

    def send(body: bytes, route: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for _ in range(5):
                try:
                    codes.append(http.post(route, content=body).status_code)
                except httpx.TransportError:
                    codes.append(-1)  # closed before its answer was read

    jobs = [threading.Thread(target=send, args=(png, "/v1/models/digits:predict"))
            for _ in range(3)]  # fmt: skip
    jobs += [threading.Thread(target=send, args=(big, "/v2/models/digits/infer"))
             for _ in range(3)]  # fmt: skip
    start = time.perf_counter()
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    return {"png_bytes": len(png), "bomb_statuses": sorted(set(codes)),
            "bombs_s": time.perf_counter() - start}  # fmt: skip


def _refusing_sink() -> tuple[socket.socket, str]:
    """A listening socket on 127.0.0.1 whose every connection is answered 413 and closed
    after its headers, as the server does: the bombs' cost to the machine, not the server."""
    sink = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = sink.accept()
                with conn, contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")  # fmt: skip

    threading.Thread(target=serve, daemon=True).start()
    return sink, f"http://127.0.0.1:{sink.getsockname()[1]}"


def bombs(url: str, same_process: bool = False, control: bool = False) -> dict:
    """Small valid requests' p99 while bombs go in parallel; the bombs sent from a forked
    process (the target's measurement) or, ``same_process``, from threads of this one; with
    ``control``, the bombs go to a sink that refuses them, not to the server (what is left
    of the p99 then is the machine's)."""
    png = _bomb_png()
    big = json.dumps({"inputs": [{"name": "images", "shape": [1], "datatype": "FP32",
                                  "data": [1.0] * 3_000_000}]}).encode()[: 15_900_000]  # fmt: skip
    sink, target = _refusing_sink() if control else (None, url)
    action = lambda: _send_bombs(target, png, big)  # noqa: E731
    try:
        return _during(url, 4, action if same_process else _in_child(action))
    finally:
        if sink is not None:
            sink.close()


def flood(url: str, pid: int) -> dict:
    before = _rss_mb(pid)
    images = np.zeros((32, 1, 28, 28), np.uint8).tolist()
    body = json.dumps({"inputs": [{"name": "images", "shape": [32, 1, 28, 28],
                                   "datatype": "UINT8", "data": images}]}).encode()  # fmt: skip
    codes: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for _ in range(20):
                codes.append(http.post("/v2/models/digits/infer", content=body).status_code)

    jobs = [threading.Thread(target=send) for _ in range(16)]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    after = _rss_mb(pid)
    time.sleep(5)
    idle_mb = _rss_mb(pid)
    return {"requests": len(codes), "statuses": {str(c): codes.count(c) for c in set(codes)},
            "rss_before_mb": before, "rss_after_mb": after, "rss_idle_mb": idle_mb,
            "idle_over_before": idle_mb / before - 1}  # fmt: skip


def mixed(url: str, total: int, clients: int) -> dict:
    rng = random.Random(0)
    plan = [rng.random() < 0.05 for _ in range(total)]
    results: list[tuple[bool, int]] = []
    lock = threading.Lock()

    def client(part: list[bool]) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for bad in part:
                body = rng.choice(BAD) if bad else json.dumps(GOOD).encode()
                try:
                    code = http.post("/v2/models/digits/infer", content=body).status_code
                except httpx.HTTPError:
                    code = -1
                with lock:
                    results.append((bad, code))

    jobs = [threading.Thread(target=client, args=(plan[i::clients],)) for i in range(clients)]
    start = time.perf_counter()
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    valid = [c for bad, c in results if not bad]
    invalid = [c for bad, c in results if bad]
    return {
        "requests": total,
        "malformed": len(invalid),
        "valid_lost": sum(c != 200 for c in valid),
        "malformed_500": sum(c >= 500 for c in invalid),
        "seconds": time.perf_counter() - start,
    }


def fuzz(examples: int) -> dict:
    """The OpenAPI fuzz test with ``examples`` per route (CI runs 15): passed, seconds."""
    test = "tests/integration/serve/test_serve_openapi_fuzz.py"
    env = {**os.environ, "TENSORFAB_FUZZ_EXAMPLES": str(examples)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                          env=env, capture_output=True, text=True)  # fmt: skip
    return {"examples_per_route": examples, "passed": proc.returncode == 0,
            "seconds": time.perf_counter() - start,
            "summary": proc.stdout.strip().splitlines()[-1]}  # fmt: skip


def compare(repo: Path, port: int, before_src: str, rounds: int) -> dict:
    """The bombs step against a server run from ``before_src`` (another checkout's ``src``)
    and one from this checkout, alternated ``rounds`` times so both see the same machine."""
    runs: dict[str, list] = {"before": [], "after": []}
    here = str(Path(__file__).resolve().parents[1] / "src")
    for i in range(rounds):
        for label, src in (("before", before_src), ("after", here)):
            os.environ["PYTHONPATH"] = src  # the server process imports tensorfab from there
            proc = _serve(repo, port + 2 * i + (label == "after"))
            try:
                result = bombs(f"http://127.0.0.1:{port + 2 * i + (label == 'after')}")
            finally:
                proc.terminate()
                proc.communicate(timeout=60)
            result["loadavg_1min"] = float(Path("/proc/loadavg").read_text().split()[0])
            runs[label].append(result)
            print(label, result, flush=True)
    del os.environ["PYTHONPATH"]
    medians = {k: float(np.median([r["valid_p99_ms"] for r in v])) for k, v in runs.items()}
    commit = subprocess.run(["git", "-C", before_src, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    return {"before_commit": commit, "rounds": rounds, "median_valid_p99_ms": medians, **runs}


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/serve-hardening.json")
    parser.add_argument("--port", type=int, default=8771)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--mixed", type=int, default=10_000)
    parser.add_argument("--steps", default=",".join(STEPS), help="a subset of " + ",".join(STEPS))
    parser.add_argument(
        "--fuzz-examples",
        type=int,
        default=0,
        help="also run the OpenAPI fuzz, this many examples per route",
    )
    parser.add_argument("--compare-src", help="only: the bombs step, a server from this src "
                        "folder (before) against this checkout's (after), alternated")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --compare-src")
    args = parser.parse_args()
    raise_open_file_limit()
    url = f"http://127.0.0.1:{args.port}"
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.compare_src:
            results["compare"] = compare(_repo(Path(tmp)), args.port, args.compare_src, args.rounds)
            _write(args.out, results)
            return
        proc = _serve(_repo(Path(tmp)), args.port)
        try:
            steps = {"reloads": lambda: reloads(url, args.clients, args.reloads),
                     "idle": lambda: idle(url, args.port, args.idle),
                     "bombs": lambda: bombs(url),
                     "bombs_same_process": lambda: bombs(url, same_process=True),
                     "bombs_control": lambda: bombs(url, control=True),
                     "flood": lambda: flood(url, proc.pid),
                     "mixed": lambda: mixed(url, args.mixed, 8)}  # fmt: skip
            for name in args.steps.split(","):
                results[name] = steps[name]()
                results[name]["loadavg_1min"] = float(Path("/proc/loadavg").read_text().split()[0])
                print(name, results[name], flush=True)
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=60)
        results["shutdown_line"] = out.strip().splitlines()[-1] if out.strip() else ""
        results["server_log_lines"] = len(err.splitlines())
    if args.fuzz_examples:
        results["fuzz"] = fuzz(args.fuzz_examples)
    _write(args.out, results)


def _write(out: str, results: dict) -> None:
    summary = {
        "date": datetime.date.today().isoformat(),
        "device": f"{os.cpu_count()}-core {_cpu_name()} CPU, shared with other jobs",
        "command": " ".join(["benchmarks/serve_hardening.py", *sys.argv[1:]]),
        "results": results,
    }
    with atomic_path(Path(out)) as path:
        path.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
