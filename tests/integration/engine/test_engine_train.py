"""End-to-end training on CPU: the run directory, the rules around it, and bad input."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tensorfab.engine.inference import evaluate_model, predict_inputs
from tensorfab.engine.train import build_workload, train
from tensorfab.errors import TensorfabError
from tensorfab.spec import load_spec
from testkit import run_cli

FAST = ["data.limit_train=512", "data.limit_test=256", "train.epochs=2", "train.device=cpu"]


def _spec(tmp_path: Path, *extra: str):
    return load_spec(None, [*FAST, f"output.runs_dir={tmp_path / 'runs'}", "name=t", *extra])


def test_run_directory_holds_every_artifact(tmp_path: Path) -> None:
    result = train(_spec(tmp_path), quiet=True)
    run = result.run_dir
    for rel in (
        "spec.yaml",
        "metrics.jsonl",
        "checkpoints/last.pt",
        "model/tensorfab.json",
        "model/weights.safetensors",
        "report.md",
        "report.json",
        "plots/curves.png",
        "plots/confusion_matrix.png",
    ):
        assert (run / rel).is_file(), rel
    assert any((run / "tb").iterdir())
    report = json.loads((run / "report.json").read_text())
    assert report["status"] == "completed"
    assert len(report["history"]) == 2
    assert report["throughput"]["peak_tflops"] > 0  # the CPU's measured peak
    assert 0 < report["throughput"]["mfu"] < 1
    assert "| MFU | " in (run / "report.md").read_text()
    meta = json.loads((run / "model/tensorfab.json").read_text())
    assert meta["versions"]["torch"] == torch.__version__
    assert "licence" in meta["data"]["source"]
    assert meta["metrics"]["test"]["accuracy"] == pytest.approx(
        report["metrics"]["test"]["accuracy"]
    )
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"train", "eval"}
    # what the jobs dashboard reads: the planned steps (met exactly), wall time, MFU
    steps = [r for r in records if r["kind"] == "train"]
    assert steps[-1]["step"] == steps[-1]["total_steps"] == steps[0]["total_steps"]
    assert [r["time"] for r in steps] == sorted(r["time"] for r in steps)
    assert all(0 < r["mfu"] < 1 for r in steps)  # a CPU has its measured peak too
    # report.* go through a temp file (0600 from mkstemp): same mode as the other run files
    modes = {rel: stat.S_IMODE((run / rel).stat().st_mode) for rel in ("report.json", "report.md")}
    assert modes == dict.fromkeys(modes, stat.S_IMODE((run / "spec.yaml").stat().st_mode))


def test_package_evaluates_to_the_reported_test_accuracy(tmp_path: Path) -> None:
    result = train(_spec(tmp_path), quiet=True)
    scored = evaluate_model(str(result.run_dir), device="cpu")
    assert scored["n"] == 256
    assert scored["scores"]["accuracy"] == pytest.approx(
        result.report["metrics"]["test"]["accuracy"]
    )


def test_predict_png_and_idx(tmp_path: Path) -> None:
    from PIL import Image

    from tensorfab.data import create_dataset

    result = train(_spec(tmp_path, "train.epochs=3"), quiet=True)
    test = create_dataset("digits").test
    Image.fromarray(test.images[0, 0].numpy()).save(tmp_path / "d.png")
    rows = predict_inputs(str(result.run_dir), [str(tmp_path / "d.png")], device="cpu")
    assert rows[0]["label"] in [str(i) for i in range(10)]
    assert sum(rows[0]["top"].values()) <= 1.0 + 1e-6
    assert 0.0 < rows[0]["score"] <= 1.0


def test_existing_run_dir_is_an_error_and_is_left_alone(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "train.epochs=1")
    result = train(spec, quiet=True)
    before = (result.run_dir / "model/weights.safetensors").read_bytes()
    with pytest.raises(TensorfabError, match="already exists; pass --resume"):
        train(spec, quiet=True)
    assert (result.run_dir / "model/weights.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("train.metric=f2", r"train\.metric: 'f2' is not a metric"),
        ("model.name=nope", r"unknown model 'nope'"),
        ("model.args={foo: 1}", r"model\.args for 'lenet': .*'foo'"),
    ],
)
def test_bad_input_fails_before_the_run_directory_is_created(
    tmp_path: Path, bad: str, message: str
) -> None:
    with pytest.raises(TensorfabError, match=message):
        train(_spec(tmp_path, bad), quiet=True)
    assert not (tmp_path / "runs").exists()


def test_a_failed_start_leaves_nothing_and_the_corrected_run_takes_the_name(
    tmp_path: Path, shared_data: Path
) -> None:
    # A spec.yaml left behind by a failed start used to block the name: "already exists",
    # then "--resume with a different spec (data.path)".
    job = ["train", "--set", "data.format=idx", "--name", "m", "--quiet"]
    job += [
        arg
        for s in ("data.limit_train=256", "data.limit_test=128", *FAST[2:])
        for arg in ("--set", s)
    ]
    bad = run_cli(*job, "--set", f"data.path={tmp_path / 'mnist'}", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        f"error: {tmp_path / 'mnist'}: folder not found (expected MNIST IDX files in it)"
    ]
    assert not (tmp_path / "runs").exists()
    good = run_cli(*job, "--set", f"data.path={shared_data / 'mnist'}", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert json.loads((tmp_path / "runs/m/report.json").read_text())["status"] == "completed"


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "train.optimizer=sgd", "train.lr=1e6", "train.checkpoint_every_steps=2")
    with pytest.raises(TensorfabError, match=r"loss became non-finite .*\(step 2\) is kept"):
        train(spec, quiet=True)
    ckpt = torch.load(tmp_path / "runs/t/checkpoints/last.pt", weights_only=True)
    assert ckpt["state"]["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_cuda_on_a_cpu_machine_is_one_clear_line(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli("train", "--set", "train.device=cuda", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: train.device: 'cuda'")


def test_spec_typo_fails_before_work_with_file_and_line(tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: x\ntrain:\n  epochs: 2\n  lrr: 0.1\n")
    proc = run_cli("train", str(spec), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {spec}:4: train.lrr: unknown field"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("extra", "sizes"), [([], (512, 50, 256)), (["data.val_fraction=0.25"], (384, 50, 256))]
)
def test_limit_eval_cuts_what_images_are_evaluated_on(extra: list[str], sizes: tuple) -> None:
    spec = load_spec(None, [*FAST, "data.limit_eval=50", *extra])
    workload, _ = build_workload(spec)
    assert (workload.sizes["train"], workload.sizes["eval"], workload.sizes["test"]) == sizes


def test_val_fraction_selects_on_validation_and_reports_test(tmp_path: Path) -> None:
    result = train(_spec(tmp_path, "data.val_fraction=0.25"), quiet=True)
    data = result.report["data"]
    assert (data["train_size"], data["eval_size"], data["test_size"]) == (384, 128, 256)
    weights = load_file(str(result.run_dir / "model/weights.safetensors"))
    assert set(weights) >= {"conv1.weight", "fc2.bias"}
