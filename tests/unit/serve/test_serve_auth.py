"""The server's auth wiring: every route but health needs the token, the API docs too, the
scheme in any case; an empty token is refused rather than read as "no auth"."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="fastapi (the serve extra) is not installed")
from fastapi.testclient import TestClient

from tensorfab.errors import TensorfabError
from tensorfab.serve.app import ServerOptions, create_app


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(ServerOptions(repository=tmp_path, token="s3cret")))


@pytest.mark.parametrize("path", ["/openapi.json", "/v2/repository/index"])
def test_api_docs_and_routes_need_the_token(client: TestClient, path: str) -> None:
    method = client.post if path.startswith("/v2/repository") else client.get
    refused = method(path)
    assert refused.status_code == 401
    assert refused.json() == {"error": "missing or wrong bearer token"}
    assert method(path, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert method(path, headers={"authorization": "bearer s3cret"}).status_code == 200


def test_health_stays_open(client: TestClient) -> None:
    assert client.get("/v2/health/live").status_code == 200


@pytest.mark.parametrize("token", ["", "   "])
def test_an_empty_token_is_refused_not_read_as_no_auth(tmp_path: Path, token: str) -> None:
    with pytest.raises(TensorfabError, match="bearer token is empty"):
        create_app(ServerOptions(repository=tmp_path, token=token))


def test_no_cdn_docs_pages_but_the_openapi_json(client: TestClient) -> None:
    auth = {"authorization": "Bearer s3cret"}
    assert client.get("/docs").status_code == 401  # every unknown path needs the token too
    assert [client.get(p, headers=auth).status_code for p in ("/docs", "/redoc")] == [404, 404]
    assert client.get("/openapi.json", headers=auth).json()["info"]["title"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "request body: malformed JSON (Expecting property name enclosed in"),
        (b"[1, 2]", 'request body: expected a JSON object, e.g. {"ready": true}'),
        (b'{"ready": "yes"}', "request body: ready: must be true or false"),
    ],
)
def test_repository_index_refuses_a_bad_body_and_still_answers(
    client: TestClient, body: bytes, error: str
) -> None:
    auth = {"authorization": "Bearer s3cret"}
    refused = client.post("/v2/repository/index", content=body, headers=auth)
    assert refused.status_code == 400 and refused.json()["error"].startswith(error)
    for good in (b"", b"{}", b'{"ready": true}'):
        assert client.post("/v2/repository/index", content=good, headers=auth).json() == []


def test_a_token_that_is_not_printable_ascii_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match=r"^auth: the token holds '\\x07' at character 3;"):
        create_app(ServerOptions(repository=tmp_path, token="abc\x07"))
