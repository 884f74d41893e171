"""The command table: --version, every command's --help, `spec`, and how errors end."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

import tensorfab
from tensorfab.cli.main import COMMANDS, main
from tensorfab.spec import load_spec

# Import every command module once at collection: the engine's first import takes about a
# second, which would otherwise land on whichever test happens to run first.
for _module, _ in COMMANDS.values():
    importlib.import_module(_module)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"tensorfab {tensorfab.__version__}\n"


def test_no_command_prints_help_and_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: tensorfab")
    for name in COMMANDS:
        assert name in out
    assert "example:" in out


def test_command_table() -> None:
    assert set(COMMANDS) == {
        "train", "evaluate", "predict", "info", "demo", "spec", "export", "serve", "perf", "bench",
        "jobs", "data", "audit", "advise", "ensemble",
    }  # fmt: skip
    for module_name, help_text in COMMANDS.values():
        module = importlib.import_module(module_name)
        assert help_text and "\n" not in help_text
        assert module.EXAMPLE.strip().startswith(("tensorfab ", "torchrun "))
        assert callable(module.configure) and callable(module.run)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_has_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tensorfab {command}")
    assert "example:" in out
    assert f"tensorfab {command}" in out.split("example:", 1)[1]


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fly"])
    assert info.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


def test_spec_prints_resolved_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "--set", "train.epochs=3", "--set", "name=quick"]) == 0
    out = capsys.readouterr().out
    resolved = yaml.safe_load(out)
    assert resolved["train"]["epochs"] == 3 and resolved["name"] == "quick"
    assert resolved == load_spec(None, ["train.epochs=3", "name=quick"]).model_dump(mode="json")


def test_spec_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "--set", "train.epochs=3", "--json"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["train"]["epochs"] == 3
    assert resolved["model"] == {"name": "lenet", "args": {}, "head": "linear"}
    assert resolved == load_spec(None, ["train.epochs=3"]).model_dump(mode="json")


def test_spec_of_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: from-file\ntrain:\n  epochs: 4\n", encoding="utf-8")
    assert main(["spec", str(path), "--set", "train.lr=0.1", "--json"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["name"] == "from-file"
    assert resolved["train"]["epochs"] == 4 and resolved["train"]["lr"] == 0.1


def _assert_one_error_line(err: str) -> None:
    assert err.startswith("error: ")
    assert err.count("\n") == 1 and err.endswith("\n")
    assert "Traceback" not in err


def test_spec_error_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epoch: 3\n", encoding="utf-8")
    assert main(["spec", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    _assert_one_error_line(captured.err)
    assert f"{path}:2: train.epoch: unknown field" in captured.err


def test_set_error_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "--set", "train.device=gpu"]) == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err)
    assert err.startswith("error: --set: train.device:")


def test_bad_set_syntax_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "--set", "trainepochs"]) == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err)
    assert "expected KEY=VALUE" in err


def test_spec_refuses_a_model_train_would_refuse(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "--set", "model.name=nosuch"]) == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err)
    assert err.startswith("error: unknown model 'nosuch'; known: ")


def test_train_name_is_one_folder_under_the_runs_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = f"output.runs_dir={tmp_path}"
    assert main(["train", "--set", runs, "--name", "../escape"]) == 2
    assert capsys.readouterr().err.startswith("error: --name '../escape': a run name is letters")
    assert list(tmp_path.parent.glob("escape")) == [] and list(tmp_path.iterdir()) == []


def test_an_output_folder_under_a_file_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("kept")
    assert main(["train", "--set", f"output.runs_dir={afile}", "--set", "train.epochs=1"]) == 2
    assert capsys.readouterr().err == f"error: {afile}/job: Not a directory\n"
    assert afile.read_text() == "kept"
