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


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/redoc", "/v2/repository/index"])
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
