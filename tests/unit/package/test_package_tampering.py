"""A tampered package is refused in one line naming the file and field, exit 2, through
``predict``, ``evaluate`` and ``export`` and the server's repository load; never a
traceback, never an argument of the package's choosing passed to a loader."""

from __future__ import annotations

import asyncio
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tensorfab.cli.main import main
from tensorfab.errors import TensorfabError
from tensorfab.models import create_model
from tensorfab.package import save_package
from tensorfab.package.manifest import MANIFEST_FILE
from tensorfab.package.meta import check_meta, model_args
from tensorfab.tasks.registry import register_all

CLASSES = ["0", "1", "2"]
META: dict[str, Any] = {
    "task": "image-classification",
    "task_config": {"classes": CLASSES, "mean": [0.5], "std": [0.25]},
    "model": {"name": "lenet", "args": {"num_classes": 3, "in_channels": 1, "image_size": 28}},
    "labels": CLASSES,
    "input": {"kind": "image", "channels": 1, "height": 28, "width": 28, "dtype": "uint8"},
    "preprocessing": {"scale": "x / 255", "mean": [0.5], "std": [0.25]},
}


def _hf_dir_with_a_pickle(tmp: Path) -> str:
    """A Hugging Face folder whose weights are a pickle (which could run code on load)."""
    folder = tmp / "evil-encoder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"x": 1}))
    return f"hf:{folder}"


# (what is changed, the one line's end after "<package>/tensorfab.json: ")
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "labels as a string": ({"labels": "x"}, "labels: Input should be a valid list"),
    "model.args as a list": (
        {"model": {"name": "lenet", "args": [1, 2]}},
        "model.args: Input should be a valid dictionary",
    ),
    "model.args weights_only": (
        {"model": {"name": "lenet", "args": {"num_classes": 3, "weights_only": False}}},
        "model.args.weights_only: unknown key (not something tensorfab writes)",
    ),
    "model.args trust_remote_code": (
        {"model": {"name": "lenet", "args": {"trust_remote_code": True}}},
        "model.args.trust_remote_code: unknown key (not something tensorfab writes)",
    ),
    "task_config unknown key": (
        {"task_config": {"classes": CLASSES, "evil": 1}},
        "task_config.evil: unknown key (task 'image-classification' takes classes, mean, std)",
    ),
    "task_config package_dir": (
        {"task_config": {"classes": CLASSES, "package_dir": "/etc"}},
        "task_config.package_dir: set by the loader, not by a package",
    ),
    "task_config wrong type": (
        {"task_config": {"classes": CLASSES, "mean": "x"}},
        "task_config.mean: Input should be a valid list",
    ),
    "unknown top-level key": (
        {"hooks": ["rm -rf"]},
        "hooks: unknown key (not something tensorfab writes)",
    ),
    "tokenizer outside the package": (
        {"input": {"kind": "text", "tokenizer": "../../elsewhere"}},
        "input.tokenizer: must be a path inside the package",
    ),
    "absolute tokenizer path": (
        {"input": {"kind": "text", "tokenizer": "/etc"}},
        "input.tokenizer: must be a path inside the package",
    ),
    "unknown task": (
        {"task": "shell"},
        "unknown task 'shell'; known: " + ", ".join(sorted(register_all().names())),
    ),
    "format version as text": (
        {"format_version": "1"},
        "package format '1' is not supported (this tensorfab reads format 1)",
    ),
    "no model": ({"model": None}, "model: Input should be a valid dictionary"),
}


def _package(tmp: Path, changes: dict[str, Any]) -> Path:
    torch.manual_seed(0)
    model = create_model("lenet", num_classes=3, in_channels=1, image_size=28)
    directory = save_package(tmp / "pkg", model, META)
    path = directory / "tensorfab.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))
    # without its manifest (as packages before manifests), so the field checks are what
    # refuses it; test_package_manifest.py covers a changed file under a manifest
    (directory / MANIFEST_FILE).unlink()
    return directory


def _cli(command: str, package: Path, tmp: Path) -> list[str]:
    extra = {"predict": ["image.png"], "evaluate": [], "export": ["--repo", str(tmp / "repo")]}
    return [command, str(package), *extra[command]]


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_tampered_package_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, command: str
) -> None:
    changes, reason = CASES[case]
    package = _package(tmp_path, changes)
    assert main(_cli(command, package, tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {package / 'tensorfab.json'}: {reason}"]
    assert not (tmp_path / "repo").exists()  # export wrote nothing


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_an_hf_model_outside_the_package_is_never_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    name = _hf_dir_with_a_pickle(tmp_path)
    package = _package(tmp_path, {"model": {"name": name, "args": {"num_classes": 3}}})
    assert main(_cli(command, package, tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {package}: model {name!r} rebuilds from the package's encoder/config.json, "
        "which is missing"
    ]


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
@pytest.mark.parametrize("config", ["tokenizer/tokenizer_config.json", "encoder/config.json"])
def test_a_config_naming_custom_code_is_refused_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, command: str
) -> None:
    package = _package(tmp_path, {})
    path = package / config
    path.parent.mkdir()
    auto_map = {"AutoTokenizer": ["evil.EvilTokenizer", None], "AutoConfig": "evil.Config"}
    path.write_text(json.dumps({"tokenizer_class": "EvilTokenizer", "auto_map": auto_map}))
    assert main(_cli(command, package, tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {path}: auto_map names custom code, which tensorfab never runs from a package"
    ]


def test_the_package_tensorfab_writes_passes_and_keeps_its_args(tmp_path: Path) -> None:
    meta = json.loads((_package(tmp_path, {}) / "tensorfab.json").read_text())
    checked = check_meta(meta, "tensorfab.json")
    assert checked.model.args.model_dump(exclude_none=True) == META["model"]["args"]
    assert checked.labels == CLASSES and checked.task_config == META["task_config"]


def test_what_a_training_run_records_passes(tmp_path: Path) -> None:
    from tensorfab.spec.schema import DataSpec

    meta = json.loads((_package(tmp_path, {}) / "tensorfab.json").read_text())
    source = {"name": "digits", "path": "sklearn.datasets.load_digits", "licence": "CC BY 4.0"}
    split = {"method": "stratified", "test_fraction": 0.2, "seed": 0, "train_size": 1437}
    meta["data"] = {"spec": DataSpec().model_dump(mode="json"), "source": source, "split": split}
    meta["metrics"] = {"selection": {"epoch": 1, "step": 23, "accuracy": 0.87}}
    meta["run"] = {"name": "digits", "epoch": 1, "step": 23}
    checked = check_meta(meta, "m")
    assert checked.data is not None and checked.data.source == source
    resnet = {"name": "resnet-18", "args": {"width": 8, "blocks": [1, 1, 1, 1], "image_size": 32}}
    assert model_args(check_meta({**meta, "model": resnet}, "m")) == resnet["args"]
    with pytest.raises(TensorfabError, match=r"^m: data\.spec\.format: Input should be"):
        check_meta({**meta, "data": {**meta["data"], "spec": {"format": "pickle"}}}, "m")


def test_an_exported_version_passes_too(tmp_path: Path) -> None:
    meta = {**json.loads((_package(tmp_path, {}) / "tensorfab.json").read_text())}
    onnx = {"variant": "int8-static", "opset": 17, "inputs": ["images"]}
    onnx["calibration"] = {"data": "test split", "samples": 64, "method": "minmax"}
    check_meta({**meta, "onnx": onnx}, "v")
    runtime = {"variant": "torch-fp16", "precision": "fp16", "compile": False, "cuda_graphs": False}
    check_meta({**meta, "runtime": runtime}, "v")
    with pytest.raises(TensorfabError, match=r"^v: runtime\.precision: Input should be 'fp32'"):
        check_meta({**meta, "runtime": {**runtime, "precision": "fp64"}}, "v")


def test_the_server_refuses_the_tampered_model_and_serves_the_others(tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="fastapi (the serve extra) is not installed")
    from tensorfab.serve.metrics import ServerMetrics
    from tensorfab.serve.repository import ModelRepository

    good = _package(tmp_path, {})
    repo_dir = tmp_path / "repo"
    for name in ("good", "bad"):
        shutil.copytree(good, repo_dir / name / "1")
        (repo_dir / name / "config.yaml").write_text("backend: torch\nwarmup: false\n")
    meta_path = repo_dir / "bad" / "1" / "tensorfab.json"
    meta = json.loads(meta_path.read_text())
    meta["model"]["args"]["weights_only"] = False
    meta_path.write_text(json.dumps(meta))

    async def load_both() -> tuple[Any, Any, list[dict[str, Any]]]:
        repo = ModelRepository(repo_dir, ServerMetrics(), compute_threads=1)
        try:
            states = await repo.load("bad"), await repo.load("good")
            return *states, repo.index()
        finally:
            await repo.close()

    bad, good_state, index = asyncio.run(load_both())
    reason = (
        "failed to load: bad/1/tensorfab.json: model.args.weights_only: "
        "unknown key (not something tensorfab writes)"
    )
    assert not bad.ready and bad.reason == reason
    assert good_state.ready
    assert {(r["name"], r["state"], r.get("reason")) for r in index} == {
        ("bad", "UNAVAILABLE", reason),
        ("good", "READY", None),
    }
    assert str(tmp_path) not in json.dumps(index)  # no filesystem path shown to clients
