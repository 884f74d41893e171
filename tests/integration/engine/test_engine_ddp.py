"""Two-process DDP (gloo, CPU) through torchrun reaches the single-process accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from testkit import run_cli

JOB = [
    "--set",
    "train.device=cpu",
    "--set",
    "train.epochs=6",
    "--set",
    "data.batch_size=32",
    "--quiet",
]


def test_two_process_gloo_ddp_matches_single_process(tmp_path: Path) -> None:
    single = run_cli("train", *JOB, "--name", "single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "tensorfab.cli.main",
        "train",
        *JOB,
        "--name",
        "ddp",
    ]
    ddp = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = json.loads((tmp_path / "runs/single/report.json").read_text())
    two = json.loads((tmp_path / "runs/ddp/report.json").read_text())
    assert two["hardware"]["world_size"] == 2
    # 1437 training digits: one process takes ceil(1437/32) = 45 steps an epoch; with two
    # ranks DistributedSampler gives each ceil(1437/2) = 719 samples, ceil(719/32) = 23 steps.
    assert (one["steps"], two["steps"]) == (6 * 45, 6 * 23)
    acc1, acc2 = one["metrics"]["test"]["accuracy"], two["metrics"]["test"]["accuracy"]
    assert acc2 > 0.9
    assert abs(acc1 - acc2) <= 0.03, (acc1, acc2)
