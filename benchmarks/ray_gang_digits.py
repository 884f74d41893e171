"""A digits DDP training gang through the Ray jobs backend, across two Ray nodes.

Usage (from the repository root, as root: Ray runs in a network namespace that holds
nothing but loopback):

    unshare -n -- sh -c 'ip link set lo up && exec nice -n 10 .venv/bin/python \
        benchmarks/ray_gang_digits.py --out benchmarks/results/cpu-2026-11-30-ray-gang-digits.json'

Starts a private Ray of two nodes (raylets) on 127.0.0.1 with one declared GPU each, then
``tensorfab jobs up --backend ray`` and one training job of 2 GPUs: more than a node has,
so the backend places a placement group of one bundle per node and each node's runner runs
``torchrun --nnodes 2 --node-rank i --nproc_per_node 1`` with the c10d rendezvous on the
first node. It also trains the same spec in one process, and reports both test accuracies,
the world size the gang's report names, and each node's Ray node id and rendezvous.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tensorfab.files import write_text_atomic

HERE = Path(__file__).resolve().parent
DIGITS = HERE.parent / "examples" / "digits-lenet.yaml"
SETTINGS = ["train.epochs=4", "train.device=cpu"]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("jobs_ray_load", HERE / "jobs_ray_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_gang(work: Path, address: str, timeout_s: float) -> dict[str, Any]:
    """The 2-GPU training job through the Ray backend; its report and each node's launch."""
    from tensorfab.jobs.client import JobsClient
    from tensorfab.jobs.daemon import DaemonProcess
    from tensorfab.spec import dump_spec, load_spec

    spec = load_spec(DIGITS, [*SETTINGS, f"output.runs_dir={work / 'runs'}", "output.name=gang"])
    job = {"kind": "train", "cwd": str(work), "spec_yaml": dump_spec(spec), "gpus": 2, "cpus": 2}
    args = ["--backend", "ray", "--address", address]
    with DaemonProcess(work / "state", args, cwd=work) as daemon, JobsClient(daemon.url) as c:
        job_id = c.submit(job)["id"]
        deadline = time.monotonic() + timeout_s
        while c.show(job_id)["state"] not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gang did not end in {timeout_s} s")
            time.sleep(1.0)
        show = c.show(job_id)
    folder = work / "state" / "jobs" / str(job_id)
    nodes = []
    for part in [folder, *sorted(folder.glob("node*"))]:
        launch = json.loads((part / "launch.json").read_text())
        keys = ("TENSORFAB_RAY_NODE", "CUDA_VISIBLE_DEVICES", "TENSORFAB_RDZV_ENDPOINT")
        argv = [a for a in launch["argv"] if a.startswith(("--nnodes", "--node-rank", "--nproc"))]
        nodes.append({**{k: launch["env"].get(k) for k in keys}, "torchrun": argv})
    report = json.loads((work / "runs" / "gang" / "report.json").read_text())
    return {
        "state": show["state"],
        "world_size": report["hardware"]["world_size"],
        "steps": report["steps"],
        "accuracy": float(report["metrics"]["test"]["accuracy"]),
        "nodes": nodes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1200.0, help="for the gang to end, s")
    parser.add_argument("--out", type=Path, help="write the JSON summary here")
    args = parser.parse_args()
    bench = _bench()
    from tensorfab.engine.train import train
    from tensorfab.spec import load_spec

    with tempfile.TemporaryDirectory(prefix="ray-gang-") as tmp:
        work = Path(tmp)
        address = bench.start_ray(work, gpus=2, cpus=8, nodes=2)
        try:
            started = time.monotonic()
            gang = run_gang(work, address, args.timeout)
            gang_s = time.monotonic() - started
        finally:
            bench.stop_ray()
        single_spec = load_spec(DIGITS, [*SETTINGS, f"output.runs_dir={work}", "output.name=one"])
        single = json.loads((train(single_spec, quiet=True).run_dir / "report.json").read_text())
    result = {
        "benchmark": "ray-gang-digits",
        "date": datetime.date.today().isoformat(),
        "device": "cpu, 2 Ray nodes on one machine, 1 GPU declared on each",
        "command": "python benchmarks/ray_gang_digits.py " + " ".join(sys.argv[1:]),
        "gang": gang,
        "gang_wall_s": round(gang_s, 1),
        "single_accuracy": float(single["metrics"]["test"]["accuracy"]),
        "load_average_1min_after": float(Path("/proc/loadavg").read_text().split()[0]),
    }
    result["accuracy_gap"] = round(abs(gang["accuracy"] - result["single_accuracy"]), 4)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        write_text_atomic(args.out, text + "\n")
    return 0 if gang["state"] == "succeeded" and result["accuracy_gap"] <= 0.03 else 1


if __name__ == "__main__":
    sys.exit(main())
