"""Two "nodes" on this machine: two ``torchrun --nnodes 2`` agents meet through the c10d
rendezvous on 127.0.0.1 and train digits to the single-process accuracy.

Each agent is what one node of a cluster runs (README, "Several nodes without Ray"); here
both run on this machine with ``--local-addr 127.0.0.1``, so the process group's store is
on loopback too. As root they run in a network namespace holding only loopback
(``testkit.in_loopback_namespace``); otherwise on the host, still bound to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from testkit import in_loopback_namespace, loopback_namespace_unavailable, run_cli

SETTINGS = ["train.device=cpu", "train.epochs=4", "data.batch_size=32"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_command(port: int) -> list[str]:
    """One node's agent: 1 process, rendezvous at 127.0.0.1:port with the other node."""
    sets = [a for s in SETTINGS for a in ("--set", s)]
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
        *sets,
        "--name",
        "nodes",
        "--quiet",
    ]


def _two_nodes(cwd: Path) -> subprocess.CompletedProcess[str]:
    """Both agents at once, in one namespace when one can be made: a small launcher
    starts the two and exits with the worse of their exit codes."""
    launcher = [
        sys.executable,
        "-c",
        f"import subprocess, sys; c = {node_command(_free_port())!r}; "
        "ps = [subprocess.Popen(c) for _ in range(2)]; "
        "sys.exit(max(p.wait(timeout=560) for p in ps))",
    ]
    wrapped = launcher if loopback_namespace_unavailable() else in_loopback_namespace(launcher)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        wrapped, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    return done


@pytest.mark.slow
@pytest.mark.timeout(1300)  # two trainings; minutes on a loaded machine
def test_two_torchrun_nodes_reach_the_single_process_accuracy(tmp_path: Path) -> None:
    sets = [a for s in SETTINGS for a in ("--set", s)]
    single = run_cli("train", *sets, "--name", "single", "--quiet", cwd=tmp_path, timeout=600)
    assert single.returncode == 0, single.stderr
    nodes = _two_nodes(tmp_path)
    assert nodes.returncode == 0, nodes.stderr[-3000:]
    one = json.loads((tmp_path / "runs/single/report.json").read_text())
    two = json.loads((tmp_path / "runs/nodes/report.json").read_text())
    assert two["hardware"]["world_size"] == 2
    # ceil(1437/32) = 45 steps an epoch alone; each of two ranks: ceil(719/32) = 23
    assert (one["steps"], two["steps"]) == (4 * 45, 4 * 23)
    acc1, acc2 = one["metrics"]["test"]["accuracy"], two["metrics"]["test"]["accuracy"]
    assert acc2 > 0.9
    assert abs(acc1 - acc2) <= 0.03, (acc1, acc2)
