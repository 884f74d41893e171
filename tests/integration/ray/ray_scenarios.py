"""Every Ray scenario of the tests against ONE Ray instance: ``python ray_scenarios.py OUT WORK``.

Why one script and not one Ray per test: starting Ray costs many seconds on a shared
machine, and Ray must run inside a network namespace that holds nothing but loopback
(``testkit.in_loopback_namespace``); pytest itself stays outside it. So ``test_ray.py``
runs this script once (a module fixture), in the namespace, and each of its tests asserts on
one part of the JSON written to OUT:

* ``namespace``: the interfaces the namespace has (only ``lo``) and Ray's address;
* ``jobs``: part 1's load (8 sleep jobs, 1/2/4-GPU gangs) through ``jobs up --backend ray``
  on 8 GPUs declared to Ray (two nodes of 4): each job exactly once, Ray's
  ``CUDA_VISIBLE_DEVICES`` never shared by two running jobs, no partial gang;
* ``preempt``: a 1-GPU digits training job preempted by an urgent 8-GPU gang, which spans
  both Ray nodes (a placement group of one bundle per node, all or nothing): SIGTERM
  through its runner, exit 143, requeued, resumed from its checkpoint; the job folders in a
  ``--jobs-dir`` apart from the state dir;
* ``train``: single-process digits, then ``train_on_ray`` with 2 workers (gloo) while one
  worker is SIGKILLed after the first checkpoint Ray Train kept;
* ``torchrun``: two ``torchrun --nnodes 2`` agents (no Ray) meet through the c10d
  rendezvous on 127.0.0.1 and train digits; the train scenario's single process is the
  baseline both are held to (same settings), so it is trained once;
* ``sockets``: ``ss -tunap`` sampled while all that ran: every TCP/UDP socket's peer.

The trainings (Ray Train, torchrun) run on threads beside the jobs scenarios (their
start-up is mostly waiting). Each scenario's failure is recorded as text under its key, so
one failure does not hide the others. Every process this script starts ends before it
exits (``ray.shutdown``, the daemons' ``close``); bounded waits everywhere.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
DIGITS = REPO / "examples" / "digits-lenet.yaml"
JOBS = 8  # sleep jobs of the load (seed 1: gangs of 2, 2, 2, 2, 1, 4, 1, 1 GPUs)
CHECKPOINT_EVERY = 5
# small and fast on a loaded CPU: 4 epochs of 23 steps (12 for each of two workers)
TRAIN_SETTINGS = [
    "train.epochs=4",
    "train.device=cpu",
    f"train.checkpoint_every_steps={CHECKPOINT_EVERY}",
    "train.log_every_steps=1",
]


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


# -- sockets --------------------------------------------------------------------------------


class SocketSampler(threading.Thread):
    """``ss -tunap`` every 0.5 s: peers of every TCP/UDP socket in this namespace."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.samples = 0
        self.sockets = 0
        self.processes: set[str] = set()
        self.outside: list[str] = []

    def run(self) -> None:
        while not self.halt.wait(0.5):
            lines = subprocess.run(
                ["ss", "-tunapH"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.splitlines()
            self.samples += 1
            for line in lines:
                self._take(line)

    def _take(self, line: str) -> None:
        fields = line.split()
        if len(fields) < 6:
            return
        self.sockets += 1
        self.processes.update(re.findall(r'\("([^"]+)",pid=', line))
        peer = fields[5].rsplit(":", 1)[0].strip("[]")
        if peer in ("*", "0.0.0.0", "::") or _loopback(peer):
            return
        self.outside.append(line)

    def summary(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "sockets_seen": self.sockets,
            "processes": sorted(self.processes),
            "peers_outside_loopback": self.outside[:20],
        }


def _loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


# -- scenarios ------------------------------------------------------------------------------


def jobs_scenario(work: Path, address: str) -> dict[str, Any]:
    bench = _load("jobs_ray_load", REPO / "benchmarks" / "jobs_ray_load.py")
    started = time.monotonic()
    cost = bench.per_job_cost(work, jobs=1)  # a new runner, then the same one warm
    result = bench.run_ray_load(work, address, JOBS, seed=1, timeout_s=600)
    result["per_job_cost"] = cost
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def preempt_scenario(work: Path, address: str) -> dict[str, Any]:
    """A 1-GPU training job preempted by an urgent 8-GPU gang (a sleep job)."""
    from tensorfab.jobs.client import JobsClient
    from tensorfab.jobs.daemon import DaemonProcess
    from tensorfab.spec import dump_spec, load_spec

    spec = load_spec(DIGITS, [*TRAIN_SETTINGS, "train.epochs=2", "output.name=victim"])
    victim_job = {"kind": "train", "cwd": str(work), "spec_yaml": dump_spec(spec), "gpus": 1}
    urgent_job = {"kind": "sleep", "cwd": str(work), "sleep_s": 0.5, "gpus": 8}
    jobs_dir = work / "shared" / "jobs"  # apart from the daemon's state dir
    args = ["--backend", "ray", "--address", address, "--test-jobs", "--jobs-dir", str(jobs_dir)]
    with DaemonProcess(work / "state", args, cwd=work) as daemon, JobsClient(daemon.url) as c:
        victim = c.submit({**victim_job, "priority": "low"})["id"]
        ckpt = work / "runs" / "victim" / "checkpoints" / "last.pt"
        wait_for(ckpt.is_file, 600, "the victim's first checkpoint")
        urgent = c.submit({**urgent_job, "priority": "urgent"})["id"]
        final = ("succeeded", "failed", "cancelled")
        shows = wait_for(lambda: _both_ended(c, victim, urgent, final), 900, "both jobs to end")
    launch = json.loads((jobs_dir / str(victim) / "launch.json").read_text())
    steps = [r["step"] for r in _records(work / "runs" / "victim") if r["kind"] == "train"]
    return {
        "victim": _brief(shows[0]),
        "urgent": _brief(shows[1]),
        "victim_last_argv": launch["argv"][-3:],
        "victim_train_steps": steps,
        "victim_preempted_at": _event_at(shows[0], "preempted"),
        "gang_nodes": _gang_nodes(jobs_dir / str(urgent)),
        "state_dir_job_folders": sorted(p.name for p in (work / "state").glob("jobs/*")),
    }


def _event_at(show: dict[str, Any], word: str) -> float | None:
    return next((e["at"] for e in show["events"] if word in e["reason"]), None)


def _gang_nodes(folder: Path) -> list[dict[str, Any]]:
    """Each node of a gang: its Ray node, GPUs, rendezvous settings and process times."""
    nodes = []
    for part in [folder, *sorted(folder.glob("node*"))]:
        env = json.loads((part / "launch.json").read_text())["env"]
        ended = json.loads((part / "exit.json").read_text())
        keys = ("TENSORFAB_RAY_NODE", "CUDA_VISIBLE_DEVICES", "TENSORFAB_NODE_RANK")
        keys += ("TENSORFAB_NNODES", "TENSORFAB_RDZV_ENDPOINT")
        nodes.append({**{k: env.get(k) for k in keys}, **ended})
    return nodes


def _both_ended(client: Any, a: int, b: int, final: tuple[str, ...]) -> list[dict] | None:
    shows = [client.show(a), client.show(b)]
    return shows if all(s["state"] in final for s in shows) else None


def _brief(show: dict[str, Any]) -> dict[str, Any]:
    keys = ("state", "attempt", "preemptions", "exit_code", "devices", "gpus")
    return {**{k: show.get(k) for k in keys}, "events": [e["reason"] for e in show["events"]]}


def _records(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _accuracy(run: Path) -> float:
    report = json.loads((run / "report.json").read_text())
    return float(report["metrics"]["test"]["accuracy"])


def _train_workers() -> list[int]:
    """Pids of Ray Train's worker processes (their title names RayTrainWorker)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                title = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"RayTrainWorker" in title:
                pids.append(int(proc.name))
    return sorted(pids)


def _registered_step(storage: Path) -> int | None:
    """The step of the checkpoint Ray Train's controller has registered (restores from)."""
    for snapshot in storage.glob("*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result")
        except ValueError:  # being written
            continue
        if latest:
            return int(latest["metrics"]["step"])
    return None


def _kill_a_worker_after_a_checkpoint(work: Path, name: str, log: dict[str, Any]) -> None:
    """SIGKILL one training worker once Ray Train has registered a checkpoint of the run.

    A checkpoint folder appears in Ray Train's storage before its controller has taken
    every worker's report; a restart restores only what the controller registered (its
    ``checkpoint_manager_snapshot.json``), so the kill waits for that.
    """
    storage = work / "runs" / ".ray-train"
    step = wait_for(lambda: _registered_step(storage), 900, "a registered checkpoint")
    steps = [r["step"] for r in _records(work / "runs" / name) if r["kind"] == "train"]
    pids = _train_workers()
    log.update(pids=pids, registered_step=step, last_step_before_kill=max(steps))
    os.kill(pids[-1], signal.SIGKILL)
    log["killed"] = pids[-1]


def train_scenario(work: Path, address: str) -> dict[str, Any]:
    """Single-process digits (on a thread, beside) and 2 Ray Train workers, one killed."""
    from tensorfab.engine.ray_train import train_on_ray
    from tensorfab.engine.train import train
    from tensorfab.spec import load_spec

    runs = f"output.runs_dir={work / 'runs'}"
    single = load_spec(DIGITS, [*TRAIN_SETTINGS, runs, "output.name=single"])
    baseline: dict[str, Any] = {}

    def train_single() -> None:
        baseline["run"] = train(single, quiet=True).run_dir

    beside = threading.Thread(target=_guard(train_single, baseline))
    beside.start()
    kill: dict[str, Any] = {}
    killer = threading.Thread(
        target=_guard(_kill_a_worker_after_a_checkpoint, kill), args=(work, "ray2", kill)
    )
    killer.start()
    spec = load_spec(DIGITS, [*TRAIN_SETTINGS, runs, "output.name=ray2"])
    train_on_ray(spec, address, 2, max_failures=2)
    killer.join(timeout=600)
    beside.join(timeout=600)
    records = _records(work / "runs" / "ray2")
    resumes = [i for i, r in enumerate(records) if r["kind"] == "resume"]
    after = (
        [r["step"] for r in records[resumes[0] + 1 :] if r["kind"] == "train"] if resumes else []
    )
    return {
        "single_accuracy": _accuracy(baseline["run"]) if "run" in baseline else baseline,
        "ray_accuracy": _accuracy(work / "runs" / "ray2"),
        "kill": kill,
        "resume_steps": [records[i]["step"] for i in resumes],
        "first_step_after_resume": after[0] if after else None,
        "train_steps": [r["step"] for r in records if r["kind"] == "train"],
    }


def torchrun_command(port: int, runs: Path) -> list[str]:
    """One node's agent of ``torchrun --nnodes 2`` (no Ray): 1 process, c10d rendezvous at
    127.0.0.1:port with the other node, the store on loopback too (``--local-addr``)."""
    sets = [a for s in [*TRAIN_SETTINGS, f"output.runs_dir={runs}"] for a in ("--set", s)]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--rdzv-id=digits-2-nodes",
        "--local-addr=127.0.0.1",
        "-m",
        "tensorfab.cli.main",
        "train",
        str(DIGITS),
        *sets,
        "--name",
        "nodes",
        "--quiet",
    ]


def torchrun_scenario(work: Path, address: str) -> dict[str, Any]:
    """Two ``torchrun --nnodes 2`` agents, as two machines would run them (no Ray); the
    single-process baseline is the train scenario's (same settings)."""
    import socket

    work.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = torchrun_command(port, work / "runs")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(command, cwd=work, env=env) for _ in range(2)]
    codes = [node.wait(timeout=900) for node in nodes]
    report = json.loads((work / "runs" / "nodes" / "report.json").read_text())
    return {
        "exit_codes": codes,
        "world_size": report["hardware"]["world_size"],
        "steps": report["steps"],
        "accuracy": float(report["metrics"]["test"]["accuracy"]),
    }


def _guard(fn: Callable[..., None], log: dict[str, Any]) -> Callable[..., None]:
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log["error"] = traceback.format_exc()[-2000:]

    return run


def _scenario(results: dict[str, Any], key: str, fn: Callable[..., Any], *args: Any) -> None:
    started = time.monotonic()
    try:
        results[key] = fn(*args)
    except Exception:
        results[key] = {"error": traceback.format_exc()[-4000:]}
    results.setdefault("seconds", {})[key] = round(time.monotonic() - started, 1)
    import ray

    # what the scenario left held: a later one waits for it (empty when all was released)
    free, total = ray.available_resources(), ray.cluster_resources()
    held = {k: total[k] - free.get(k, 0.0) for k in ("CPU", "GPU") if k in total}
    results.setdefault("held_after", {})[key] = {k: v for k, v in held.items() if v}


SCENARIOS = {
    "jobs": jobs_scenario,
    "preempt": preempt_scenario,
    "train": train_scenario,
    "torchrun": torchrun_scenario,
}


def _run(results: dict[str, Any], keys: list[str], only: list[str], work: Path, addr: str) -> None:
    for key in keys:
        if key in only:
            _scenario(results, key, SCENARIOS[key], work / key, addr)


def main(out: Path, work: Path) -> int:
    bench = _load("jobs_ray_load", REPO / "benchmarks" / "jobs_ray_load.py")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False)
    started = time.monotonic()
    address = bench.start_ray(work, nodes=2)  # two Ray nodes of 4 GPUs and 8 CPUs
    results: dict[str, Any] = {
        "namespace": {
            "links": [line.split(":")[1].strip() for line in links.stdout.splitlines()],
            "address": address,
            "ray_start_s": round(time.monotonic() - started, 1),
        }
    }
    sampler = SocketSampler()
    sampler.start()
    only = os.environ.get("TENSORFAB_RAY_SCENARIOS", ",".join(SCENARIOS)).split(",")
    try:
        # Ray Train's worker start-up and torchrun's rendezvous are mostly waiting: they run
        # on threads beside the jobs scenarios, which share the cluster's declared CPUs
        beside = [
            threading.Thread(target=_run, args=(results, [key], only, work, address))
            for key in ("train", "torchrun")
        ]
        for thread in beside:
            thread.start()
        _run(results, ["jobs", "preempt"], only, work, address)
        for thread in beside:
            thread.join(timeout=1800)
    finally:
        sampler.halt.set()
        sampler.join(timeout=10)
        results["sockets"] = sampler.summary()
        bench.stop_ray()
    from tensorfab.files import write_text_atomic

    write_text_atomic(out, json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
