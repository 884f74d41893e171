"""Bearer-token auth shared by every HTTP service of tensorfab (``serve``, ``jobs``).

One job: turn an ``Authorization: Bearer <token>`` header into an :class:`Identity` (a user
and the teams that user may charge), or refuse the request with 401. A shared non-layer
module like ``errors.py``: it imports no layer, so ``jobs`` need not import ``serve``.

Two kinds of token table:

* one token (``serve``'s ``TENSORFAB_TOKEN``): whoever holds it is one identity;
* a tokens file, a YAML list of ``{user, teams, token_sha256}``. Only hashes are stored, so
  the file is no secret worth stealing. Make a token and its line like this (neither needs
  tensorfab installed)::

      TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
      printf '%s' "$TOKEN" | sha256sum      # or: python -m tensorfab.auth "$TOKEN"
      python -c "import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())" $TOKEN

      # tokens.yaml
      - user: alice
        teams: [vision, nlp]        # the first is the default team
        token_sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae

Every comparison is constant-time (``hmac.compare_digest`` over every entry, no early
exit), so response times do not leak how much of a guessed token matched.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tensorfab.errors import TensorfabError

SCHEME = "bearer"  # compared case-insensitively, as RFC 9110 says of auth schemes
REFUSED = "missing or wrong bearer token"
CROSS_SITE = "refused: a request made with the login cookie must come from this server's pages"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Identity:
    """Who sent a request: a user and the teams that user may charge (first = default)."""

    user: str
    teams: tuple[str, ...] = ()


def hash_token(token: str) -> str:
    """The sha256 hex digest of ``token``: what a tokens file stores (``sha256sum`` agrees)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenTable:
    """Token hashes and the identity each one stands for."""

    def __init__(self, entries: Iterable[tuple[str, Identity]]) -> None:
        self.entries = [(digest.encode("ascii"), who) for digest, who in entries]

    @classmethod
    def single(cls, token: str, identity: Identity | None = None) -> TokenTable:
        """One shared token (``serve``): any holder is ``identity`` (default: user "token")."""
        if not token.strip():
            raise TensorfabError("auth: the bearer token is empty")
        check_token_text(token, "auth")
        return cls([(hash_token(token), identity or Identity("token"))])

    def identify(self, token: str) -> Identity | None:
        """The identity of ``token``, or None; every entry is compared, in constant time."""
        digest = hash_token(token).encode("ascii")
        found = None
        for expected, who in self.entries:
            if hmac.compare_digest(digest, expected):
                found = who
        return found

    def identify_header(self, authorization: str | None) -> Identity | None:
        """The identity of an ``Authorization`` header's bearer token, or None."""
        parts = (authorization or "").split(None, 1)
        if len(parts) != 2 or parts[0].lower() != SCHEME:
            return None
        return self.identify(parts[1])


def token_from_env(variable: str) -> str | None:
    """The bearer token in environment ``variable``; None when it is not set.

    Set but empty (or only blanks) is refused: it would otherwise read as "no token" and
    start a server without auth that its operator meant to protect.
    """
    token = os.environ.get(variable)
    if token is None:
        return None
    if not token.strip():
        raise TensorfabError(f"${variable} is set but empty; set a token or unset it")
    check_token_text(token, f"${variable}")
    return token


def check_token_text(token: str, where: str) -> None:
    """Refuse a token with a character outside printable ASCII (a space to ``~``).

    HTTP header values are Latin-1 bytes and clients (curl, urllib) send what they are
    given as UTF-8 or refuse it, so such a token could never be presented: a server started
    with it would refuse everyone, a client would crash encoding it.
    """
    for at, char in enumerate(token):
        if not " " <= char <= "~":
            raise TensorfabError(
                f"{where}: the token holds {char!r} at character {at}; a bearer token is "
                "printable ASCII (an HTTP header cannot carry other characters)"
            )


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str = Field(min_length=1)
    teams: tuple[str, ...] = ()
    token_sha256: str

    @field_validator("token_sha256")
    @classmethod
    def _is_sha256(cls, value: str) -> str:
        if not _SHA256.fullmatch(value):
            raise ValueError(
                "expected the sha256 of the token (64 lowercase hex digits), not the token"
            )
        return value


def _read(path: Path) -> tuple[Any, yaml.Node | None]:
    """The file's data and its node tree (for line numbers); errors name file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TensorfabError(f"{path}: cannot read tokens file ({exc.strerror})") from None
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise TensorfabError(f"{where}: invalid YAML: {problem}") from None


def _line(node: yaml.Node, field: str | None) -> int:
    """The 1-based line of ``field`` in a mapping node, else of the node itself."""
    if isinstance(node, yaml.MappingNode) and field is not None:
        for key, _ in node.value:
            if key.value == field:
                return key.start_mark.line + 1
    return node.start_mark.line + 1


def _entry(path: Path, item: Any, node: yaml.Node) -> _Entry:
    where = f"{path}:{_line(node, None)}"
    if not isinstance(item, dict):
        raise TensorfabError(f"{where}: expected a mapping {{user, teams, token_sha256}}")
    try:
        return _Entry.model_validate(item)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else None
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown field (expected user, teams, token_sha256)"
        raise TensorfabError(f"{path}:{_line(node, field)}: {field}: {reason}") from None


def load_tokens(path: str | Path) -> TokenTable:
    """A tokens file (YAML list of ``{user, teams, token_sha256}``) as a :class:`TokenTable`."""
    p = Path(path)
    data, root = _read(p)
    if not isinstance(data, list) or not data or root is None:
        raise TensorfabError(f"{p}:1: expected a list of {{user, teams, token_sha256}} entries")
    seen: dict[str, int] = {}
    entries = []
    for item, node in zip(data, root.value, strict=True):
        entry = _entry(p, item, node)
        line = _line(node, "token_sha256")
        if entry.token_sha256 in seen:
            raise TensorfabError(
                f"{p}:{line}: token_sha256: the same token as line {seen[entry.token_sha256]}"
            )
        seen[entry.token_sha256] = line
        entries.append((entry.token_sha256, Identity(entry.user, entry.teams)))
    return TokenTable(entries)


def same_origin(request: Any) -> bool:
    """The request comes from a page of this server (its Origin, else its Referer, says so)."""
    here = f"{request.url.scheme}://{request.headers.get('host', '')}"
    origin = request.headers.get("origin")
    if origin:
        return origin == here
    return (request.headers.get("referer") or "").startswith(here + "/")


def _identify(request: Any, table: TokenTable, cookie: str | None) -> tuple[Identity | None, bool]:
    """The caller's identity from the bearer header, else from the cookie (and which one)."""
    if request.headers.get("authorization"):
        return table.identify_header(request.headers.get("authorization")), False
    token = request.cookies.get(cookie) if cookie else None
    return (table.identify(token), True) if token else (None, False)


def install_auth(
    app: Any, table: TokenTable, open_paths: Iterable[str] = (), cookie: str | None = None
) -> None:
    """Require a known bearer token on every path of the FastAPI ``app`` but ``open_paths``.

    A known token puts its :class:`Identity` on ``request.state.identity`` (on an open path
    too, where a missing token leaves None); anything else is answered ``401 {"error":
    "missing or wrong bearer token"}`` with ``WWW-Authenticate: Bearer``, before any route
    runs. With ``cookie``, a browser may send the token in that cookie instead (the jobs
    dashboard sets it, HttpOnly and SameSite=Strict, at its login); a request that changes
    something on a cookie's strength must come from the server's own pages (Origin or
    Referer), else 403, so no other site can make a logged-in browser act.
    """
    from fastapi.responses import JSONResponse

    opened = frozenset(open_paths)
    headers = {"WWW-Authenticate": "Bearer"}

    async def auth(request: Any, call_next: Any) -> Any:
        identity, by_cookie = _identify(request, table, cookie)
        if identity is None and request.url.path not in opened:
            return JSONResponse({"error": REFUSED}, status_code=401, headers=headers)
        if by_cookie and request.method not in SAFE_METHODS and not same_origin(request):
            return JSONResponse({"error": CROSS_SITE}, status_code=403)
        request.state.identity = identity
        return await call_next(request)

    app.middleware("http")(auth)


if __name__ == "__main__":  # python -m tensorfab.auth TOKEN: the line for a tokens file
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tensorfab.auth TOKEN   (prints its token_sha256)")
    print(hash_token(sys.argv[1]))
