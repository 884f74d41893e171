"""Two-process DDP (gloo, CPU) through torchrun reaches the single-process accuracy; only
rank 0 scores, writes and prints the report, and every rank exits 0."""

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
        *JOB[:-1],
        "--json",
        "--name",
        "ddp",
    ]
    ddp = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    # every rank exits 0: rank 1 no longer reads the package rank 0 is writing
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "Traceback" not in ddp.stderr
    one = json.loads((tmp_path / "runs/single/report.json").read_text())
    two = json.loads((tmp_path / "runs/ddp/report.json").read_text())
    # rank 0 prints the report once; a second rank's output would make this not one document
    assert json.loads(ddp.stdout) == two
    assert two["hardware"]["world_size"] == 2
    # 1437 training digits: one process takes ceil(1437/32) = 45 steps an epoch; with two
    # ranks DistributedSampler gives each ceil(1437/2) = 719 samples, ceil(719/32) = 23 steps.
    assert (one["steps"], two["steps"]) == (6 * 45, 6 * 23)
    acc1, acc2 = one["metrics"]["test"]["accuracy"], two["metrics"]["test"]["accuracy"]
    assert acc2 > 0.9
    assert abs(acc1 - acc2) <= 0.03, (acc1, acc2)
