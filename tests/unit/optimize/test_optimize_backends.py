"""The backend registry: a version's files pick its backend, a bad choice names the folder,
and a new backend is one registration that load_runtime then loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tensorfab.errors import TensorfabError
from tensorfab.optimize import runtime
from tensorfab.optimize.runtime import (
    BACKENDS,
    LoadConfig,
    LoadedModel,
    detect_backend,
    load_runtime,
)
from tensorfab.package.repository import ModelConfig
from tensorfab.registry import Registry


def _version(tmp_path: Path, *files: str) -> Path:
    (tmp_path / "tensorfab.json").write_text('{"input": {"kind": "text"}}')
    for name in files:
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_registered_backends_and_what_identifies_them() -> None:
    assert BACKENDS.names() == ["onnxruntime", "torch"]
    assert BACKENDS.get("onnxruntime").meta["files"] == ("model.onnx",)
    assert BACKENDS.get("torch").meta["files"] == ("weights.safetensors",)
    assert runtime.backend_names() == ("auto", "onnxruntime", "torch")


@pytest.mark.parametrize(
    ("files", "backend"),
    [
        (("model.onnx",), "onnxruntime"),
        (("weights.safetensors",), "torch"),
        (("weights.safetensors", "model.onnx"), "onnxruntime"),  # the lower rank wins
    ],
)
def test_auto_picks_the_backend_whose_files_are_there(
    tmp_path: Path, files: tuple[str, ...], backend: str
) -> None:
    assert detect_backend(_version(tmp_path, *files)) == backend


def test_a_version_with_no_backends_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError) as info:
        load_runtime(_version(tmp_path))
    assert str(info.value) == f"{tmp_path}: neither model.onnx nor weights.safetensors in it"


def test_unknown_backend_and_missing_files_name_the_folder(tmp_path: Path) -> None:
    path = _version(tmp_path, "weights.safetensors")
    with pytest.raises(TensorfabError) as info:
        load_runtime(path, "tensorrt")
    assert str(info.value) == f"{path}: backend 'tensorrt'; choose from auto, onnxruntime, torch"
    with pytest.raises(TensorfabError) as info:
        load_runtime(path, "onnxruntime")
    assert str(info.value) == f"{path}: backend onnxruntime needs model.onnx"


def test_a_new_backend_is_one_registration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    registry: Registry[LoadedModel] = Registry("backend")
    monkeypatch.setattr(runtime, "BACKENDS", registry)
    seen: dict[str, object] = {}

    @registry.register("doubler", files=("model.double",), rank=0)
    def load(path: Path, config: LoadConfig) -> LoadedModel:
        seen.update(path=path, config=config)
        return LoadedModel("doubler", config.device, {}, lambda feed: feed["x"] * 2)

    path = _version(tmp_path, "model.double")
    loaded = load_runtime(path, device="cuda:1", threads=2)
    assert loaded({"x": np.array([1.5, -2.0])}).tolist() == [3.0, -4.0]
    assert seen == {"path": path, "config": LoadConfig("cuda:1", 2, None)}
    assert ModelConfig(backend="doubler").backend == "doubler"  # config.yaml may name it
