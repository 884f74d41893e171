"""The gRPC endpoint beside HTTP, through an unmodified tritonclient.grpc; statistics equal to
/metrics after a load test; the access log; KServe v1's model route."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

grpcclient = pytest.importorskip("tritonclient.grpc", reason="the grpc extra is not installed")
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from tensorfab.cli.main import main  # noqa: E402
from tensorfab.optimize.runtime import load_runtime  # noqa: E402
from tensorfab.serve import BackgroundServer, Bind, ServerOptions  # noqa: E402
from tensorfab.serve.loadgen import LoadSpec, run_load  # noqa: E402
from tensorfab.serve.metrics import page_sample  # noqa: E402
from tensorfab.serve.service import GrpcOptions  # noqa: E402
from testkit import cli_command  # noqa: E402

TOKEN = "grpc-secret"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MAX_BODY = 4 * 1024 * 1024


class Running:
    """The server under test, its gRPC address and the access-log lines it wrote."""

    def __init__(self, server: BackgroundServer, grpc_port: int, lines: list[str]) -> None:
        self.server, self.grpc_url, self.lines = server, f"127.0.0.1:{grpc_port}", lines

    def grpc(self) -> grpcclient.InferenceServerClient:
        return grpcclient.InferenceServerClient(self.grpc_url)

    def http(self) -> httpclient.InferenceServerClient:
        return httpclient.InferenceServerClient(self.server.url.removeprefix("http://"))


@pytest.fixture(scope="module")
def both(serve_repo: Path, free_port: Callable[[], int]) -> Iterator[Running]:
    lines: list[str] = []
    options = ServerOptions(
        repository=serve_repo,
        models=["digits", "digits-torch", "ner", "broken"],
        token=TOKEN,
        model_control="explicit",
        max_body_bytes=MAX_BODY,
        grpc=GrpcOptions(port=free_port(), grace_s=5, handshake_timeout_s=1, idle_timeout_s=3),
        access_log=lines.append,
    )
    assert options.grpc is not None
    with BackgroundServer(options, Bind(port=free_port())) as running:
        yield Running(running, options.grpc.port, lines)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)


def _infer_images(client, model: str, images: np.ndarray, **kw) -> np.ndarray:
    tensor = grpcclient.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    return client.infer(model, [tensor], headers=dict(AUTH), **kw).as_numpy("logits")


def _code(exc: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(exc.value.status()).removeprefix("StatusCode.")


def test_grpc_health_metadata_config_and_index(both: Running) -> None:
    client = both.grpc()
    assert client.is_server_live() and client.is_server_ready()  # open, as HTTP's health
    assert client.get_server_metadata(headers=dict(AUTH)).name == "tensorfab"
    meta = client.get_model_metadata("digits", headers=dict(AUTH))
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("images", "UINT8", [-1, 1, 28, 28])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("logits", "FP32", [-1, 10])
    ]
    assert list(client.get_model_metadata("digits-torch", headers=dict(AUTH)).versions) == [
        "1",
        "2",
    ]
    config = client.get_model_config("ner", headers=dict(AUTH)).config
    assert config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 50000
    assert [(i.name, list(i.dims)) for i in config.input] == [
        ("input_ids", [-1]),
        ("attention_mask", [-1]),
    ]
    assert json.loads(config.parameters["tensorfab"].string_value)["task"] == (
        "token-classification"
    )
    assert client.is_model_ready("digits", headers=dict(AUTH))
    assert client.is_model_ready("digits-torch", "2", headers=dict(AUTH))
    assert not client.is_model_ready("broken", headers=dict(AUTH))
    assert not client.is_model_ready("digits-torch", "3", headers=dict(AUTH))
    index = {
        (m.name, m.version): m for m in client.get_model_repository_index(headers=dict(AUTH)).models
    }
    assert index[("digits-torch", "2")].state == "READY"
    assert index[("broken", "1")].state == "UNAVAILABLE"
    assert "failed to load" in index[("broken", "1")].reason


def test_grpc_infer_equals_the_runtime_and_http(both: Running, serve_repo: Path) -> None:
    client, images = both.grpc(), _images(5)
    expected = load_runtime(serve_repo / "digits" / "1")({"images": images})
    got = _infer_images(client, "digits", images, request_id="g1")
    np.testing.assert_allclose(got, expected, atol=1e-5)
    torch_v2 = _infer_images(client, "digits-torch", images, model_version="2")
    np.testing.assert_allclose(torch_v2, expected, atol=1e-4)
    ids = np.array([[101, 7270, 22961, 102]], dtype=np.int64)
    inputs = [grpcclient.InferInput(n, [1, 4], "INT64") for n in ("input_ids", "attention_mask")]
    inputs[0].set_data_from_numpy(ids)
    inputs[1].set_data_from_numpy(np.ones_like(ids))
    result = client.infer("ner", inputs, headers=dict(AUTH))
    http_inputs = [
        httpclient.InferInput(n, [1, 4], "INT64") for n in ("input_ids", "attention_mask")
    ]
    http_inputs[0].set_data_from_numpy(ids)
    http_inputs[1].set_data_from_numpy(np.ones_like(ids))
    over_http = both.http().infer("ner", http_inputs, headers=dict(AUTH)).as_numpy("logits")
    assert result.as_numpy("logits").shape[:2] == (1, 4)
    np.testing.assert_array_equal(result.as_numpy("logits"), over_http)
    assert result.get_response().model_version == "1"


def test_grpc_refusals_map_to_triton_status_codes(both: Running) -> None:
    client, image = both.grpc(), _images(1)
    cases = [
        (lambda: client.get_server_metadata(), "UNAUTHENTICATED", "missing or wrong bearer"),
        (lambda: _infer_images(client, "nope", image), "NOT_FOUND", "not in the repository"),
        (lambda: _infer_images(client, "broken", image), "UNAVAILABLE", "is not ready"),
        (
            lambda: _infer_images(client, "digits", image.reshape(1, 28, 28, 1)),
            "INVALID_ARGUMENT",
            r"shape \[1, 28, 28, 1\], expected \['batch', 1, 28, 28\]",
        ),
        (
            lambda: _infer_images(client, "digits-torch", _images(17)),
            "INVALID_ARGUMENT",
            "17 rows exceed the model's max_batch_size 16",
        ),
        (  # over the model's own limit (64 rows), under the server's: refused before parsing
            lambda: _infer_images(client, "digits", _images(2200)),
            "RESOURCE_EXHAUSTED",
            r"exceed the limit of 1671168 for model 'digits'",
        ),
        (  # over the server's body limit: refused by gRPC before it reaches the servicer
            lambda: _infer_images(client, "digits", _images(MAX_BODY // 784 + 1)),
            "RESOURCE_EXHAUSTED",
            "larger than max",
        ),
        (
            lambda: client.load_model("broken", headers=dict(AUTH)),
            "INVALID_ARGUMENT",
            "failed to load",
        ),
    ]
    for call, code, message in cases:
        with pytest.raises(InferenceServerException) as exc:
            call()
        assert (_code(exc), bool(re.search(message, exc.value.message()))) == (code, True), (
            exc.value.message()
        )
    assert client.is_server_live()  # still serving


def test_grpc_unload_load_round_trip(both: Running) -> None:
    client = both.grpc()
    client.unload_model("digits-torch", headers=dict(AUTH))
    assert not client.is_model_ready("digits-torch", headers=dict(AUTH))
    with pytest.raises(InferenceServerException, match="is not loaded") as exc:
        _infer_images(client, "digits-torch", _images(1))
    assert _code(exc) == "UNAVAILABLE"
    client.load_model("digits-torch", headers=dict(AUTH))
    assert client.is_model_ready("digits-torch", "1", headers=dict(AUTH))


def test_statistics_equal_metrics_after_a_load_test(both: Running) -> None:
    """40 requests of 2 rows each from 4 clients, plus 3 that fail: the statistics of both
    fronts give the counts of /metrics, and those are the requests sent."""
    body = {"inputs": [{"name": "images", "shape": [2, 1, 28, 28], "datatype": "UINT8"}]}
    body["inputs"][0]["data"] = _images(2).ravel().tolist()
    url = f"{both.server.url}/v2/models/digits-torch/versions/1/infer"
    summary = run_load(LoadSpec(url, [json.dumps(body).encode()], 4, 40, 60.0, TOKEN))
    assert summary["succeeded"] == 40, summary
    for _ in range(3):
        with pytest.raises(InferenceServerException):
            _infer_images(both.grpc(), "digits-torch", _images(17), model_version="1")
    text = httpx.get(f"{both.server.url}/metrics", headers=dict(AUTH)).text
    over_http = both.http().get_inference_statistics("digits-torch", "1", headers=dict(AUTH))
    over_grpc = both.grpc().get_inference_statistics("digits-torch", "1", headers=dict(AUTH))
    (stats,) = over_http["model_stats"]
    grpc_stats = over_grpc.model_stats[0]
    labels = {"model": "digits-torch", "version": "1"}
    success = stats["inference_stats"]["success"]
    assert (
        success["count"]
        == 40
        == page_sample(text, "tensorfab_inference_requests_total", **labels, outcome="success")
    )
    assert stats["inference_stats"]["fail"]["count"] == 3
    assert stats["inference_count"] == 80 == page_sample(text, "tensorfab_batch_size_sum", **labels)
    executions = page_sample(text, "tensorfab_batch_size_count", **labels)
    assert (
        stats["execution_count"]
        == executions
        == sum(b["compute_infer"]["count"] for b in stats["batch_stats"])
    )
    assert stats["inference_stats"]["queue"]["count"] == 40
    assert success["ns"] == round(
        page_sample(text, "tensorfab_request_duration_seconds_sum", **labels) * 1e9
    )
    assert all(b["batch_size"] % 2 == 0 for b in stats["batch_stats"])  # 2 rows a request
    assert grpc_stats.inference_stats.success.count == 40
    assert grpc_stats.inference_count == 80 and grpc_stats.execution_count == executions
    with pytest.raises(InferenceServerException, match="not in the repository"):
        both.http().get_inference_statistics("nope", headers=dict(AUTH))
    every = both.http().get_inference_statistics(headers=dict(AUTH))["model_stats"]
    assert {(s["name"], s["version"]) for s in every} >= {("digits", "1"), ("digits-torch", "2")}


def test_access_log_has_a_line_per_request(both: Running) -> None:
    before = len(both.lines)
    both.http().is_server_live()
    _infer_images(both.grpc(), "digits", _images(1))
    with pytest.raises(InferenceServerException):
        both.grpc().get_server_metadata()
    expected = [
        r"127\.0\.0\.1:\d+ GET /v2/health/live 200 \d+\.\d ms",
        r"127\.0\.0\.1:\d+ grpc ModelInfer OK \d+\.\d ms",
        r"127\.0\.0\.1:\d+ grpc ServerMetadata UNAUTHENTICATED \d+\.\d ms",
    ]
    deadline = time.monotonic() + 5  # a line is written just after its answer is sent
    while True:
        new = both.lines[before:]
        found = [[line for line in new if re.fullmatch(e, line)] for e in expected]
        if all(found) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [len(f) for f in found] == [1, 1, 1], new


def test_kserve_v1_model_route_says_ready_and_metadata(both: Running) -> None:
    get = lambda path: httpx.get(both.server.url + path, headers=dict(AUTH))  # noqa: E731
    answer = get("/v1/models/digits")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["name"], body["ready"], body["version"]) == ("digits", True, "1")
    assert body["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 1, 28, 28]}]
    assert body["labels"] == [str(i) for i in range(10)]
    assert get("/v1/models/nope").json() == {"error": "model 'nope' is not in the repository"}
    assert get("/v1/models/nope").status_code == 404
    assert get("/v1/models/broken").status_code == 503
    assert httpx.get(both.server.url + "/v1/models/digits").status_code == 401


def _closed_after(address: tuple[str, int], send: bytes) -> float:
    """Seconds until the server closes a connection that sent ``send`` and then nothing."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(send)
        start = time.monotonic()
        while sock.recv(4096):  # the server's settings frame, then the close
            pass
        return time.monotonic() - start


def test_grpc_closes_silent_and_idle_connections(both: Running) -> None:
    """A socket that never starts HTTP/2 is closed at the handshake timeout (1 s here), one
    that starts it and then sends nothing at the idle timeout (3 s here), as HTTP's header
    and keep-alive timeouts close slow and idle sockets."""
    host, port = both.grpc_url.split(":")
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
    with ThreadPoolExecutor(2) as pool:
        silent = pool.submit(_closed_after, (host, int(port)), b"")
        idle = pool.submit(_closed_after, (host, int(port)), preface)
        assert 0.5 <= silent.result() <= 5
        assert 2.0 <= idle.result() <= 8
    assert both.grpc().is_server_live()


def test_serve_cli_with_grpc_port_and_access_log(serve_repo: Path, free_port, capsys) -> None:
    port, grpc_port = free_port(), free_port()
    assert main(["serve", str(serve_repo), "--port", "9", "--grpc-port", "9"]) == 2
    assert capsys.readouterr().err == (
        "error: --grpc-port 9: that is the HTTP port (--port) already; "
        "give gRPC a port of its own\n"
    )
    command = cli_command(
        "serve", str(serve_repo), "--port", str(port), "--grpc-port", str(grpc_port),
        "--models", "digits", "--access-log",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TENSORFAB_TOKEN"}  # no auth
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if client.is_server_ready():
                    break
            except InferenceServerException:
                time.sleep(0.2)
        logits = _infer_images(client, "digits", _images(2))
        assert logits.shape == (2, 10)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert f"gRPC (KServe v2) on 127.0.0.1:{grpc_port}\n" in out
    assert re.search(r"^127\.0\.0\.1:\d+ grpc ModelInfer OK \d+\.\d ms$", out, re.M), out
    assert re.search(r"stopped on SIGTERM: [1-9]\d* requests answered, 0 cut\n", out), out
