"""Part 1's 200-job load through the Ray backend, on a private Ray with 8 declared GPUs.

Usage (from the repository root, as root: Ray runs in a network namespace that holds
nothing but loopback, so nothing it opens can reach another machine):

    unshare -n -- sh -c 'ip link set lo up && exec nice -n 10 .venv/bin/python \
        benchmarks/jobs_ray_load.py --out benchmarks/results/cpu-2026-11-30-jobs-ray-load.json'

Starts one local Ray (node address 127.0.0.1, no dashboard, usage statistics off, its own
temporary directory and HOME; 8 GPUs and 16 CPUs declared, so jobs run on the CPU while Ray
places them as if the GPUs were there), then runs ``benchmarks/jobs_load.py``'s workload
against ``tensorfab jobs up --backend ray --address <that Ray>``. Besides part 1's checks
(every job exactly once, no device held twice by the daemon's and the supervisors' times,
no partial gang) it checks what Ray handed out: the ``CUDA_VISIBLE_DEVICES`` each job was
launched with (Ray's GPU ids, recorded in the job's ``launch.json``) holds as many GPUs as
the job asked for, and no two jobs whose processes overlapped in time shared one.

The Ray tests (tests/integration/ray) call :func:`start_ray` (two Ray nodes of 4 GPUs) and
:func:`run_ray_load` with 12 jobs against the one Ray instance they share.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tensorfab.files import write_text_atomic
from tensorfab.jobs.supervisor import EXIT, LAUNCH, read_json

HERE = Path(__file__).resolve().parent


def _jobs_load() -> Any:
    spec = importlib.util.spec_from_file_location("jobs_load", HERE / "jobs_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CLUSTER: list[Any] = []  # the ray.cluster_utils.Cluster of a several-node start_ray


def start_ray(workdir: Path, gpus: int = 8, cpus: int = 16, nodes: int = 1) -> str:
    """A private local Ray on 127.0.0.1 (this process is its driver); returns its address.

    With ``nodes`` > 1 it is a cluster of that many Ray nodes (raylets) on this machine,
    each declaring its share of the GPUs and CPUs, as machines of a cluster would. Its
    temporary directory is short (Unix socket paths are limited to 107 bytes) and its own,
    removed by :func:`stop_ray`; HOME points into ``workdir`` (Ray writes its auth token
    there).
    """
    import ray

    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    temp = tempfile.mkdtemp(prefix="tfray-", dir="/tmp")
    os.environ["TENSORFAB_TEST_RAY_TEMP"] = temp
    common = {"include_dashboard": False, "namespace": "tensorfab", "log_to_driver": False}
    if nodes == 1:
        ray.init(
            num_cpus=cpus, num_gpus=gpus, _node_ip_address="127.0.0.1", _temp_dir=temp, **common
        )
        return ray.get_runtime_context().gcs_address
    from ray.cluster_utils import Cluster

    os.environ["RAY_TMPDIR"] = temp  # where the cluster writes its address file, not /tmp/ray
    (Path(temp) / "ray").mkdir()
    node = {"num_cpus": cpus // nodes, "num_gpus": gpus // nodes, "node_ip_address": "127.0.0.1"}
    node["temp_dir"] = temp
    head = {**node, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    _CLUSTER.append(cluster)
    for _ in range(nodes - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    ray.init(
        address=cluster.address,
        _node_ip_address="127.0.0.1",
        namespace="tensorfab",
        log_to_driver=False,
    )
    return cluster.address


def stop_ray() -> None:
    """Stop the Ray :func:`start_ray` started (its processes end) and remove its files."""
    import ray

    ray.shutdown()
    while _CLUSTER:
        _CLUSTER.pop().shutdown()
    temp = os.environ.pop("TENSORFAB_TEST_RAY_TEMP", "")
    if temp.startswith("/tmp/tfray-"):
        shutil.rmtree(temp, ignore_errors=True)


def node_gpus(folder: Path) -> list[tuple[str, float, float]]:
    """``NODE:GPU`` Ray handed a job's runners (its folder, and a gang's ``node*`` folders
    of its other nodes), each with its process times."""
    held = []
    for part in [folder, *sorted(folder.glob("node*"))]:
        launch, ended = read_json(part / LAUNCH) or {}, read_json(part / EXIT) or {}
        env = launch.get("env", {})
        node = env.get("TENSORFAB_RAY_NODE", "")[:8]
        for gpu in [v for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v]:
            held.append((f"{node}:{gpu}", ended.get("started_at", 0.0), ended.get("ended_at", 0.0)))
    return held


def visible_device_clashes(state_dir: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ray's GPU ids per job (from launch.json, by node) against the job's gang and the others."""
    intervals: dict[str, list[tuple[float, float, int]]] = {}
    wrong_count = []
    for row in rows:
        held = node_gpus(state_dir / "jobs" / str(row["id"]))
        if len(held) != row["gpus"]:
            wrong_count.append(row["id"])
        for gpu, started, ended in held:
            intervals.setdefault(gpu, []).append((started, ended, row["id"]))
    overlaps = {g: _jobs_load()._overlaps(iv) for g, iv in intervals.items()}
    return {
        "visible_devices_not_the_gang": wrong_count,
        "visible_device_overlaps": {g: c for g, c in overlaps.items() if c},
        "ray_gpu_ids_used": sorted(intervals),
    }


def per_job_cost(workdir: Path, jobs: int = 5) -> dict[str, Any]:
    """Where a sub-second job's time goes on Ray: a new runner (Ray worker process) until Ray
    reports it placed, and an attempt (supervisor + the job's process, ``python -c pass``)
    on a new runner and on a warm one; medians of ``jobs`` each, in seconds."""
    import statistics

    import ray

    from tensorfab.jobs.backend import Launch
    from tensorfab.jobs.ray_backend import RayBackend

    backend = RayBackend(ray.get_runtime_context().gcs_address)
    new_s, first_s, warm_s, reused = [], [], [], []
    for i in range(jobs):
        launch = Launch(i, 1, workdir / "cost" / str(i), [sys.executable, "-c", "pass"], ".")
        backend.pool.reap(time.time(), keep_s=-1)  # no warm runner: a new one
        started = time.monotonic()
        handle = backend.start(launch)
        ray.get(handle.process.ready)
        new_s.append(time.monotonic() - started)
        ray.get(handle.process.results)
        first_s.append(time.monotonic() - started - new_s[-1])
        backend.poll(handle)
        started = time.monotonic()
        warm = backend.start(Launch(i, 2, launch.job_dir, launch.argv, "."))
        ray.get(warm.process.results)
        warm_s.append(time.monotonic() - started)
        reused.append(warm.process.runners[0].name == handle.process.runners[0].name)
        backend.poll(warm)
    backend.close()
    return {
        "new_runner_placed_s": round(statistics.median(new_s), 2),
        "attempt_on_new_runner_s": round(statistics.median(first_s), 2),
        "attempt_on_warm_runner_s": round(statistics.median(warm_s), 2),
        "jobs": jobs,
        "warm_runner_reused": all(reused),
    }


def run_ray_load(workdir: Path, address: str, n_jobs: int, **kw: Any) -> dict[str, Any]:
    """Part 1's workload through ``jobs up --backend ray --address ADDRESS``."""
    daemon_args = ["--backend", "ray", "--address", address]
    result = _jobs_load().run_load(workdir, n_jobs, daemon_args=daemon_args, **kw)
    ray_checks = visible_device_clashes(workdir / "state", result.pop("rows"))
    result["checks"].update({k: v for k, v in ray_checks.items() if k != "ray_gpu_ids_used"})
    result["ray_gpu_ids_used"] = ray_checks["ray_gpu_ids_used"]
    result["all_checks_pass"] = not any(result["checks"].values())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=1500.0, help="for all jobs to end, s")
    parser.add_argument("--out", type=Path, help="write the JSON summary here")
    parser.add_argument("--nodes", type=int, default=1, help="Ray nodes sharing the 8 GPUs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobs-ray-load-") as tmp:
        started = time.monotonic()
        address = start_ray(Path(tmp), nodes=args.nodes)
        ray_start_s = time.monotonic() - started
        try:
            cost = per_job_cost(Path(tmp))
            result = run_ray_load(Path(tmp), address, args.jobs, timeout_s=args.timeout)
        finally:
            stop_ray()
    result = {
        "benchmark": "jobs-ray-load",
        "date": datetime.date.today().isoformat(),
        "device": f"cpu ({platform.processor() or platform.machine()}), 8 GPUs declared to Ray "
        f"on {args.nodes} node(s)",
        "command": "python benchmarks/jobs_ray_load.py " + " ".join(sys.argv[1:]),
        "target": "every job exactly once, no overlapping CUDA_VISIBLE_DEVICES, no partial gang",
        "ray_start_s": round(ray_start_s, 2),
        "per_job_cost": cost,
        "load_average_1min_after": float(Path("/proc/loadavg").read_text().split()[0]),
        **result,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        write_text_atomic(args.out, text + "\n")
    return 0 if result["all_checks_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
