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
