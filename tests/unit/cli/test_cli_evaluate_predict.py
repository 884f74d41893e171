"""evaluate's tables for both kinds of scores, predict's --top-k, --device named as the flag,
and a closed stdout pipe ending quietly."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from tensorfab.cli.evaluate import score_table, summary_line
from tensorfab.cli.main import main
from testkit import cli_command

REPO = Path(__file__).resolve().parents[3]

NER_SCORES = {
    "f1": 0.5,
    "precision": 0.6,
    "recall": 0.4286,
    "macro_f1": 0.45,
    "token_accuracy": 0.9,
    "loss": 0.25,
    "entity": {
        "precision": 0.6,
        "recall": 0.4286,
        "f1": 0.5,
        "per_type": {
            "LOC": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 4},
            "PER": {"precision": 0.3333, "recall": 0.3333, "f1": 0.3333, "support": 3},
        },
        "n_entities_true": 7,
    },
}
CLASS_SCORES = {
    "accuracy": 0.75,
    "macro_f1": 0.7,
    "per_class": {
        "neg": {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1},
        "pos": {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3},
    },
}


def _render(scores: dict) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=100).print(score_table(scores))
    return [line.strip() for line in out.getvalue().splitlines()]


def test_ner_table_has_a_row_per_entity_type_and_the_micro_average() -> None:
    lines = _render(NER_SCORES)
    assert "┃ entity type ┃ precision ┃ recall ┃     f1 ┃ support ┃" in lines
    assert "│ LOC         │    1.0000 │ 0.5000 │ 0.6667 │       4 │" in lines
    assert "│ PER         │    0.3333 │ 0.3333 │ 0.3333 │       3 │" in lines
    assert "│ all (micro) │    0.6000 │ 0.4286 │ 0.5000 │       7 │" in lines
    assert summary_line(NER_SCORES) == (
        "entity F1 0.5000  precision 0.6000  recall 0.4286  token accuracy 0.9000  loss 0.2500"
    )


def test_classification_table_has_a_row_per_class() -> None:
    lines = _render(CLASS_SCORES)
    assert "┃ class ┃ precision ┃ recall ┃     f1 ┃ support ┃" in lines
    assert "│ pos   │    1.0000 │ 0.6667 │ 0.8000 │       3 │" in lines
    assert summary_line(CLASS_SCORES) == "accuracy 0.7500  macro F1 0.7000"  # no loss given


@pytest.mark.parametrize("k", ["0", "-1"])
def test_top_k_below_one_is_one_clear_error(
    k: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(tmp_path), "digit.png", "--top-k", k]) == 2
    assert capsys.readouterr().err == f"error: --top-k must be at least 1, not {k}\n"


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_bad_device_is_named_as_the_flag(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = ["digit.png"] if command == "predict" else []
    assert main([command, str(tmp_path), *inputs, "--device", "gpu"]) == 2
    assert capsys.readouterr().err == (
        "error: --device: must be auto, cpu, cuda, cuda:N or mps, not 'gpu'\n"
    )


def _with_closed_stdout(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout a pipe whose reader is already gone (``| head`` that quit)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            cli_command(*args),
            cwd=REPO,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)


def test_a_closed_stdout_pipe_ends_quietly_with_141() -> None:
    proc = _with_closed_stdout("spec", "examples/mnist-lenet.yaml", "--json")
    assert proc.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored" either
    assert proc.returncode == 141  # 128 + SIGPIPE, as git and coreutils end in a pipe


def test_a_closed_stdout_pipe_during_help_is_quiet_too() -> None:
    proc = _with_closed_stdout("export", "--help")
    assert proc.stderr == ""
    assert proc.returncode in (0, 141)  # argparse itself may swallow the error on write
