"""Pre-emption on CPU: SIGKILL and SIGTERM mid-epoch, then --resume, end exactly where an
uninterrupted run ends (same weights, same metrics)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from testkit import cli_command, run_cli

JOB = [
    "--set",
    "train.device=cpu",
    "--set",
    "train.epochs=3",
    "--set",
    "data.batch_size=16",
    "--set",
    "train.checkpoint_every_steps=5",
    "--set",
    "train.log_every_steps=5",
    "--set",
    "train.scheduler=cosine",
    "--set",
    "train.warmup_steps=10",
    "--quiet",
]


def _start(cwd: Path, name: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        cli_command("train", *JOB, "--name", name),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(proc: subprocess.Popen[str], ckpt: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not ckpt.is_file():
        assert proc.poll() is None, f"training ended before its first checkpoint: {proc.stderr}"
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.01)


def _final(run: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    report = json.loads((run / "report.json").read_text())
    return report, load_file(str(run / "model" / "weights.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    cwd = tmp_path_factory.mktemp("straight")
    proc = run_cli("train", *JOB, "--name", "straight", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return _final(cwd / "runs" / "straight")


def _assert_same_end(run: Path, expected: tuple[dict, dict]) -> None:
    report, weights = _final(run)
    want_report, want_weights = expected
    assert report["metrics"]["test"] == want_report["metrics"]["test"]
    for got, want in zip(report["history"], want_report["history"], strict=True):
        assert got["accuracy"] == want["accuracy"]
        assert got["eval_loss"] == want["eval_loss"]
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)
    assert weights.keys() == want_weights.keys()
    for k in weights:
        assert torch.equal(weights[k], want_weights[k]), k


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(
    tmp_path: Path, uninterrupted: tuple[dict, dict]
) -> None:
    proc = _start(tmp_path, "killed")
    _wait_for_checkpoint(proc, tmp_path / "runs/killed/checkpoints/last.pt")
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    ckpt = torch.load(tmp_path / "runs/killed/checkpoints/last.pt", weights_only=True)
    assert ckpt["state"]["global_step"] < 3 * 90  # killed before the end
    resumed = run_cli("train", *JOB[:-1], "--name", "killed", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"from step {ckpt['state']['global_step']}" in resumed.stderr
    _assert_same_end(tmp_path / "runs/killed", uninterrupted)
    steps = [
        json.loads(x)["step"]
        for x in (tmp_path / "runs/killed/metrics.jsonl").read_text().splitlines()
        if json.loads(x)["kind"] == "train"
    ]
    assert steps == sorted(steps), "resume left records of undone work in metrics.jsonl"


def test_sigterm_saves_a_resumable_checkpoint_and_exits_cleanly(
    tmp_path: Path, uninterrupted: tuple[dict, dict]
) -> None:
    proc = _start(tmp_path, "term")
    _wait_for_checkpoint(proc, tmp_path / "runs/term/checkpoints/last.pt")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in stderr
    assert "SIGTERM received: checkpoint saved at step" in stderr
    ckpt = torch.load(tmp_path / "runs/term/checkpoints/last.pt", weights_only=True)
    assert 0 < ckpt["state"]["global_step"] < 3 * 90
    resumed = run_cli("train", *JOB, "--name", "term", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_end(tmp_path / "runs/term", uninterrupted)


def test_resume_with_a_changed_spec_is_refused(tmp_path: Path) -> None:
    first = run_cli("train", *JOB, "--set", "train.epochs=1", "--name", "r", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    proc = run_cli("train", *JOB, "--set", "train.lr=0.5", "--name", "r", "--resume", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--resume with a different spec (train.lr)" in proc.stderr


def test_resume_without_a_run_fails_and_creates_nothing(tmp_path: Path) -> None:
    proc = run_cli("train", *JOB, "--name", "nonexist", "--resume", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: runs/nonexist: no run to resume (no checkpoints/last.pt)"
    ]
    assert not (tmp_path / "runs").exists()


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_corrupt_metrics_or_checkpoint_on_resume_is_one_line_and_touches_nothing(
    tmp_path: Path,
) -> None:
    first = run_cli("train", *JOB, "--set", "train.epochs=1", "--name", "c1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run = tmp_path / "runs/c1"
    lines = len((run / "metrics.jsonl").read_text().splitlines())
    resume = ["train", *JOB, "--set", "train.epochs=2", "--name", "c1", "--resume"]

    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, bad\n')
    before = _files(run)
    proc = run_cli(*resume, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: runs/c1/metrics.jsonl:{lines + 1}: not valid JSON "
        "(Expecting property name enclosed in double quotes)"
    ]
    assert _files(run) == before

    (run / "checkpoints/last.pt").write_bytes(b"garbage\n")
    before = _files(run)
    proc = run_cli(*resume, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: runs/c1/checkpoints/last.pt: not a readable checkpoint "
        "(unpickling failed: Unsupported operand 103)"
    ]
    assert _files(run) == before
