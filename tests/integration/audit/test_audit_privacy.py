"""DP-SGD end to end on digits (CPU): ε per epoch in metrics, report and package; a run
killed and resumed ends with the same ε and bitwise the same weights; and the
membership-inference attack finds an overfit model (AUC >= 0.60) but not its DP twin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from testkit import cli_command, run_cli

pytest.importorskip("opacus")

from tensorfab.audit.privacy import membership_inference
from tensorfab.cli.main import main as cli_main
from tensorfab.engine.train import train
from tensorfab.spec import parse_spec

# 64 training digits (4 Poisson steps per epoch), 200 held-out test digits
BASE = {
    "seed": 0,
    "data": {"format": "digits", "limit_train": 64, "limit_test": 200, "batch_size": 16},
    "train": {"device": "cpu", "precision": "fp32", "lr": 0.002},
}
DP = {"epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0}


def _raw(epochs: int, privacy: dict | None, **train: object) -> dict:
    raw = json.loads(json.dumps(BASE))
    raw["train"].update(epochs=epochs, **train)
    if privacy:
        raw["train"]["privacy"] = privacy
    return raw


def _cli_job(tmp: Path) -> list[str]:
    spec = tmp / "dp.yaml"
    raw = _raw(2, DP, checkpoint_every_steps=2, log_every_steps=2)
    spec.write_text(yaml.safe_dump(raw))
    return [str(spec), "--quiet"]


def _final(run: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    report = json.loads((run / "report.json").read_text())
    return report, load_file(str(run / "model" / "weights.safetensors"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("dp")
    proc = run_cli("train", *_cli_job(cwd), "--name", "straight", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "UserWarning" not in proc.stderr, proc.stderr  # no library noise on a DP run
    return cwd / "runs" / "straight"


def test_epsilon_is_reported_per_epoch_and_stored(straight: Path) -> None:
    evals = [
        json.loads(x)
        for x in (straight / "metrics.jsonl").read_text().splitlines()
        if json.loads(x)["kind"] == "eval"
    ]
    eps = [r["epsilon"] for r in evals]
    assert len(eps) == 2 and eps == sorted(eps) and eps[0] > 0
    assert 2.9 < eps[-1] <= 3.0  # the noise was chosen to spend the target by the end
    report, _ = _final(straight)
    assert report["privacy"]["epsilon"] == eps[-1]
    assert report["privacy"]["steps"] == 8 and report["privacy"]["sample_rate"] == 0.25
    meta = json.loads((straight / "model" / "tensorfab.json").read_text())
    best = meta["run"]["epoch"]
    assert meta["privacy"]["epsilon"] == eps[best - 1]  # ε of the weights the package holds


def test_sigkill_then_resume_gives_the_same_epsilon_and_weights(
    tmp_path: Path, straight: Path
) -> None:
    job = _cli_job(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cli_command("train", *job, "--name", "killed"), cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ckpt_path = tmp_path / "runs/killed/checkpoints/last.pt"
    deadline = time.monotonic() + 120
    while not ckpt_path.is_file():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert 0 < ckpt["state"]["global_step"] < 8 and ckpt["privacy"]["accountant"]
    resumed = run_cli("train", *job, "--name", "killed", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    (report, weights), (want_report, want_weights) = (
        _final(tmp_path / "runs/killed"),
        _final(straight),
    )
    assert report["privacy"] == want_report["privacy"]
    assert [r["epsilon"] for r in report["history"]] == [
        r["epsilon"] for r in want_report["history"]
    ]
    assert weights.keys() == want_weights.keys()
    for k in weights:
        assert torch.equal(weights[k], want_weights[k]), k


def _trained(tmp: Path, name: str, privacy: dict | None) -> Path:
    raw = _raw(15, privacy)
    raw["output"] = {"runs_dir": str(tmp / "runs"), "name": name}
    return train(parse_spec(raw), quiet=True).run_dir


def test_membership_attack_finds_overfitting_and_not_dp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overfit = membership_inference(_trained(tmp_path, "overfit", None), rounds=200)
    assert overfit.auc >= 0.60, overfit.to_dict()
    assert overfit.member_loss < overfit.nonmember_loss and overfit.privacy is None
    dp_run = _trained(tmp_path, "private", DP)
    # the CLI in this process (a process start-up is already paid by the train runs above)
    code = cli_main(["audit", "privacy", str(dp_run), "--json", "--rounds", "200"])
    out = capsys.readouterr()
    assert code == 0, out.err
    private = json.loads(out.out)
    assert private["auc"] <= 0.55, private
    assert private["auc_ci95"][0] <= private["auc"] <= private["auc_ci95"][1]
    assert private["members"] == 64 and private["nonmembers"] == 200
    assert private["privacy"]["epsilon"] <= 3.0


def test_tanh_lenet_with_a_validation_part_round_trips(tmp_path: Path) -> None:
    """examples/mnist-lenet-dp.yaml's set-up in small: a tanh LeNet (recorded in the
    package, rebuilt on load), validation carved from train, test scored once; the
    attack's members are train minus validation, exactly what DP-SGD trained on."""
    raw = _raw(1, DP, optimizer="sgd", momentum=0.0, lr=2.0, scheduler="cosine")
    raw["data"].update(limit_train=80, val_fraction=0.2)
    raw["model"] = {"name": "lenet", "args": {"activation": "tanh"}}
    raw["output"] = {"runs_dir": str(tmp_path / "runs"), "name": "tanh"}
    run = train(parse_spec(raw), quiet=True).run_dir
    meta = json.loads((run / "model" / "tensorfab.json").read_text())
    assert meta["model"]["args"]["activation"] == "tanh"
    result = membership_inference(run, rounds=10)
    assert (result.members, result.nonmembers) == (64, 200)  # 80 - 16 validation digits
    assert result.privacy is not None and result.privacy["epsilon"] <= 3.0
