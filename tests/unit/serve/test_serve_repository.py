"""Overload and timeouts answer 429/503 with Retry-After; a missing repository is an error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from tensorfab.errors import TensorfabError
from tensorfab.package.repository import ModelConfig, repository_models, version_dirs
from tensorfab.serve.batching import QueueFullError, RequestTimeoutError
from tensorfab.serve.metrics import ServerMetrics
from tensorfab.serve.protocol import ProtocolError
from tensorfab.serve.repository import LoadedVersion, ModelRepository, public_reason
from tensorfab.tasks import ServingLimits
from tensorfab.tasks.encoder_task import token_limits
from tensorfab.tasks.token_classification import TokenClassification

META = {"task": "image-classification", "labels": ["a", "b"],
        "input": {"kind": "image", "channels": 1, "height": 2, "width": 2}}  # fmt: skip


class _Runtime:
    meta = META
    backend = "onnxruntime"


class _Batcher:
    closing = False

    def __init__(self, error: Exception | None) -> None:
        self.error, self.seen = error, []

    async def submit(self, feed: dict, rows: int, timeout_s: float) -> np.ndarray:
        self.seen.append((rows, timeout_s))
        if self.error:
            raise self.error
        return np.zeros((rows, 2), np.float32)


def _version(error: Exception | None, **config: object) -> LoadedVersion:
    return LoadedVersion(
        "m", "1", ModelConfig(**config), Path("m/1"), _Runtime(), _Batcher(error), None
    )  # type: ignore[arg-type]


def _infer(repo: ModelRepository, model: LoadedVersion, timeout_us: object = None) -> dict:
    images = {"images": np.zeros((2, 1, 2, 2), np.uint8)}
    return asyncio.run(repo.infer(model, images, timeout_us))


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (QueueFullError("queue full (4 requests waiting)"), 429, "queue full .*retry later"),
        (RequestTimeoutError("timed out after 0.100 s in queue"), 503, "request timed out"),
    ],
)
def test_overload_answers_with_retry_after(
    tmp_path: Path, error: Exception, status: int, message: str
) -> None:
    repo = ModelRepository(tmp_path, ServerMetrics())
    with pytest.raises(ProtocolError, match=message) as info:
        _infer(repo, _version(error))
    assert info.value.status == status and info.value.headers == {"Retry-After": "1"}


def test_request_timeout_parameter_only_shortens_the_configured_one(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path, ServerMetrics())
    model = _version(None, timeout_ms=2000)
    assert _infer(repo, model)["logits"].shape == (2, 2)
    _infer(repo, model, timeout_us=500_000)
    _infer(repo, model, timeout_us=9_000_000)
    assert model.batcher.seen == [(2, 2.0), (2, 0.5), (2, 2.0)]


def test_a_missing_repository_and_version_folders(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match="no such model repository folder"):
        ModelRepository(tmp_path / "nope", ServerMetrics())
    for name in ("2", "10", "1", "notes", "3x"):
        (tmp_path / name).mkdir()
    assert version_dirs(tmp_path) == ["1", "2", "10"]


TEXT_META = {"task": "token-classification", "labels": ["O", "B-PER"], "input": {"kind": "text"}}


class _TextRuntime:
    meta = TEXT_META
    backend = "onnxruntime"


def _text_version(limits: ServingLimits) -> LoadedVersion:
    return LoadedVersion(
        "ner", "1", ModelConfig(), Path("ner/1"), _TextRuntime(), _Batcher(None), None, limits
    )  # type: ignore[arg-type]


def test_token_ids_outside_the_limits_are_refused_before_they_join_a_batch(
    tmp_path: Path,
) -> None:
    repo = ModelRepository(tmp_path, ServerMetrics())
    model = _text_version(ServingLimits(vocab_size=100, max_positions=8))
    ids = np.array([[1, 2, 100]], np.int64)
    with pytest.raises(ProtocolError) as info:
        asyncio.run(repo.infer(model, {"input_ids": ids, "attention_mask": np.ones_like(ids)}))
    assert str(info.value) == (
        "input 'input_ids': token id 100 at [0, 2] is outside the vocabulary (0..99)"
    )
    assert info.value.status == 400 and model.batcher.seen == []  # never queued
    ok = np.array([[1, 2, 99]], np.int64)
    asyncio.run(repo.infer(model, {"input_ids": ok, "attention_mask": np.ones_like(ok)}))
    assert model.batcher.seen == [(1, 30.0)]


class _Tokenizer:
    def __init__(self, size: int, model_max_length: int) -> None:
        self.size, self.model_max_length = size, model_max_length

    def __len__(self) -> int:
        return self.size


def test_token_limits_come_from_the_encoder_config_capped_by_the_tokenizer(
    tmp_path: Path,
) -> None:
    (tmp_path / "encoder").mkdir()
    config = {"vocab_size": 30522, "max_position_embeddings": 514}
    (tmp_path / "encoder" / "config.json").write_text(json.dumps(config))
    assert token_limits(tmp_path) == ServingLimits(30522, 514)
    # RoBERTa-like: 514 position rows, 2 of them kept for padding; the tokenizer says 512
    assert token_limits(tmp_path, _Tokenizer(30000, 512)) == ServingLimits(30522, 512)
    huge = _Tokenizer(30000, int(1e30))  # transformers' "no limit known"
    assert token_limits(tmp_path, huge) == ServingLimits(30522, 514)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert token_limits(empty, _Tokenizer(250, 128)) == ServingLimits(250, 128)
    assert token_limits(empty) == ServingLimits(None, None)


def test_the_served_task_truncates_within_the_models_positions() -> None:
    def within(max_length: int, positions: int | None) -> int:
        task = TokenClassification(["O"], max_length=max_length)
        return task.within(ServingLimits(max_positions=positions)).max_length

    assert within(1024, 512) == 512
    assert within(128, 512) == 128
    assert within(1024, None) == 1024


def test_repository_models_are_the_folders_with_a_version(tmp_path: Path) -> None:
    for folder in ("b/1", "a/2", "notes", "c/old"):
        (tmp_path / folder).mkdir(parents=True)
    assert repository_models(tmp_path) == ["a", "b"]


def test_a_backend_nobody_registered_fails_the_model_naming_its_config(tmp_path: Path) -> None:
    """Named relative to the repository: the index shows no server filesystem paths."""
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.yaml").write_text("backend: tensorrt\n")
    repo = ModelRepository(tmp_path, ServerMetrics())
    state = asyncio.run(repo.load("m"))
    assert not state.ready
    assert state.reason == (
        "failed to load: m/config.yaml: backend 'tensorrt'; choose from auto, onnxruntime, torch"
    )


def test_load_failure_reasons_show_no_filesystem_paths(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    detail = (
        f"{root}/m/1/tensorfab.json: cannot read /home/alice/secret/enc.bin "
        "(see C:\\models\\x); digits/1 and 3/4 stay\nsecond line"
    )
    assert public_reason(detail, root) == (
        "m/1/tensorfab.json: cannot read <path> (see <path>); digits/1 and 3/4 stay"
    )


def _reason(tmp_path: Path, name: str = "m") -> str:
    state = asyncio.run(ModelRepository(tmp_path, ServerMetrics()).load(name))
    assert not state.ready
    return state.reason


def test_bad_model_folders_fail_in_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.yaml").mkdir()
    assert _reason(tmp_path) == (
        "failed to load: m/config.yaml: not a file (a model's config.yaml is a YAML file)"
    )
    (tmp_path / "m" / "config.yaml").rmdir()
    (tmp_path / "m" / "config.yaml").write_bytes(b"max_batch_size: 4\n\xc7\xff\n")
    assert _reason(tmp_path) == (
        "failed to load: m/config.yaml:2: invalid UTF-8 (byte 0xc7 at column 1)"
    )
    (tmp_path / "m" / "config.yaml").unlink()
    (tmp_path / "m" / "1" / "tensorfab.json").write_text("{}")
    (tmp_path / "m" / "1" / "manifest.json").write_text("[1, 2]")
    assert _reason(tmp_path) == (
        "failed to load: m/1/manifest.json: expected {'algorithm': 'sha256', 'files': {...}}"
    )
    (tmp_path / "bad name" / "1").mkdir(parents=True)
    assert _reason(tmp_path, "bad name") == (
        "failed to load: 'bad name' is not a model name; a model name is letters, digits, "
        "'_', '-' and '.' (no path separators, not '.' or '..')"
    )


def test_a_folder_without_a_version_and_a_package_without_manifest_are_told_once(
    tmp_path: Path,
) -> None:
    for folder in ("verabc/abc", "empty", "m/1"):
        (tmp_path / folder).mkdir(parents=True)
    told: list[str] = []
    repo = ModelRepository(tmp_path, ServerMetrics(), announce=told.append)
    for _ in range(2):  # a reload does not repeat the warnings
        asyncio.run(repo.load("m"))
    assert told == [
        f"warning: {tmp_path / 'empty'}: no numbered version folder (<model>/1/); not served",
        f"warning: {tmp_path / 'verabc'}: no numbered version folder (<model>/1/); not served",
        f"warning: {tmp_path / 'm' / '1'}: no manifest.json; its files are not verified",
    ]
