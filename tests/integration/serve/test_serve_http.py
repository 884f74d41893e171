"""The server through its real protocol: an unmodified tritonclient, and raw HTTP for errors."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tensorfab.optimize.runtime import load_runtime
from tensorfab.serve import BackgroundServer


def _client(server: BackgroundServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)


def _infer_images(client, model: str, images: np.ndarray, binary: bool, **kw) -> np.ndarray:
    tensor = triton.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images, binary_data=binary)
    outputs = [triton.InferRequestedOutput("logits", binary_data=binary)]
    return client.infer(model, [tensor], outputs=outputs, **kw).as_numpy("logits")


def test_tritonclient_health_metadata_config_and_index(server: BackgroundServer) -> None:
    client = _client(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "tensorfab"
    meta = client.get_model_metadata("digits")
    assert meta["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 1, 28, 28]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get_model_metadata("digits-torch")["versions"] == ["1", "2"]
    assert client.get_model_metadata("ner")["outputs"][0]["shape"][:2] == [-1, -1]
    config = client.get_model_config("ner")
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 50000}
    assert client.is_model_ready("digits") and client.is_model_ready("digits-torch", "2")
    assert not client.is_model_ready("broken") and not client.is_model_ready("digits-torch", "3")
    index = {(m["name"], m["version"]): m for m in client.get_model_repository_index()}
    assert index[("digits-torch", "2")]["state"] == "READY"
    assert index[("broken", "1")]["state"] == "UNAVAILABLE"
    assert "failed to load" in index[("broken", "1")]["reason"]


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer_equals_the_runtime_for_onnx_and_torch(
    server: BackgroundServer, serve_repo: Path, binary: bool
) -> None:
    client, images = _client(server), _images(5)
    expected = load_runtime(serve_repo / "digits" / "1")({"images": images})
    got = _infer_images(client, "digits", images, binary, request_id="r1")
    np.testing.assert_allclose(got, expected, atol=1e-5)
    torch_v2 = _infer_images(client, "digits-torch", images, binary, model_version="2")
    np.testing.assert_allclose(torch_v2, expected, atol=1e-4)


def test_tritonclient_text_infer_and_unload_load_round_trip(server: BackgroundServer) -> None:
    client = _client(server)
    ids = np.array([[101, 7270, 22961, 102]], dtype=np.int64)
    inputs = [triton.InferInput(n, [1, 4], "INT64") for n in ("input_ids", "attention_mask")]
    inputs[0].set_data_from_numpy(ids)
    inputs[1].set_data_from_numpy(np.ones_like(ids))
    logits = client.infer("ner", inputs).as_numpy("logits")
    assert logits.shape[:2] == (1, 4) and logits.dtype == np.float32
    client.unload_model("digits")
    assert not client.is_model_ready("digits")
    with pytest.raises(InferenceServerException, match="not loaded"):
        _infer_images(client, "digits", _images(1), True)
    client.load_model("digits")
    assert client.is_model_ready("digits")
    with pytest.raises(InferenceServerException, match="failed to load"):
        client.load_model("broken")


def _post(server: BackgroundServer, path: str, **kw) -> httpx.Response:
    return httpx.post(server.url + path, timeout=30, **kw)


GOOD = {"inputs": [{"name": "images", "shape": [1, 1, 28, 28], "datatype": "UINT8",
                    "data": [0] * 784}]}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/nope/infer", GOOD, 404, "model 'nope' is not in the repository"),
        ("/v2/models/digits/versions/9/infer", GOOD, 404, "version '9' is not loaded"),
        ("/v2/models/broken/infer", GOOD, 503, "not ready: failed to load"),
        ("/v2/models/digits/infer", {"inputs": [{**GOOD["inputs"][0], "name": "pixels"}]}, 400,
         r"missing ['images'], unexpected ['pixels']"),
        ("/v2/models/digits/infer", {"inputs": [{**GOOD["inputs"][0], "datatype": "FP32"}]}, 400,
         "datatype FP32, the model expects UINT8"),
        ("/v2/models/digits/infer",
         {"inputs": [{**GOOD["inputs"][0], "shape": [1, 28, 28], "data": [0] * 784}]}, 400,
         "shape [1, 28, 28], expected ['batch', 1, 28, 28]"),
        ("/v2/models/digits/infer", b'{"inputs": [', 400, "malformed JSON"),
        ("/v2/models/digits/infer", {"inputs": []}, 400, "missing ['images']"),
        ("/v2/nowhere", GOOD, 404, "POST /v2/nowhere: Not Found"),
    ],
)  # fmt: skip
def test_bad_requests_get_4xx_with_the_protocols_error_json(
    server: BackgroundServer, path: str, body: object, status: int, message: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = _post(server, path, content=content)
    assert response.status_code == status
    assert message in response.json()["error"]
    ok = _post(server, "/v2/models/digits/infer", json=GOOD)  # and the server keeps serving
    assert ok.status_code == 200 and ok.json()["outputs"][0]["shape"] == [1, 10]


def test_oversize_body_is_refused_with_413(server: BackgroundServer) -> None:
    response = _post(server, "/v2/models/digits/infer", content=b"x" * (17 * 1024 * 1024))
    assert response.status_code == 413 and "exceed the limit" in response.json()["error"]


def test_predict_endpoint_gives_entities_and_image_labels(
    server: BackgroundServer, serve_repo: Path
) -> None:
    from PIL import Image

    from tensorfab.package import load_package
    from tensorfab.tasks.prediction import predict_texts

    texts = ["EU rejects German call to boycott British lamb .", "Peter Blackburn visited Paris ."]
    got = _post(server, "/v1/models/ner:predict", json={"instances": texts})
    assert got.status_code == 200, got.text
    pkg = load_package(serve_repo.parent / "runs" / "ner")
    expected = predict_texts(lambda b: pkg.task.logits(pkg.model, b), pkg.task, texts)
    rows = got.json()["predictions"]
    assert [r["tags"] for r in rows] == [e["tags"] for e in expected]
    assert [[x["text"] for x in r["entities"]] for r in rows] == [
        [x["text"] for x in e["entities"]] for e in expected
    ]
    bad = _post(server, "/v1/models/ner:predict", json={"instances": [3]})
    assert bad.status_code == 400 and "instances" in bad.json()["error"]

    import io

    png = io.BytesIO()
    Image.fromarray(_images(1)[0, 0]).save(png, format="PNG")
    image = _post(server, "/v1/models/digits:predict", content=png.getvalue())
    assert image.status_code == 200
    row = image.json()["predictions"][0]
    assert row["label"] in [str(d) for d in range(10)] and 0 < row["score"] <= 1
    junk = _post(server, "/v1/models/digits:predict", content=b"not an image")
    assert junk.status_code == 400
    assert junk.json() == {
        "error": "request body: not an image PIL can read (cannot identify image file)"
    }


def test_metrics_count_requests_and_batches(server: BackgroundServer) -> None:
    for _ in range(3):
        assert _post(server, "/v2/models/digits/infer", json=GOOD).status_code == 200
    _post(server, "/v2/models/digits/infer", json={"inputs": []})
    text = httpx.get(server.url + "/metrics").text
    ok = _sample(text, "tensorfab_inference_requests_total", 'outcome="success"', 'model="digits"')
    failed = _sample(
        text, "tensorfab_inference_requests_total", 'outcome="failure"', 'model="digits"'
    )
    assert ok >= 3 and failed >= 1
    assert _sample(text, "tensorfab_batch_size_count", 'model="digits"') >= 3
    assert _sample(text, "tensorfab_queue_duration_seconds_count", 'model="digits"') >= 3
    assert "tensorfab_compute_duration_seconds_bucket" in text
    # the predict endpoint counts too
    assert _post(server, "/v1/models/ner:predict", json={"text": "Paris ."}).status_code == 200
    assert _post(server, "/v1/models/ner:predict", json={"text": ""}).status_code == 400
    text = httpx.get(server.url + "/metrics").text
    assert (
        _sample(text, "tensorfab_inference_requests_total", 'outcome="success"', 'model="ner"') >= 1
    )
    assert (
        _sample(text, "tensorfab_inference_requests_total", 'outcome="failure"', 'model="ner"') >= 1
    )


def _sample(text: str, metric: str, *labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(metric + "{") and all(label in line for label in labels):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{metric} {labels} not in /metrics")
