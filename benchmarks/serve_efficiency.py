"""Serving efficiency: served requests/s as a fraction of the runtime's offline best batch.

Usage (from the repository root, with a trained NER run or package):

    .venv/bin/python benchmarks/serve_efficiency.py runs/ner-minilm \
        --texts ../shared/data/conll2003/valid.txt --variants torch,fp32,int8-dynamic

For each runtime (``torch``: the package on the PyTorch backend; ``fp32``,
``int8-dynamic``: ONNX variants exported once), on the same sentences:

- offline: the runtime called directly (``load_runtime``, one thread) on the sentences'
  token ids in batches sorted by length, each padded to its longest, at each of
  ``--batch-sizes``, best of 3 passes; the best sentences/s is the runtime's ceiling.
  Run in a child process pinned to the server's core (``taskset``), tokenizing not timed;
  with ``--compare-src``, each side's runtime is exported and measured offline by its own
  source tree (``offline``, ``offline_compare``), and its fraction is over its own.
- served: ``tensorfab serve`` pinned to that core (one compute thread, dynamic batching
  with length groups as ``serve_batching.py``), driven from the other core by
  ``--clients`` concurrent keep-alive clients (``--client raw``: a minimal HTTP client, so
  the client is not what limits a shared machine; ``loadgen``: ``tensorfab perf``'s), one
  sentence per request on ``/v1/models/ner:predict`` (texts in, entities out: tokenizing
  and decoding included).

fraction = served requests/s / offline best sentences/s; the CPU-time fraction (offline
CPU ms per sentence over the server's CPU ms per request) is the same ratio measured in
CPU time, which a loaded machine disturbs less. Each served run also records the server's
CPU per request by thread (the event loop, the compute thread, the rest: /proc), the length
groups computed (``batches``, ``rows``) and the batches taken from the queue with their
requests (``taken_batches``, ``taken_requests``: from ``tensorfab_batch_requests``, absent on
servers without it). ``--compare-src DIR`` serves each runtime
a second time from another source tree (e.g. the branch's start, unpacked with ``git
archive``), alternating, so before and after share the machine's load; ``--max-padding``
and ``--compare-max-padding`` set each side's ``max_padding`` (0.25 both by default: a
side's own config against the other's, e.g. one source tree at two settings). Writes JSON with
the device, date, command and the 1-minute load average of each phase to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tensorfab.data.conll import read_conll
from tensorfab.files import atomic_path
from tensorfab.optimize import export_package
from tensorfab.package import load_package, resolve_model_dir

SERVE_CONFIG = "max_batch_size: 32\nmax_queue_delay_us: 5000\nmax_queue_size: 512\n"
PASSES = 3  # over the sentences at each batch size, offline
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TENSORFAB_THREADS": "1"}


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def version_dir(model: str, variant: str, tmp: Path) -> Path:
    """The folder the runtime loads: the package itself for torch, else an ONNX export."""
    pkg = load_package(resolve_model_dir(model))
    if variant == "torch":
        return pkg.path
    exported = export_package(pkg, tmp / f"export-{variant}", "ner", variants=(variant,))
    return exported[0].path.parent


def token_ids(path: Path, texts: list[str]) -> list[list[int]]:
    """Each text's token ids as the served model's task cuts them."""
    from tensorfab.tasks import task_from_meta

    pkg_meta = json.loads((path / "tensorfab.json").read_text())
    task = task_from_meta(pkg_meta, package_dir=str(path))
    ids, _, _ = task.encode([task.placeholder(t) for t in texts])
    return ids


def padded(rows: list[list[int]]) -> dict[str, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def offline(path: Path, texts: list[str], batch_sizes: list[int]) -> dict[str, Any]:
    """Sentences/s of the runtime called directly, by batch size (sorted by length)."""
    from tensorfab.optimize.runtime import load_runtime

    runtime = load_runtime(path, "auto", "cpu", threads=1)
    rows = sorted(token_ids(path, texts), key=len)
    runtime(padded(rows[:8]))  # warm
    by_size, cpu_ms = {}, {}
    for size in batch_sizes:
        feeds = [padded(rows[i : i + size]) for i in range(0, len(rows), size)]
        for _ in range(PASSES):  # the best pass: the machine is shared
            start, cpu = time.perf_counter(), time.process_time()
            for feed in feeds:
                runtime(feed)
            rate = len(rows) / (time.perf_counter() - start)
            by_size[str(size)] = max(by_size.get(str(size), 0.0), rate)
            ms = 1e3 * (time.process_time() - cpu) / len(rows)
            cpu_ms[str(size)] = min(cpu_ms.get(str(size), ms), ms)
    best = max(by_size, key=by_size.__getitem__)
    return {
        "sentences_per_s": by_size,
        "cpu_ms_per_sentence": cpu_ms,
        "best_batch": int(best),
        "best": by_size[best],
        "best_cpu_ms": min(cpu_ms.values()),
    }


def json_child(cmd: list[str], src: str | None) -> dict:
    """``cmd`` (a benchmark script run by this Python) with one thread, importing tensorfab
    from ``src`` (a source tree; None: the installed one); the JSON its last line prints."""
    env = {**os.environ, **ONE_THREAD}
    env.pop("PYTHONPATH", None)
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:5])} ... failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_child(args: argparse.Namespace, src: str | None, *flags: str) -> dict:
    """This script in a child pinned to the server's core (:func:`json_child`)."""
    cmd = ["taskset", "-c", str(args.server_cpu), sys.executable, __file__, args.model]
    cmd += [*flags, "--texts", args.texts]
    cmd += ["--requests", str(args.requests), "--batch-sizes", args.batch_sizes]
    return json_child(cmd, src)


def start_server(repo: Path, port: int, cpu: int, src: str | None) -> subprocess.Popen:
    """``tensorfab serve repo`` pinned to ``cpu``, one compute thread, once ready."""
    # here and below, the load side's imports are in the functions that use them: the
    # children import only what exporting and offline need, so an older source tree (whose
    # loadgen lacks them) can be the compared side
    from tensorfab.serve.loadgen import wait_until_ready

    env = {**os.environ, **ONE_THREAD}
    env.pop("PYTHONPATH", None)
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    cmd = ["taskset", "-c", str(cpu), sys.executable, "-m", "tensorfab.cli.main", "serve"]
    cmd += [str(repo), "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if wait_until_ready(f"http://127.0.0.1:{port}", proc):
        return proc
    proc.kill()
    err = proc.stderr.read().decode() if proc.stderr else ""
    raise SystemExit(f"server did not start: {err[-2000:]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of a process, by thread id; the main thread (the
    event loop: HTTP, JSON, the answers' rows) is ``loop``. Python does not name its
    threads for the OS, so the compute thread is told apart by its share (the busiest)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        name = "loop" if task.name == str(pid) else task.name
        out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def thread_shares(before: dict[str, float], after: dict[str, float], answered: int) -> dict:
    """CPU ms per answered request of the loop, the busiest other thread (``compute``) and
    all the others together (``other``: tokenizing in the decode pool, runtime helpers)."""
    used = {t: after[t] - before.get(t, 0.0) for t in after}
    loop = used.pop("loop", 0.0)
    compute = max(used.values(), default=0.0)
    other = sum(used.values()) - compute
    return {
        k: 1e3 * v / answered for k, v in (("loop", loop), ("compute", compute), ("other", other))
    }


def batch_metrics(port: int) -> dict[str, float]:
    """Computed batches (length groups), their rows and compute seconds, and the batches
    taken from the queue with their requests (absent from servers without the metric)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    wanted = {
        "tensorfab_batch_size_count": "batches",
        "tensorfab_batch_size_sum": "rows",
        "tensorfab_compute_duration_seconds_sum": "compute_s",
        "tensorfab_batch_requests_count": "taken_batches",
        "tensorfab_batch_requests_sum": "taken_requests",
    }
    out = {}
    for line in text.splitlines():
        name = line.split("{")[0]
        if name in wanted:
            out[wanted[name]] = float(line.rsplit(" ", 1)[1])
    return out


async def _raw_client(
    port: int, requests: list[bytes], counter: list[int], out: list[tuple[float, int]]
) -> None:
    """One keep-alive connection sending the next request as soon as an answer is in."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while counter[0] < len(requests):
            i = counter[0]
            counter[0] += 1
            start = time.perf_counter()
            writer.write(requests[i])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            out.append((time.perf_counter() - start, status))
    finally:
        writer.close()


def raw_load(port: int, bodies: list[bytes], clients: int) -> dict[str, Any]:
    """``loadgen``'s closed loop with a client that costs far less per request than the
    server (one write, one header scan per request; uvloop), so that on a shared core the
    load generator is not what limits the served rate; summarised by ``loadgen``."""
    import uvloop

    from tensorfab.serve.loadgen import summarize

    head = "POST /v1/models/ner:predict HTTP/1.1\r\nhost: 127.0.0.1\r\n"
    head += "content-type: application/json\r\ncontent-length: {}\r\n\r\n"
    requests = [head.format(len(b)).encode() + b for b in bodies]
    results: list[tuple[float, int]] = []

    async def run() -> float:
        start = time.perf_counter()
        counter = [0]
        await asyncio.gather(
            *(_raw_client(port, requests, counter, results) for _ in range(clients))
        )
        return time.perf_counter() - start

    seconds = uvloop.run(run())
    return summarize(results, seconds, clients)


def served(repo: Path, args: argparse.Namespace, bodies: list[bytes], src: str | None) -> dict:
    from tensorfab.serve.loadgen import LoadSpec, run_load

    server = start_server(repo, args.port, args.server_cpu, src)
    try:
        url = f"http://127.0.0.1:{args.port}/v1/models/ner:predict"
        if args.client == "raw":  # warm
            raw_load(args.port, bodies[:128], args.clients)
        else:
            run_load(LoadSpec(url, bodies[:64], clients=args.clients, requests=128))
        before, cpu, load = batch_metrics(args.port), cpu_seconds(server.pid), load_average()
        threads = thread_cpu_seconds(server.pid)
        if args.client == "raw":
            result = raw_load(args.port, bodies, args.clients)
        else:
            result = run_load(LoadSpec(url, bodies, args.clients, len(bodies), args.max_seconds))
        cpu = cpu_seconds(server.pid) - cpu
        per_thread = thread_cpu_seconds(server.pid)
        after = batch_metrics(args.port)
        batches = {k: after[k] - before.get(k, 0.0) for k in after}
        answered = max(result["succeeded"], 1)
        return {
            **result,
            "server_cpu_ms_per_request": 1e3 * cpu / answered,
            "thread_cpu_ms_per_request": thread_shares(threads, per_thread, answered),
            "server_cpu_busy": cpu / result["seconds"],  # near its core's share: server-bound
            "batches": batches,
            "load_average_1min": [load, load_average()],
        }
    finally:
        server.terminate()
        server.wait(timeout=60)


def serving_repo(path: Path, variant: str, max_padding: str, where: Path) -> Path:
    """A repository at ``where`` serving the version at ``path`` as model ``ner``."""
    shutil.copytree(path, where / "ner" / "1")
    config = SERVE_CONFIG + f"max_padding: {max_padding}\n"
    config += "threads: 1\n" if variant != "torch" else ""
    with atomic_path(where / "ner" / "config.yaml") as part:
        part.write_text(config)
    return where


def measure_variant(variant: str, args: argparse.Namespace, tmp: Path, texts: list[str]) -> dict:
    """Each side's runtime exported by its own source tree and measured offline by it, so a
    fraction is a side's served rate over its own runtime's offline best."""
    paddings = {"this": args.max_padding, "compare": args.compare_max_padding or args.max_padding}
    sources = {"this": args.src} | ({"compare": args.compare_src} if args.compare_src else {})
    out: dict[str, Any] = {"served": {}}
    repos = {}
    for name, src in sources.items():
        where = tmp / f"export-{name}"
        path = Path(run_child(args, src, "--export-child", variant, str(where))["path"])
        repos[name] = serving_repo(path, variant, paddings[name], tmp / f"repo-{variant}-{name}")
        load = load_average()
        off = run_child(args, src, "--offline-child", str(path))
        off["load_average_1min"] = [load, load_average()]
        out["offline" if name == "this" else f"offline_{name}"] = off
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    for round_ in range(args.rounds):
        for name, src in sources.items():
            got = served(repos[name], args, bodies, src)
            out["served"].setdefault(name, []).append(got)
            print(variant, name, round_, f"{got['requests_per_s']:.1f} req/s", got["failed"])
    for name, runs in out["served"].items():
        off = out["offline" if name == "this" else f"offline_{name}"]
        best = max(r["requests_per_s"] for r in runs)
        out[f"fraction_{name}"] = best / off["best"]
        out[f"fractions_{name}"] = [r["requests_per_s"] / off["best"] for r in runs]
        cpu = min(r["server_cpu_ms_per_request"] for r in runs)
        out[f"cpu_fraction_{name}"] = off["best_cpu_ms"] / cpu
    return out


def sentences(path: str, limit: int) -> list[str]:
    return [" ".join(ex.words) for ex in read_conll(Path(path))][:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="run directory or model package (token classification)")
    parser.add_argument("--texts", required=True, help="CoNLL file whose sentences are sent")
    parser.add_argument("--variants", default="torch,fp32,int8-dynamic")
    parser.add_argument("--requests", type=int, default=1000, help="sentences, one a request")
    parser.add_argument("--batch-sizes", default="8,16,32,64")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument(
        "--client",
        choices=["raw", "loadgen"],
        default="raw",
        help="raw: a minimal keep-alive HTTP client (default); loadgen: tensorfab perf's",
    )
    parser.add_argument("--rounds", type=int, default=1, help="served runs per source")
    parser.add_argument("--compare-src", help="also serve from this src folder (before/after)")
    parser.add_argument(
        "--src", help="serve 'this' from this src folder (default: the installed tensorfab)"
    )
    parser.add_argument("--max-padding", default="0.25", help="the served config's (this)")
    parser.add_argument("--compare-max-padding", help="the compare side's (default: the same)")
    parser.add_argument("--max-seconds", type=float, default=240)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--out", default="benchmarks/results/serve-efficiency.json")
    parser.add_argument("--offline-child", help=argparse.SUPPRESS)
    parser.add_argument("--export-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    texts = sentences(args.texts, args.requests)
    if args.offline_child:
        sizes = [int(s) for s in args.batch_sizes.split(",")]
        print(json.dumps(offline(Path(args.offline_child), texts, sizes)))
        return
    if args.export_child:
        variant, where = args.export_child
        print(json.dumps({"path": str(version_dir(args.model, variant, Path(where)))}))
        return
    os.sched_setaffinity(0, {args.client_cpu})  # the load generator's core
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(","):
            results[variant] = measure_variant(variant, args, Path(tmp), texts)
            write_summary(args, texts, results)  # each runtime's result kept as it comes
    for variant, r in results.items():
        line = f"{variant}: offline best {r['offline']['best']:.1f}/s (batch "
        line += f"{r['offline']['best_batch']}), served fraction {r['fraction_this']:.2f}"
        line += f", CPU-time fraction {r['cpu_fraction_this']:.2f}"
        if "fraction_compare" in r:
            line += f" (compare {r['fraction_compare']:.2f}, {r['cpu_fraction_compare']:.2f})"
        print(line + requests_per_batch(r))
    print(f"-> {args.out}")


def requests_per_batch(result: dict[str, Any]) -> str:
    """``; requests per batch taken: this 31.6 (compare 24.0)`` from the served runs' counts."""
    parts = []
    for name, runs in result["served"].items():
        taken = sum(r["batches"].get("taken_batches", 0.0) for r in runs)
        if taken:
            parts.append(f"{name} {sum(r['batches']['taken_requests'] for r in runs) / taken:.1f}")
    return f"; requests per batch taken: {', '.join(parts)}" if parts else ""


def write_summary(args: argparse.Namespace, texts: list[str], results: dict[str, Any]) -> None:
    summary = {
        "device": f"cpu {platform.machine()} ({platform.processor() or 'unknown'}), "
        f"{os.cpu_count()} cores; server and offline on core {args.server_cpu}, one thread; "
        f"load generator on core {args.client_cpu}",
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python", *sys.argv]),
        "client": args.client,
        "model": str(args.model),
        "texts": f"{args.texts} (first {len(texts)} sentences, one per request)",
        "serve_config": SERVE_CONFIG,
        "max_padding": {"this": args.max_padding, "compare": args.compare_max_padding},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(args.out)) as part:
        part.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
