"""Ray end to end: the jobs backend, preemption, multi-node gangs, Ray Train with a lost
worker, two torchrun nodes without Ray, no traffic out.

One Ray instance serves every test here: the module fixture runs ``ray_scenarios.py``
once, inside a network namespace holding only loopback (``testkit.in_loopback_namespace``,
as root), and the tests assert on the JSON it writes (its docstring says why and what).
Without root or ``unshare -n`` the tests skip with that reason; without Ray installed, with
the extra to install.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testkit import in_loopback_namespace, loopback_namespace_unavailable

pytest.importorskip("ray", reason="pip install 'tensorfab[ray]'")
# the scenarios take 3-4 minutes on a quiet 2-core machine, many more on a loaded one: the
# first test pays for all of them (module fixture)
pytestmark = [pytest.mark.timeout(2400), pytest.mark.slow]

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    why = loopback_namespace_unavailable()
    if why:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("ray")
    out = work / "scenarios.json"
    command = [sys.executable, str(HERE / "ray_scenarios.py"), str(out), str(work)]
    done = subprocess.run(
        in_loopback_namespace(command), capture_output=True, text=True, timeout=2300, check=False
    )
    assert done.returncode == 0 and out.is_file(), done.stderr[-4000:]
    return json.loads(out.read_text())


def _part(scenarios: dict[str, Any], key: str) -> dict[str, Any]:
    part = scenarios[key]
    assert "error" not in part, part["error"]
    return part


def test_ray_runs_in_a_namespace_that_holds_only_loopback(scenarios: dict[str, Any]) -> None:
    assert scenarios["namespace"]["links"] == ["lo"]
    assert scenarios["namespace"]["address"].startswith("127.0.0.1:")


def test_no_socket_of_the_ray_processes_has_a_peer_outside_loopback(
    scenarios: dict[str, Any],
) -> None:
    sockets = scenarios["sockets"]
    # the sampler saw Ray's own processes while the jobs and the training ran
    assert sockets["samples"] > 10 and sockets["sockets_seen"] > 0
    assert {"raylet", "gcs_server"} & set(sockets["processes"]), sockets["processes"]
    assert sockets["peers_outside_loopback"] == []


def test_the_load_through_the_ray_backend_runs_each_job_once_on_its_own_gpus(
    scenarios: dict[str, Any],
) -> None:
    jobs = _part(scenarios, "jobs")
    checks = dict(jobs["checks"])
    # waits are not a target here: each attempt starts a Ray actor, seconds on this machine
    checks.pop("waited_longer_than_max_wait")
    assert checks == {
        "not_ended_exactly_once": [],
        "device_overlaps": {},
        "process_outside_its_reservation": [],
        "partial_gangs": [],
        "visible_devices_not_the_gang": [],
        "visible_device_overlaps": {},
    }
    assert sum(jobs["gangs"].values()) == 8 and jobs["gangs"]["4"] > 0
    # an attempt of the same shape after another ran on the same, warm runner
    assert jobs["per_job_cost"]["warm_runner_reused"] is True
    # Ray handed out its declared GPUs, by its own ids on each of the two nodes (4 each)
    used = [gpu.split(":") for gpu in jobs["ray_gpu_ids_used"]]
    assert {gpu for _, gpu in used} <= {"0", "1", "2", "3"} and len({n for n, _ in used}) == 2
    assert len(used) >= 4


def test_a_job_on_ray_is_preempted_by_sigterm_for_a_gang_and_resumes_from_its_checkpoint(
    scenarios: dict[str, Any],
) -> None:
    part = _part(scenarios, "preempt")
    victim, urgent = part["victim"], part["urgent"]
    assert urgent["state"] == "succeeded", urgent
    assert (victim["state"], victim["attempt"], victim["preemptions"]) == ("succeeded", 2, 1)
    assert any("preempted (exit 143)" in e for e in victim["events"]), victim["events"]
    assert urgent["devices"] == [f"ray{i}" for i in range(8)]  # the gang, whole
    assert part["victim_last_argv"][-2:] == ["--resume", "--quiet"]
    steps = part["victim_train_steps"]
    assert steps == list(range(1, len(steps) + 1))  # no step lost, none trained twice
    assert part["state_dir_job_folders"] == []  # they are in --jobs-dir, apart from the state


def test_a_gang_of_more_gpus_than_a_node_has_runs_on_both_nodes_whole(
    scenarios: dict[str, Any],
) -> None:
    part = _part(scenarios, "preempt")
    nodes = part["gang_nodes"]  # the urgent 8-GPU job on two Ray nodes of 4 GPUs
    assert len(nodes) == 2 and nodes[0]["TENSORFAB_RAY_NODE"] != nodes[1]["TENSORFAB_RAY_NODE"]
    held = [
        (n["TENSORFAB_RAY_NODE"], gpu)
        for n in nodes
        for gpu in n["CUDA_VISIBLE_DEVICES"].split(",")
    ]
    assert len(held) == len(set(held)) == 8  # disjoint: 4 GPUs on each node
    assert [(n["TENSORFAB_NODE_RANK"], n["TENSORFAB_NNODES"]) for n in nodes] == [
        ("0", "2"),
        ("1", "2"),
    ]
    # one rendezvous, on the first node's address
    assert nodes[0]["TENSORFAB_RDZV_ENDPOINT"] == nodes[1]["TENSORFAB_RDZV_ENDPOINT"]
    assert nodes[0]["TENSORFAB_RDZV_ENDPOINT"].startswith("127.0.0.1:")
    # all or nothing: while the victim held a GPU no node of the gang started, then both did
    assert all(n["exit_code"] == 0 for n in nodes)
    assert min(n["started_at"] for n in nodes) >= part["victim_preempted_at"] - 1.0


def test_ray_train_with_a_lost_worker_resumes_at_the_next_step_and_keeps_accuracy(
    scenarios: dict[str, Any],
) -> None:
    part = _part(scenarios, "train")
    kill = part["kill"]
    assert "error" not in kill, kill.get("error")
    assert kill["killed"] in kill["pids"] and len(kill["pids"]) == 2
    (resumed_at,) = part["resume_steps"]  # the worker group restarted once, from a checkpoint
    # the checkpoint Ray Train had registered when the worker died (or a later one it
    # registered before noticing), never a step trained after the kill
    assert kill["registered_step"] <= resumed_at <= kill["last_step_before_kill"]
    assert part["first_step_after_resume"] == resumed_at + 1
    steps = part["train_steps"]
    assert steps == list(range(1, len(steps) + 1))
    assert abs(part["ray_accuracy"] - part["single_accuracy"]) <= 0.03


def test_two_torchrun_nodes_reach_the_single_process_accuracy(scenarios: dict[str, Any]) -> None:
    part = _part(scenarios, "torchrun")  # two agents, c10d rendezvous on 127.0.0.1, no Ray
    single = _part(scenarios, "train")["single_accuracy"]  # the same settings, one process
    assert part["exit_codes"] == [0, 0] and part["world_size"] == 2
    # digits: 1437 training samples, batch 64; each of two ranks: ceil(719/64) = 12 steps an
    # epoch, 4 epochs
    assert part["steps"] == 4 * 12
    assert part["accuracy"] > 0.9
    assert abs(part["accuracy"] - single) <= 0.03, (part["accuracy"], single)
