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
