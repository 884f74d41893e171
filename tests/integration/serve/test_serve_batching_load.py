"""Dynamic batching end to end: every answer equals the unbatched one; bounded load; auth;
graceful shutdown."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tensorfab.optimize.runtime import load_runtime
from tensorfab.serve import BackgroundServer, Bind, ServerOptions
from tensorfab.serve.loadgen import LoadSpec, run_load


def _text_request(ids: list[int]) -> dict:
    n = len(ids)
    return {
        "inputs": [
            {"name": "input_ids", "shape": [1, n], "datatype": "INT64", "data": ids},
            {"name": "attention_mask", "shape": [1, n], "datatype": "INT64", "data": [1] * n},
        ]
    }


BATCH_KEYS = (
    "tensorfab_batch_size_sum",
    "tensorfab_batch_size_count",
    "tensorfab_batch_requests_count",
)


def _batch_sizes(server: BackgroundServer, model: str) -> tuple[float, float, float]:
    """Rows computed, groups computed and batches taken from the queue, so far."""
    text = httpx.get(server.url + "/metrics").text
    values = dict.fromkeys(BATCH_KEYS, 0.0)
    for line in text.splitlines():
        for key in BATCH_KEYS:
            if line.startswith(key + "{") and f'model="{model}"' in line:
                values[key] = float(line.rsplit(" ", 1)[1])
    return values[BATCH_KEYS[0]], values[BATCH_KEYS[1]], values[BATCH_KEYS[2]]


@pytest.mark.parametrize("model", ["ner", "ner-torch"])  # ONNX, PyTorch: both ragged
def test_concurrent_requests_of_different_lengths_batch_and_each_equals_its_unbatched_answer(
    server: BackgroundServer, serve_repo: Path, model: str
) -> None:
    rng = np.random.default_rng(0)
    requests = [
        [101, *rng.integers(1000, 20000, int(n)).tolist(), 102] for n in rng.integers(1, 20, 16)
    ]
    runtime = load_runtime(serve_repo / model / "1")
    assert runtime.ragged  # a BERT encoder: exported and run over the real tokens only
    rows_before, batches_before, taken_before = _batch_sizes(server, model)
    start = threading.Barrier(len(requests), timeout=60)

    def post(ids: list[int]) -> httpx.Response:
        """Connected first, then all at once: on a quiet machine requests sent one by one
        each find the model idle and run alone (the batcher's rule for a lone request)."""
        with httpx.Client(base_url=server.url, timeout=60) as client:
            client.get("/v2/health/ready")
            start.wait()
            return client.post(f"/v2/models/{model}/infer", json=_text_request(ids))

    with ThreadPoolExecutor(len(requests)) as pool:
        responses = list(pool.map(post, requests))
    for ids, response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        out = response.json()["outputs"][0]
        got = np.array(out["data"], np.float32).reshape(out["shape"])
        alone = runtime(
            {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), np.int64)}
        )
        assert got.shape == alone.shape == (1, len(ids), alone.shape[-1])
        np.testing.assert_allclose(got, alone, atol=1e-4)
    rows, batches, taken = _batch_sizes(server, model)
    assert rows - rows_before == 16
    assert taken - taken_before < 16  # requests really were batched (mean batch > 1)
    assert batches - batches_before == taken - taken_before  # each taken batch in one call


def test_bounded_load_test_has_no_failed_request(server: BackgroundServer) -> None:
    bodies = [
        b'{"text": "EU rejects German call to boycott British lamb ."}',
        b'{"text": "Paris ."}',
    ]
    spec = LoadSpec(
        server.url + "/v1/models/ner:predict", bodies, clients=32, requests=192, max_seconds=60
    )
    summary = run_load(spec)
    assert summary["requests"] == 192 and summary["failed"] == 0, summary["status_counts"]
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] and summary["requests_per_s"] > 0


def test_bearer_token_guards_everything_but_health(serve_repo: Path, free_port) -> None:
    options = ServerOptions(repository=serve_repo, models=["digits"], token="s3cret")
    with BackgroundServer(options, Bind(port=free_port())) as secured:
        assert httpx.get(secured.url + "/v2/health/ready").status_code == 200
        refused = httpx.get(secured.url + "/v2/models/digits")
        assert refused.status_code == 401 and refused.json() == {
            "error": "missing or wrong bearer token"
        }
        wrong = httpx.get(secured.url + "/v2/models/digits", headers={"authorization": "Bearer x"})
        assert wrong.status_code == 401
        right = httpx.get(
            secured.url + "/v2/models/digits", headers={"authorization": "Bearer s3cret"}
        )
        assert right.status_code == 200 and right.json()["name"] == "digits"
        index = httpx.post(
            secured.url + "/v2/repository/index", headers={"authorization": "Bearer s3cret"}
        )
        assert {m["name"]: m["state"] for m in index.json()}["ner"] == "UNAVAILABLE"


def test_graceful_shutdown_finishes_the_request_in_flight(serve_repo: Path, free_port) -> None:
    options = ServerOptions(repository=serve_repo, models=["ner"])  # 50 ms batching delay
    running = BackgroundServer(options, Bind(port=free_port()))
    running.__enter__()
    result: dict[str, httpx.Response] = {}
    sender = threading.Thread(
        target=lambda: result.setdefault(
            "r",
            httpx.post(
                running.url + "/v2/models/ner/infer",
                json=_text_request([101, 7592, 102]),
                timeout=30,
            ),
        )
    )
    # a lone request at an idle model runs at once (no batching wait): hold it in the
    # model long enough for the server to be told to stop while it is there
    batcher = running.server.config.app.state.repo.models["ner"].versions["1"].batcher
    reached, run = threading.Event(), batcher.run

    def held(feed: dict) -> object:
        reached.set()
        time.sleep(0.2)
        return run(feed)

    batcher.run = held
    sender.start()
    assert reached.wait(10), "the request never reached the model"
    running.__exit__(None, None, None)  # sets should_exit, as SIGTERM does
    sender.join(timeout=30)
    assert result["r"].status_code == 200
    assert not running.thread.is_alive()
