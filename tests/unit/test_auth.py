"""Shared bearer-token auth: token tables, the tokens file and its errors, the middleware."""

from __future__ import annotations

import hashlib
import runpy
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from tensorfab.auth import (
    Identity,
    TokenTable,
    hash_token,
    install_auth,
    load_tokens,
    token_from_env,
)
from tensorfab.errors import TensorfabError

# sha256("foo"), as `printf %s foo | sha256sum` prints it
FOO_SHA = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_hash_token_is_plain_sha256_hex() -> None:
    assert hash_token("foo") == FOO_SHA
    assert hash_token("é") == hashlib.sha256("é".encode()).hexdigest()


def test_hash_token_from_the_command_line(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["tensorfab.auth", "foo"])
    monkeypatch.delitem(sys.modules, "tensorfab.auth")  # run it afresh, as `python -m` does
    runpy.run_module("tensorfab.auth", run_name="__main__")
    assert capsys.readouterr().out.strip() == FOO_SHA


def test_single_token_good_missing_wrong() -> None:
    table = TokenTable.single("s3cret")
    assert table.identify_header("Bearer s3cret") == Identity("token")
    assert table.identify_header(None) is None
    assert table.identify_header("") is None
    assert table.identify_header("Bearer x") is None
    assert table.identify_header("Bearer s3cret ") is None  # no trimming: exact token only
    assert table.identify_header("Basic s3cret") is None
    assert table.identify_header("bearer s3cret") == Identity("token")  # scheme: any case
    assert table.identify_header("BEARER  s3cret") == Identity("token")  # 1*SP before it
    assert table.identify_header("Bearers3cret") is None
    assert table.identify_header("Bearer ") is None
    assert table.identify_header("s3cret") is None


def test_single_token_may_carry_an_identity() -> None:
    table = TokenTable.single("t", Identity("ops", ("infra",)))
    assert table.identify("t") == Identity("ops", ("infra",))


def test_empty_single_token_is_refused() -> None:
    with pytest.raises(TensorfabError, match="auth: the bearer token is empty"):
        TokenTable.single("")


def test_tokens_file_maps_hashes_to_users_and_teams(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"# who may use the scheduler\n"
        f"- user: alice\n"
        f"  teams: [vision, nlp]\n"
        f"  token_sha256: {FOO_SHA}\n"
        f"- user: bob\n"
        f"  token_sha256: {hash_token('bar')}\n",
    )
    table = load_tokens(path)
    assert table.identify("foo") == Identity("alice", ("vision", "nlp"))
    assert table.identify("bar") == Identity("bob", ())
    assert table.identify(FOO_SHA) is None  # the stored hash is not itself a token
    assert table.identify_header("Bearer bar") == Identity("bob", ())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- user: alice\n  teams: [a]\n  token_sha256: foo\n",
            "tokens.yaml:3: token_sha256: expected the sha256 of the token "
            "(64 lowercase hex digits), not the token",
        ),
        (
            f"- user: alice\n  token_sha256: {FOO_SHA}\n- teams: [x]\n  token_sha256: {FOO_SHA}\n",
            "tokens.yaml:3: user: Field required",
        ),
        (
            f"- user: alice\n  token_sha256: {FOO_SHA}\n  team: x\n",
            "tokens.yaml:3: team: unknown field (expected user, teams, token_sha256)",
        ),
        (
            f"- user: a\n  token_sha256: {FOO_SHA}\n- user: b\n  token_sha256: {FOO_SHA}\n",
            "tokens.yaml:4: token_sha256: the same token as line 2",
        ),
        ("- user: a\n  teams: [x\n", "tokens.yaml:3: invalid YAML"),
        ("user: a\n", "tokens.yaml:1: expected a list of {user, teams, token_sha256} entries"),
        ("", "tokens.yaml:1: expected a list"),
        (
            f"- user: a\n  token_sha256: {FOO_SHA}\n- just a string\n",
            "tokens.yaml:3: expected a mapping {user, teams, token_sha256}",
        ),
        (
            f"- user: ''\n  token_sha256: {FOO_SHA}\n",
            "tokens.yaml:1: user: String should have at least 1 character",
        ),
    ],
)
def test_malformed_tokens_file_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(TensorfabError) as exc:
        load_tokens(path)
    assert str(exc.value).startswith(f"{tmp_path}/{message}")


def test_unreadable_tokens_file(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match=r"missing\.yaml: cannot read tokens file"):
        load_tokens(tmp_path / "missing.yaml")


def _app(table: TokenTable) -> TestClient:
    """A two-route app: one open path, one behind the tokens."""
    app = FastAPI()
    install_auth(app, table, open_paths=("/health",))

    @app.get("/health")
    async def health(request: Request) -> dict:
        return {"identity": request.state.identity}

    @app.get("/whoami")
    async def whoami(request: Request) -> dict:
        who = request.state.identity
        return {"user": who.user, "teams": list(who.teams)}

    return TestClient(app)


def test_middleware_puts_the_identity_on_the_request(tmp_path: Path) -> None:
    path = _write(tmp_path, f"- user: alice\n  teams: [vision]\n  token_sha256: {FOO_SHA}\n")
    client = _app(load_tokens(path))
    ok = client.get("/whoami", headers={"authorization": "Bearer foo"})
    assert ok.status_code == 200 and ok.json() == {"user": "alice", "teams": ["vision"]}
    assert client.get("/health").json() == {"identity": None}  # open path, no token needed


@pytest.mark.parametrize("header", [None, "Bearer nope", "foo", "Bearer " + FOO_SHA])
def test_middleware_refuses_missing_or_wrong_tokens(header: str | None) -> None:
    client = _app(TokenTable([(FOO_SHA, Identity("alice"))]))
    headers = {"authorization": header} if header else {}
    refused = client.get("/whoami", headers=headers)
    assert refused.status_code == 401
    assert refused.json() == {"error": "missing or wrong bearer token"}
    assert refused.headers["www-authenticate"] == "Bearer"
    # an unknown path is refused too, before routing: no probing for routes without a token
    assert client.get("/nothing-here", headers=headers).status_code == 401


def test_a_cookie_stands_in_for_the_header_and_changes_need_our_own_pages() -> None:
    app = FastAPI()
    install_auth(app, TokenTable([(FOO_SHA, Identity("alice"))]), ("/health",), cookie="tok")

    @app.api_route("/whoami", methods=["GET", "POST"])
    async def whoami(request: Request) -> dict:
        return {"user": request.state.identity.user}

    @app.get("/health")
    async def health(request: Request) -> dict:
        return {"identity": request.state.identity}

    client = TestClient(app, cookies={"tok": "foo"})
    assert client.get("/whoami").json() == {"user": "alice"}
    here = "http://testserver"
    assert client.post("/whoami", headers={"origin": here}).status_code == 200
    assert client.post("/whoami", headers={"referer": here + "/?page=2"}).status_code == 200
    for headers in ({"origin": "http://evil.example"}, {"referer": here + ".evil.example/"}, {}):
        refused = client.post("/whoami", headers=headers)
        assert refused.status_code == 403, headers
        assert refused.json()["error"].startswith("refused: a request made with the login cookie")
    # a bearer header is what counts when both come, and needs no Origin (the CLI)
    assert client.post("/whoami", headers={"authorization": "Bearer foo"}).status_code == 200
    assert client.get("/whoami", headers={"authorization": "Bearer nope"}).status_code == 401
    client.cookies.set("tok", "nope")
    assert client.get("/whoami").status_code == 401
    assert client.get("/health").json() == {"identity": None}  # open: a wrong cookie is no one


def test_token_from_env_unset_set_and_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_TEST_TOKEN", raising=False)
    assert token_from_env("TF_TEST_TOKEN") is None  # unset: no auth, as asked
    monkeypatch.setenv("TF_TEST_TOKEN", "s3cret")
    assert token_from_env("TF_TEST_TOKEN") == "s3cret"
    for empty in ("", " \t"):
        monkeypatch.setenv("TF_TEST_TOKEN", empty)
        with pytest.raises(TensorfabError) as err:
            token_from_env("TF_TEST_TOKEN")
        assert str(err.value) == "$TF_TEST_TOKEN is set but empty; set a token or unset it"
