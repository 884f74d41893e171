"""Overload and timeouts answer 429/503 with Retry-After; a missing repository is an error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tensorfab.errors import TensorfabError
from tensorfab.serve.batching import QueueFullError, RequestTimeoutError
from tensorfab.serve.config import ModelConfig
from tensorfab.serve.metrics import ServerMetrics
from tensorfab.serve.protocol import ProtocolError
from tensorfab.serve.repository import LoadedVersion, ModelRepository, version_dirs

META = {"task": "image-classification", "labels": ["a", "b"],
        "input": {"kind": "image", "channels": 1, "height": 2, "width": 2}}  # fmt: skip


class _Runtime:
    meta = META
    backend = "onnxruntime"


class _Batcher:
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
