"""Serving under change and abuse (issue 12), against a real port on 127.0.0.1: reloads
while clients infer lose no request, malformed bodies are 400s naming the field on a
connection that stays open, slow sockets are closed, model control is explicit."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzjson import any_json
from tensorfab.serve import BackgroundServer, Bind, ServerOptions
from tensorfab.serve.metrics import ServerMetrics
from tensorfab.serve.repository import ModelRepository

GOOD = {
    "inputs": [{"name": "images", "shape": [1, 1, 28, 28], "datatype": "UINT8", "data": [0] * 784}]
}


def _bad(**changes: object) -> bytes:
    body = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if key.startswith("input_"):
            body["inputs"][0][key.removeprefix("input_")] = value
        else:
            body[key] = value
    return json.dumps(body).encode()


def _binary(shape: list[int], size: int = 8) -> tuple[bytes, dict[str, str]]:
    head = {"inputs": [{"name": "images", "shape": shape, "datatype": "UINT8",
                        "parameters": {"binary_data_size": size}}]}  # fmt: skip
    raw = json.dumps(head).encode()
    return raw + bytes(size), {"Inference-Header-Content-Length": str(len(raw))}


# The ten malformed requests of issue 12 (item 4), the float size it wrongly accepted, and
# what each answer must name.
MALFORMED = [
    (_bad(input_parameters="x"), {}, "inputs[0].parameters"),
    (_bad(parameters="x"), {}, "parameters"),
    (_bad(parameters=[1]), {}, "parameters"),
    (_bad(outputs=[{"name": "logits", "parameters": "x"}]), {}, "outputs[0].parameters"),
    (_bad(outputs=5), {}, "outputs"),
    (_bad(input_shape=[True, 1, 28, 28]), {}, "inputs[0].shape[0]"),
    (b"[" * 100_000, {}, "malformed JSON"),
    (*_binary([4294967296, 4294967296]), "more than"),
    (*_binary([2**32, 2**32, 0]), "more than"),
    (*_binary([2**62, 3]), "more than"),
]
FLOAT_SIZE = b'{"inputs": [{"name": "images", "shape": [1, 1, 28, 28], "datatype": "UINT8", ' \
    b'"parameters": {"binary_data_size": 784.0}}]}'  # fmt: skip


@pytest.fixture(scope="module")
def controlled(serve_repo: Path, free_port) -> Iterator[BackgroundServer]:
    """A server of its own with --model-control explicit and short socket timeouts."""
    options = ServerOptions(
        repository=serve_repo,
        models=["digits", "digits-torch"],
        model_control="explicit",
        body_timeout_s=0.5,
    )
    bind = Bind(port=free_port(), header_timeout_s=0.5)
    with BackgroundServer(options, bind) as running:
        yield running


def test_each_malformed_request_is_a_400_naming_its_field_and_the_connection_stays(
    controlled: BackgroundServer,
) -> None:
    with httpx.Client(base_url=controlled.url, timeout=10) as client:
        for body, headers, named in MALFORMED:
            answer = client.post("/v2/models/digits/infer", content=body, headers=headers)
            assert answer.status_code == 400, (named, answer.text)
            assert named in answer.json()["error"]
            assert client.post("/v2/models/digits/infer", json=GOOD).status_code == 200
        header = {"Inference-Header-Content-Length": str(len(FLOAT_SIZE))}
        answer = client.post(
            "/v2/models/digits/infer", content=FLOAT_SIZE + bytes(784), headers=header
        )
        assert answer.status_code == 400
        assert "binary_data_size: must be an integer" in answer.json()["error"]


def test_a_body_over_the_models_limit_is_413_before_it_is_read(
    controlled: BackgroundServer,
) -> None:
    port = int(controlled.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 16777216\r\n\r\n{"
        )
        answer = sock.recv(4096).decode()
        rest = sock.recv(4096)  # the server closes: it does not take in the 16 MB announced
    assert answer.startswith("HTTP/1.1 413")
    assert "exceed the limit of" in answer  # 784 values x 64 rows x 32 bytes + slack
    assert "connection: close" in answer.lower() and rest == b""


def test_a_gzip_body_is_served_as_the_plain_one_and_an_unknown_encoding_is_a_415(
    controlled: BackgroundServer,
) -> None:
    with httpx.Client(base_url=controlled.url, timeout=10) as client:
        plain = client.post("/v2/models/digits/infer", json=GOOD)
        body = gzip.compress(json.dumps(GOOD).encode())
        packed = client.post(
            "/v2/models/digits/infer", content=body, headers={"Content-Encoding": "gzip"}
        )
        assert plain.status_code == packed.status_code == 200
        assert packed.json()["outputs"] == plain.json()["outputs"]
        brotli = client.post(
            "/v2/models/digits/infer", content=body, headers={"Content-Encoding": "br"}
        )
        assert brotli.status_code == 415
        assert "Content-Encoding 'br' is not supported" in brotli.json()["error"]


def test_slow_headers_and_slow_bodies_are_closed_at_their_timeouts(
    controlled: BackgroundServer,
) -> None:
    port = int(controlled.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as silent, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as half, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as slow:  # fmt: skip
        half.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # no blank line
        slow.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100\r\n\r\n{")  # fmt: skip
        start = time.monotonic()
        assert silent.recv(100) == b""  # closed by the server
        assert half.recv(100) == b""
        answer = slow.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408")
        assert slow.recv(100) == b""
        assert time.monotonic() - start < 3.0


def test_model_control_is_explicit(serve_repo: Path, free_port) -> None:
    options = ServerOptions(repository=serve_repo, models=["digits"])  # model control: none
    with BackgroundServer(options, Bind(port=free_port())) as server:
        for action in ("load", "unload"):
            answer = httpx.post(f"{server.url}/v2/repository/models/digits/{action}")
            assert answer.status_code == 403
            assert "--model-control explicit" in answer.json()["error"]
        assert httpx.get(f"{server.url}/v2/models/digits/ready").status_code == 200


def _clients(url: str, stop: threading.Event, results: list[int], count: int) -> list:
    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                for model in ("digits", "digits-torch"):
                    results.append(http.post(f"/v2/models/{model}/infer", json=GOOD).status_code)

    threads = [threading.Thread(target=client) for _ in range(count)]
    for t in threads:
        t.start()
    return threads


def test_reloads_under_load_lose_no_request_and_leave_one_batcher_per_version(
    controlled: BackgroundServer,
) -> None:
    stop, results = threading.Event(), []
    threads = _clients(controlled.url, stop, results, 8)
    try:

        def reload(model: str) -> int:
            url = f"{controlled.url}/v2/repository/models/{model}/load"
            return httpx.post(url, timeout=60).status_code

        loads: list[int] = []
        for _ in range(3):  # both models at once, and one of them twice at once
            loads.clear()
            jobs = [threading.Thread(target=lambda m=m: loads.append(reload(m)))
                    for m in ("digits", "digits-torch", "digits")]  # fmt: skip
            for job in jobs:
                job.start()
            for job in jobs:
                job.join()
            assert loads == [200, 200, 200]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(results) > 20 and set(results) == {200}, {s: results.count(s) for s in set(results)}
    repo = controlled.server.config.app.state.repo
    assert len(repo._running) == 3  # digits 1, digits-torch 1 and 2: the old ones all stopped


def test_a_failed_reload_keeps_the_old_version_serving_and_says_why(
    serve_repo: Path, tmp_path: Path, free_port
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(serve_repo / "digits", repo / "digits")
    options = ServerOptions(repository=repo, model_control="explicit")
    with BackgroundServer(options, Bind(port=free_port())) as running:
        (repo / "digits" / "1" / "tensorfab.json").write_text("{not json")
        answer = httpx.post(f"{running.url}/v2/repository/models/digits/load", timeout=60)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error.startswith("model 'digits': failed to load: ")
        assert error.endswith("; still serving ['1']")
        assert str(tmp_path) not in error  # no server paths in answers
        infer = httpx.post(f"{running.url}/v2/models/digits/infer", json=GOOD)
        assert infer.status_code == 200
        assert np.asarray(infer.json()["outputs"][0]["data"]).shape == (10,)


# A property-based fuzz of the HTTP API: requests shaped like the protocol's, with any JSON
# in any field, plus raw bytes, to every route that reads a body. Not one may be a 500.
ANY_JSON = any_json(max_leaves=12)
NAMES = st.sampled_from(["images", "logits", "x", ""]) | ANY_JSON
TENSOR = st.fixed_dictionaries(
    {},
    optional={
        "name": NAMES,
        "shape": st.lists(st.integers(-2, 2**64), max_size=5) | ANY_JSON,
        "datatype": st.sampled_from(["UINT8", "FP32", "BYTES", "INT64"]) | ANY_JSON,
        "data": st.lists(st.integers(-300, 300), max_size=800) | ANY_JSON,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": ANY_JSON, "binary_data": ANY_JSON}
        )
        | ANY_JSON,
    },
)
REQUEST = st.fixed_dictionaries(
    {},
    optional={
        "id": ANY_JSON,
        "inputs": st.lists(TENSOR, max_size=3) | ANY_JSON,
        "outputs": st.lists(TENSOR, max_size=2) | ANY_JSON,
        "parameters": ANY_JSON,
    },
)
BODIES = st.one_of(REQUEST.map(lambda r: json.dumps(r).encode()), st.binary(max_size=64))
ROUTES = st.sampled_from(
    [
        "/v2/models/digits/infer",
        "/v2/models/digits/versions/1/infer",
        "/v2/models/digits-torch/infer",
        "/v1/models/digits:predict",
        "/v2/models/nothing/infer",
        "/v2/repository/index",
    ]
)
PRINTABLE = st.characters(min_codepoint=33, max_codepoint=126)  # what a header may carry
HEADER_LENGTHS = st.none() | st.integers(-5, 400).map(str) | st.text(PRINTABLE, max_size=4)


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=ROUTES, body=BODIES, header_length=HEADER_LENGTHS)
def test_fuzzed_requests_never_get_a_500(
    controlled: BackgroundServer, route: str, body: bytes, header_length: str | None
) -> None:
    headers = {} if header_length is None else {"Inference-Header-Content-Length": header_length}
    answer = httpx.post(controlled.url + route, content=body, headers=headers, timeout=10)
    assert answer.status_code < 500, (route, body[:200], answer.text)


def test_the_server_is_up_and_clean_after_the_fuzz(controlled: BackgroundServer) -> None:
    assert httpx.get(f"{controlled.url}/v2/health/ready").json() == {"ready": True}
    assert httpx.post(f"{controlled.url}/v2/models/digits/infer", json=GOOD).status_code == 200
    assert controlled.server.config.app.tally.errors == 0  # no exception reached the guard


def test_complete_headers_are_held_to_64_kib_exactly(controlled: BackgroundServer) -> None:
    """Headers that end inside a later read counted to their blank line: 65,536 bytes pass,
    65,537 are refused (they used to pass up to about 128 KiB)."""
    port = int(controlled.url.rsplit(":", 1)[1])
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Pad: "
    for size, status in ((64 * 1024, b"HTTP/1.1 200"), (64 * 1024 + 1, b"HTTP/1.1 400")):
        pad = b"a" * (size - len(head) - 4)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(head + pad + b"\r\n\r\n")
            assert conn.recv(4096).startswith(status), size
    assert httpx.get(f"{controlled.url}/v2/health/live").status_code == 200


def test_a_request_http_cannot_parse_is_a_json_400_with_the_parsers_words(
    controlled: BackgroundServer,
) -> None:
    port = int(controlled.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /v2/health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
            b"Content-Length: 2\r\n\r\nab"
        )
        head, _, body = sock.recv(4096).decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400") and "application/json" in head
    assert json.loads(body)["error"].startswith("request: not valid HTTP/1.1: ")
    with httpx.Client(base_url=controlled.url, timeout=10) as client:  # still serving
        assert client.get("/v2/health/live").status_code == 200


def test_headers_that_never_end_are_refused_and_a_kept_connection_is_timed_again(
    controlled: BackgroundServer,
) -> None:
    port = int(controlled.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as endless:
        endless.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        endless.sendall(b"X-Pad: " + b"a" * 70_000)  # past 64 KiB, no end of line
        answer = endless.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 400") and "application/json" in answer
        assert '{"error": "request headers: over 65536 bytes' in answer
        assert endless.recv(100) == b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as kept:
        kept.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(4096).startswith(b"HTTP/1.1 200")  # answered, kept open
        start = time.monotonic()
        kept.sendall(b"GET /v2/health/live HTTP/1.1\r\n")  # the next request's half
        assert kept.recv(100) == b""  # closed at the header timeout, not the keep-alive's 75 s
        assert 0.4 < time.monotonic() - start < 3.0


def test_hand_edited_packages_are_refused_at_load_and_the_others_serve(
    serve_repo: Path, tmp_path: Path
) -> None:
    """Labels that do not match the outputs, a file linked from outside the repository:
    each one line naming the file; a package without a manifest loads, with a warning."""
    repo = tmp_path / "repo"
    for name in ("digits", "wide", "linked"):
        shutil.copytree(serve_repo / "digits" / "1", repo / name / "1")
    for name in ("wide", "digits"):
        (repo / name / "1" / "manifest.json").unlink()
    meta_file = repo / "wide" / "1" / "tensorfab.json"
    meta = json.loads(meta_file.read_text())
    fifty = [f"c{i}" for i in range(50)]
    meta_file.write_text(json.dumps({**meta, "labels": fifty}))
    shutil.copytree(repo / "wide", repo / "wider")  # labels and task_config both say 50
    meta["task_config"]["classes"] = fifty
    (repo / "wider" / "1" / "tensorfab.json").write_text(json.dumps({**meta, "labels": fifty}))
    outside = tmp_path / "elsewhere.onnx"
    (repo / "linked" / "1" / "model.onnx").rename(outside)
    (repo / "linked" / "1" / "model.onnx").symlink_to(outside)  # same bytes: manifest agrees
    told: list[str] = []
    models = ModelRepository(repo, ServerMetrics(), announce=told.append)

    async def load_all() -> list:
        states = [await models.load(n) for n in ("digits", "wide", "linked", "wider")]
        await models.close()
        return states

    digits, wide, linked, wider = asyncio.run(load_all())
    assert digits.ready and list(digits.versions) == ["1"]
    assert wide.reason == (
        "failed to load: wide/1/tensorfab.json: labels (50 names) differ from the task's "
        "classes (10, task_config.classes)"
    )
    assert wider.reason == (
        "failed to load: wider/1/tensorfab.json: its labels make 50 scores per row; the model "
        "gives 10"
    )
    assert linked.reason == (
        "failed to load: linked/1/model.onnx: a link to a file outside the model repository"
    )
    assert told == [
        f"warning: {repo / 'digits' / '1'}: no manifest.json; its files are not verified",
        f"warning: {repo / 'wide' / '1'}: no manifest.json; its files are not verified",
        f"warning: {repo / 'wider' / '1'}: no manifest.json; its files are not verified",
    ]
