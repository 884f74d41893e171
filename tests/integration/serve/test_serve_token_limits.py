"""Text requests a model cannot take are refused alone (400), and never fail their batch."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tensorfab.optimize.runtime import load_runtime
from tensorfab.serve import BackgroundServer
from tensorfab.serve.metrics import ServerMetrics
from tensorfab.serve.repository import ModelRepository
from tensorfab.tasks import ServingLimits

TEXT_MODELS = ["ner", "ner-torch"]  # onnxruntime and PyTorch


def _request(ids: list[int], mask: list[int] | None = None) -> dict:
    n = len(ids)
    return {
        "inputs": [
            {"name": "input_ids", "shape": [1, n], "datatype": "INT64", "data": ids},
            {"name": "attention_mask", "shape": [1, n], "datatype": "INT64",
             "data": [1] * n if mask is None else mask},
        ]
    }  # fmt: skip


def _good(i: int) -> list[int]:
    return [101, 2000 + 97 * i, 3000 + i, 4000, 102][: 3 + i % 3]


@pytest.mark.parametrize("model", TEXT_MODELS)
def test_one_bad_request_among_good_ones_fails_alone_with_400(
    server: BackgroundServer, serve_repo: Path, model: str
) -> None:
    bodies = [_request(_good(i)) for i in range(10)]
    bodies.insert(4, _request([101, 5, 6, 99999999, 102]))
    url = f"{server.url}/v2/models/{model}/infer"
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda b: httpx.post(url, json=b, timeout=60), bodies))
    bad = responses.pop(4)
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "input 'input_ids': token id 99999999 at [0, 3] is outside the vocabulary "
        "(0..30521)"
    }
    runtime = load_runtime(serve_repo / model / "1")
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        out = response.json()["outputs"][0]
        ids = np.array([_good(i)])
        alone = runtime({"input_ids": ids, "attention_mask": np.ones_like(ids)})
        got = np.array(out["data"], np.float32).reshape(out["shape"])
        np.testing.assert_allclose(got, alone, atol=1e-4)


@pytest.mark.parametrize("model", TEXT_MODELS)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_request([]), "input 'input_ids': 0 tokens per row; the model takes 1 to 512"),
        (_request([101] + [7000] * 1998 + [102]),
         "input 'input_ids': 2000 tokens per row; the model takes 1 to 512"),
        (_request([101, -5, 102]),
         "input 'input_ids': token id -5 at [0, 1] is outside the vocabulary (0..30521)"),
        (_request([101, 7000, 102], [1, 2, 1]),
         "input 'attention_mask': value 2 at [0, 1]; a mask holds only 0 and 1"),
    ],
)  # fmt: skip
def test_token_inputs_the_model_cannot_embed_get_400_naming_the_input(
    server: BackgroundServer, model: str, body: dict, message: str
) -> None:
    response = httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=60)
    assert response.status_code == 400
    assert response.json() == {"error": message}
    longest = _request([101] + [7000] * 510 + [102])  # exactly the 512 positions: fine
    ok = httpx.post(f"{server.url}/v2/models/{model}/infer", json=longest, timeout=60)
    assert ok.status_code == 200 and ok.json()["outputs"][0]["shape"][:2] == [1, 512]


@pytest.mark.parametrize("model", TEXT_MODELS)
def test_a_batch_failing_in_the_real_runtime_is_rerun_so_only_the_faulty_request_fails(
    serve_repo: Path, model: str
) -> None:
    """Past the checks (submitted to the batcher directly), as an input no check foresees."""

    async def main() -> tuple[ServingLimits, list]:
        repo = ModelRepository(serve_repo, ServerMetrics(), compute_threads=1)
        state = await repo.load(model)
        version = state.versions["1"]
        feeds = [
            {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), np.int64)}
            for ids in ([101, 2000, 102], [101, 99999999, 102], [101, 3000, 4000])
        ]
        try:
            out = await asyncio.gather(
                *(version.batcher.submit(f, 1, 30.0) for f in feeds), return_exceptions=True
            )
        finally:
            await repo.close()
        return version.limits, out

    limits, (first, bad, third) = asyncio.run(main())
    assert limits == ServingLimits(vocab_size=30522, max_positions=512)
    assert isinstance(bad, Exception)
    runtime = load_runtime(serve_repo / model / "1")
    for ids, got in (([101, 2000, 102], first), ([101, 3000, 4000], third)):
        alone = runtime({"input_ids": np.array([ids]), "attention_mask": np.ones((1, 3), np.int64)})
        np.testing.assert_allclose(got, alone, atol=1e-4)


def test_predict_truncates_a_text_longer_than_the_model_takes(server: BackgroundServer) -> None:
    text = " ".join(["Paris"] * 3000)
    response = httpx.post(f"{server.url}/v1/models/ner:predict", json={"text": text}, timeout=60)
    assert response.status_code == 200, response.text
    row = response.json()["predictions"][0]
    assert len(row["tags"]) == 3000  # words past the 510 the model takes are tagged O
    assert row["tags"][510:] == ["O"] * (3000 - 510)
