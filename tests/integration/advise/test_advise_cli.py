"""``tensorfab advise`` end to end on the cheapest named workload: JSON, files, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tensorfab.cli.main import main


def test_json_has_a_gpus_list_refusals_and_files(tmp_path: Path, capsys) -> None:
    argv = [
        "advise",
        "--workload",
        "lenet-train",
        "--batch",
        "64",
        "--gpus",
        "h100-sxm,t4",
        "--precision",
        "bf16",
        "--json",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    advice = json.loads(capsys.readouterr().out)
    rows = {r["id"]: r for r in advice["gpus"]}
    assert rows["t4"]["refused"] == "t4 has no bf16 (it has fp32, fp16)"
    h100 = rows["h100-sxm"]
    assert h100["refused"] is None and h100["fits"] is True
    assert h100["bound"] == "launch overhead"  # LeNet: the host sets the pace
    assert h100["step_ms"] > 0 and h100["cost_usd"] > 0 and h100["energy_kj"] > 0
    assert advice["ranking"]["time"] == ["h100-sxm"]
    assert (tmp_path / "advise-lenet-train-b64.png").stat().st_size > 0
    assert "refused t4: t4 has no bf16" in (tmp_path / "advise-lenet-train-b64.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workload", "lenet-train", "--gpus", "h1000"], "--gpus: unknown GPU 'h1000'"),
        (["--workload", "lenet-train", "--batch", "a,2"], "--batch: expected integers"),
        (["--workload", "resnet-9000"], "--workload: unknown workload 'resnet-9000'"),
        ([], "advise: give a job spec or --workload NAME"),
    ],
)
def test_bad_input_is_one_error_line(argv: list[str], message: str, capsys, tmp_path) -> None:
    assert main(["advise", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_help_shows_an_example(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["advise", "--help"])
    out = capsys.readouterr().out
    assert "example:" in out and "tensorfab advise --workload bert-base-infer" in out


def test_spec_refuses_a_precision_and_a_batch_that_does_not_fit(tmp_path: Path, capsys) -> None:
    """LeNet on the embedded digits: bf16 on a T4 is refused; at batch 200,000 the step
    (about 26 GB of activations) does not fit a 16 GB T4 but fits an 80 GB H100."""
    repo = Path(__file__).resolve().parents[3]
    spec = str(repo / "examples" / "digits-lenet.yaml")
    common = ["--gpus", "h100-sxm,t4", "--json", "--out", str(tmp_path)]
    assert main(["advise", spec, "--set", "train.precision=bf16", *common]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)["gpus"]}
    assert rows["t4"]["refused"] == "t4 has no bf16 (it has fp32, fp16)"
    assert main(["advise", spec, "--set", "data.batch_size=200000", *common]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)["gpus"]}
    assert rows["t4"]["precision"] == "fp16"  # auto on a T4
    assert rows["t4"]["fits"] is False
    assert rows["t4"]["refused"].startswith("does not fit: needs ")
    assert 0 < rows["t4"]["largest_batch"] < 200_000
    assert rows["h100-sxm"]["fits"] is True and rows["h100-sxm"]["largest_batch"] >= 200_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workload", "lenet-train", "--seq-len", "0"], "--seq-len: expected a positive"),
        (["--workload", "lenet-train", "--seq-len", "-5"], "--seq-len: expected a positive"),
        (["--workload", "lenet-train", "--batch", "0"], "--batch: expected positive integers"),
        (["--workload", "lenet-train", "--batch", "-5"], "--batch: expected positive integers"),
        (["--workload", "lenet-train", "--gpus", ""], "--gpus: expected catalogue ids like"),
        (["--workload", "lenet-train", "--gpus", "l4,,t4"], "--gpus: expected catalogue ids"),
        (["--workload", "lenet-train", "--gpus", "l4,t4,L4"], "--gpus: l4 given more than once"),
        (["--workload", "lenet-train", "--set", "data.batch_size=8"], "--workload takes no job"),
        (["spec.yaml", "--workload", "lenet-train"], "--workload takes no job spec"),
        (["spec.yaml", "--batch", "64"], "--batch is for --workload only"),
        (["spec.yaml", "--seq-len", "64"], "--seq-len is for --workload only"),
        (["spec.yaml", "--precision", "bf16"], "--precision is for --workload only"),
    ],
)
def test_arguments_that_do_not_apply_are_refused_before_profiling(
    argv: list[str], message: str, capsys, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert main(["advise", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()  # nothing written


def test_out_that_is_a_file_and_an_unknown_precision_are_refused(capsys, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for out in (afile, afile / "x"):
        assert main(["advise", "--workload", "lenet-train", "--out", str(out)]) == 2
        assert f"--out {out}: {afile} exists and is not a folder" in capsys.readouterr().err
    assert afile.read_text() == "keep"
    with pytest.raises(SystemExit) as exit_:
        main(["advise", "--workload", "lenet-train", "--precision", "fp8"])
    assert exit_.value.code == 2
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


def test_json_is_strict_with_a_calibration_at_its_extremes(capsys, tmp_path: Path) -> None:
    """The smallest peaks and bandwidth and the largest scale a calibration may hold still
    give finite, positive times: the JSON has no NaN or Infinity (json.dumps would write
    them, and json.loads reads them back unless told not to)."""
    extreme = {"tflops": {"fp32": 1e-3, "fp16": 1e-3}, "bandwidth_gb_s": 1e-3}
    cal = {"host_op_us": 1e6, "gpus": {"t4": {**extreme, "host_scale": 1e6, "price_usd_h": 1e4}}}
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(cal))
    argv = ["advise", "--workload", "lenet-train", "--gpus", "t4,l4", "--calibrate", str(path)]
    assert main([*argv, "--json", "--out", str(tmp_path)]) == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in --json output")

    rows = json.loads(capsys.readouterr().out, parse_constant=refuse)["gpus"]
    for r in rows:
        assert r["step_ms"] > 0 and r["run_s"] > 0 and r["energy_kj"] > 0 and r["cost_usd"] > 0
    assert rows[0]["step_ms"] >= 0.999e6 * rows[1]["step_ms"]  # t4: host x 1e6


def test_output_names_give_the_batch_once() -> None:
    from tensorfab.cli.advise import _stem

    out = Path("advise")
    assert _stem(out, "mnist-lenet-b512", 512) == out / "advise-mnist-lenet-b512"
    assert _stem(out, "mnist-lenet-b512", 64) == out / "advise-mnist-lenet-b512-b64"
    assert _stem(out, "lenet-train", 64) == out / "advise-lenet-train-b64"
