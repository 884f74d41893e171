"""config.yaml written from ModelConfig: every field with its description, read back equal,
never over a user's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tensorfab.errors import TensorfabError
from tensorfab.package.repository import (
    CONFIG_FILE,
    ModelConfig,
    config_yaml,
    load_model_config,
    write_model_config,
)

EVERY_FIELD = ModelConfig(
    backend="torch",
    device="cuda",
    precision="bf16",
    compile=True,
    cuda_graphs=False,
    threads=3,
    max_batch_size=0,
    max_queue_delay_us=500,
    max_padding=None,
    max_queue_size=7,
    timeout_ms=250,
    instances=2,
    versions="latest",
    warmup=False,
)


def test_every_field_round_trips_with_its_description(tmp_path: Path) -> None:
    assert write_model_config(tmp_path, EVERY_FIELD)
    assert load_model_config(tmp_path) == EVERY_FIELD
    lines = (tmp_path / CONFIG_FILE).read_text().splitlines()
    assert lines[0] == "# serving settings for every version of this model"
    assert lines[1:3] == [
        "backend: torch  # auto: onnxruntime when the version has model.onnx, else torch",
        "device: cuda  # cpu | cuda | auto",
    ]
    assert "threads: 3  # onnxruntime intra-op threads" in lines
    padding = lines.index("max_padding: null")  # its long description is wrapped above it
    assert lines[padding - 3 : padding] == [
        "# text: run a batch as sub-batches of similar length, each padded to at most (1 + "
        "max_padding) times",
        "# its real positions; null pads the whole batch to its longest request; a runtime "
        "that computes only",
        "# real tokens (a BERT encoder, in PyTorch or exported) takes the batch whole",
    ]
    assert max(len(line) for line in lines) <= 100
    settings = [line.split(":")[0] for line in lines if not line.startswith("#")]
    assert settings == list(ModelConfig.model_fields)


def test_only_the_set_and_named_fields_are_written_with_notes() -> None:
    config = ModelConfig(backend="onnxruntime")
    text = config_yaml(config, ("max_batch_size", "instances"), {"backend": "fp32 ONNX graph"})
    assert text == (
        "# serving settings for every version of this model\n"
        "backend: onnxruntime  # fp32 ONNX graph\n"
        "max_batch_size: 64  # rows per batch; 0 turns dynamic batching off (one request a batch)\n"
        "instances: 1  # batches computed at the same time\n"
    )


def test_defaults_written_and_left_out_read_back_the_same(tmp_path: Path) -> None:
    write_model_config(tmp_path, ModelConfig(), ("max_queue_size",))
    read = load_model_config(tmp_path)
    assert read == ModelConfig() and read.model_fields_set == {"max_queue_size"}


def test_a_users_config_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("max_batch_size: 8\n")
    assert not write_model_config(tmp_path, EVERY_FIELD)
    assert (tmp_path / CONFIG_FILE).read_text() == "max_batch_size: 8\n"


def test_a_backend_name_that_is_not_a_name_is_refused_with_its_line(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("instances: 2\nbackend: ../onnx\n")
    with pytest.raises(TensorfabError, match=r"config\.yaml:2: backend: String should match"):
        load_model_config(tmp_path)
