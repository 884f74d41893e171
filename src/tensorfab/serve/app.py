"""The HTTP API: KServe v2 / Triton inference protocol on FastAPI, plus metrics and predict.

Routes (``{v}`` optional everywhere Triton has it):
``GET /v2/health/live|ready``, ``GET /v2``, ``GET /v2/models/{name}[/versions/{v}]``,
``GET .../ready``, ``GET .../config``, ``GET .../stats`` (and ``GET /v2/models/stats``),
``POST .../infer``, ``POST /v2/repository/index``,
``POST /v2/repository/models/{name}/load|unload``, ``GET /metrics`` (Prometheus),
``GET /v1/models/{name}`` (KServe v1: ready and metadata) and
``POST /v1/models/{name}:predict`` (texts or an image in, readable results out).
Errors are the protocol's ``{"error": "..."}`` with a 4xx/5xx status; the server keeps
serving after any of them. Every answer comes from the :class:`Service` the gRPC endpoint
(``--grpc-port``, started and stopped with the app) shares.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from tensorfab import __version__
from tensorfab.auth import TokenTable, install_auth
from tensorfab.metrics.prometheus import CONTENT_TYPE
from tensorfab.serve.convenience import predict
from tensorfab.serve.protocol import (
    HEADER_LENGTH,
    InferRequest,
    InferRequestBody,
    ProtocolError,
    infer_response,
    parse_infer_request,
)
from tensorfab.serve.repository import LoadedVersion, describe
from tensorfab.serve.service import GrpcOptions, ServerOptions, Service

__all__ = ["GrpcOptions", "ServerOptions", "create_app", "read_body"]

OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")
OFF_LOOP_BYTES = 64 * 1024  # bodies at least this large are parsed in the decode pool
# A body refused as too large is not read: the answer closes the connection, where keeping it
# would have the event loop take in (and throw away) the rest of the body, 15.9 MB of a bomb.
CLOSE = {"Connection": "close"}
INDEX_BODY_LIMIT = 64 * 1024  # a repository index request holds {"ready": true} at most
# Content-Encoding of a request body (Triton's HTTP endpoint takes gzip and deflate): the
# zlib window bits that read each; deflate is zlib-wrapped as RFC 9110 defines it.
BODY_ENCODINGS = {"identity": None, "gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _documented(app: FastAPI) -> None:
    """The infer request's JSON declared in the OpenAPI schema (the route reads the body
    itself, for its limits and the binary extension, so FastAPI cannot see it)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            body = InferRequestBody.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            components["InferRequestBody"] = body
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequestBody"}}
        },
    }
}


class RawRoute(APIRoute):
    """A route in the OpenAPI schema like any other, whose endpoint is called with the
    request and its path parameters alone: no dependency solving, no validation of
    parameters, no exit stacks. For the hot path (``:predict``), whose endpoint reads and
    checks its body itself; its errors still reach the app's exception handlers."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive, send)
            response = await endpoint(request, **scope["path_params"])
            await response(scope, receive, send)

        self.app = app


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int, timeout_s: float = 30.0) -> bytes:
    """The request body, refused (413, closing) past ``limit`` bytes without reading it all,
    and refused (408) when it has not all come within ``timeout_s`` (a slow or stalled client).
    A gzip or deflate body (``Content-Encoding``) is decompressed, ``limit`` holding for its
    decompressed size too; any other encoding is refused (415) before the body is read."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in BODY_ENCODINGS:
        known = ", ".join(BODY_ENCODINGS)
        message = f"request body: Content-Encoding {encoding!r} is not supported (send {known})"
        raise ProtocolError(message, 415, CLOSE)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        message = f"request body: {declared} bytes exceed the limit of {limit}"
        raise ProtocolError(message, 413, CLOSE)
    try:
        async with asyncio.timeout(timeout_s):  # a timer, not a task per request (wait_for's)
            body = await _collect(request, limit)
    except TimeoutError:
        raise ProtocolError(
            f"request body: not received within {timeout_s:g} s", 408, CLOSE
        ) from None
    except ClientDisconnect:
        raise ProtocolError("request body: the client went away", 400) from None
    return decompressed(body, encoding, limit)


def decompressed(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` read as sent with ``Content-Encoding: encoding`` (a key of BODY_ENCODINGS),
    at most ``limit`` bytes once decompressed: a small body that inflates past it (a zip
    bomb) is refused (413) having produced no more than ``limit + 1`` bytes. Decompressed on
    the loop: bounded by ``limit`` as the parsing of a body that size is."""
    wbits = BODY_ENCODINGS[encoding]
    if wbits is None:
        return body
    inflate = zlib.decompressobj(wbits)
    try:
        out = inflate.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(f"request body: not valid {encoding} data ({exc})") from None
    if len(out) > limit:
        raise ProtocolError(
            f"request body: over the limit of {limit} bytes once decompressed ({encoding})", 413
        )
    if not inflate.eof:
        raise ProtocolError(f"request body: {encoding} data ends before its end mark")
    if inflate.unused_data:  # a second gzip member, or bytes after the end: not read as data
        raise ProtocolError(f"request body: bytes after the end of the {encoding} data")
    return out


async def _collect(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError(f"request body: over the limit of {limit} bytes", 413, CLOSE)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(options: ServerOptions) -> FastAPI:
    """The ASGI app; models load on startup (and the gRPC endpoint starts, when asked for)
    and drain on shutdown (lifespan)."""
    service = Service(options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        grpc_server = None
        if options.grpc is not None:
            from tensorfab.serve.grpc_server import start_grpc  # the grpc extra, when asked

            grpc_server = await start_grpc(service, options.grpc)
        yield
        service.stopping = True  # not ready from here on, on both fronts
        if grpc_server is not None:
            await grpc_server.stop(options.grpc.grace_s if options.grpc else 0)
        await service.stop()

    app = FastAPI(  # no /docs, /redoc: their pages load scripts from a CDN (blank offline)
        title="tensorfab inference server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service, app.state.repo, app.state.metrics = service, service.repo, service.metrics
    _add_handlers(app, options)
    _add_health_routes(app, service)
    _add_repository_routes(app, service)
    _add_model_routes(app, service)
    _documented(app)
    return app


def _add_handlers(app: FastAPI, options: ServerOptions) -> None:
    if options.token is not None:  # only then (an empty token is refused, never 'no auth')
        install_auth(app, TokenTable.single(options.token), OPEN_PATHS)

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError) -> JSONResponse:
        return _error(str(exc), exc.status, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(f"{request.method} {request.url.path}: {exc.detail}", exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(f"internal error: {type(exc).__name__}: {exc}", 500)


def _add_health_routes(app: FastAPI, service: Service) -> None:
    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        ok = service.server_ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return service.server_metadata()

    @app.get("/metrics")
    async def prometheus() -> Response:
        service.queue_depths()
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)


def _add_repository_routes(app: FastAPI, service: Service) -> None:
    @app.post("/v2/repository/index")
    async def repository_index(request: Request) -> list[dict[str, Any]]:
        body = await read_body(request, INDEX_BODY_LIMIT, service.options.body_timeout_s)
        ready_only = index_request(body)
        rows = service.repo.index()
        return [r for r in rows if r["state"] == "READY"] if ready_only else rows

    @app.post("/v2/repository/models/{name}/load")
    async def load(name: str) -> dict[str, Any]:
        await service.load(name)
        return {}

    @app.post("/v2/repository/models/{name}/unload")
    async def unload(name: str) -> dict[str, Any]:
        await service.unload(name)
        return {}


def index_request(body: bytes) -> bool:
    """A repository index request's ``ready`` flag: its body is empty or a JSON object
    (Triton's ``{"ready": true}`` lists only the ready models); anything else is a 400."""
    if not body.strip():
        return False
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"request body: malformed JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise ProtocolError('request body: expected a JSON object, e.g. {"ready": true}')
    ready = payload.get("ready", False)
    if not isinstance(ready, bool):
        raise ProtocolError("request body: ready: must be true or false")
    return ready


def _http_decoder(service: Service, request: Request) -> Any:
    """The HTTP front's half of the infer path: the body, within the model's limit, parsed."""
    options = service.options

    async def decode(model: LoadedVersion) -> InferRequest:
        limit = model.body_limit(options.max_body_bytes)
        body = await read_body(request, limit, options.body_timeout_s)
        header = request.headers.get(HEADER_LENGTH)
        if len(body) >= OFF_LOOP_BYTES:
            return await service.off_loop(parse_infer_request, body, header)  # type: ignore[no-any-return]
        return parse_infer_request(body, header)

    return decode


def _add_model_routes(app: FastAPI, service: Service) -> None:
    options, repo = service.options, service.repo

    async def metadata(name: str, version: str | None = None) -> dict[str, Any]:
        return service.model_metadata(name, version)

    async def model_ready(name: str, version: str | None = None) -> dict[str, Any]:
        model = repo.get(name, version)
        return {"name": name, "version": model.version, "ready": True}

    async def config(name: str, version: str | None = None) -> dict[str, Any]:
        return service.model_config(name, version)

    async def stats(name: str | None = None, version: str | None = None) -> dict[str, Any]:
        return service.statistics(name, version)

    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        done = await service.infer(name, version, _http_decoder(service, request))
        content, header = infer_response(name, done.model.version, done.request, done.outputs)
        if header is None:
            return Response(content, media_type="application/json")
        headers = {HEADER_LENGTH: str(header)}
        return Response(content, media_type="application/octet-stream", headers=headers)

    async def v1_model(name: str) -> dict[str, Any]:
        model = repo.get(name)  # 404 unknown, 503 not ready: KServe v1's answers
        return {"name": name, "ready": True, **_v1_metadata(model)}

    async def predict_route(request: Request, name: str) -> JSONResponse:
        model = repo.get(name)
        with service.metrics.request(name, model.version):
            body = await read_body(request, options.max_body_bytes, options.body_timeout_s)
            result = await predict(repo, model, body, service.handoff)
        return JSONResponse(result)  # plain JSON, no re-encoding

    app.add_api_route("/v2/models/stats", stats, methods=["GET"])  # before /v2/models/{name}
    for suffix in ("", "/versions/{version}"):
        base = "/v2/models/{name}" + suffix
        app.add_api_route(base, metadata, methods=["GET"])
        app.add_api_route(base + "/ready", model_ready, methods=["GET"])
        app.add_api_route(base + "/config", config, methods=["GET"])
        app.add_api_route(base + "/stats", stats, methods=["GET"])
        app.add_api_route(base + "/infer", infer, methods=["POST"], openapi_extra=INFER_BODY)
    app.router.add_api_route(
        "/v1/models/{name}:predict", predict_route, methods=["POST"], route_class_override=RawRoute
    )
    # Routes are matched in order, each a regex and a few calls: the hot path goes first, not
    # after the twenty others (no other route ends in ':predict', so none is shadowed).
    app.router.routes.insert(0, app.router.routes.pop())
    app.add_api_route("/v1/models/{name}", v1_model, methods=["GET"])


def _v1_metadata(model: LoadedVersion) -> dict[str, Any]:
    """KServe v1's model answer: its ready state, plus the v2 metadata and the labels."""
    meta = describe(model)
    return {
        "version": model.version,
        "platform": meta["platform"],
        "inputs": meta["inputs"],
        "outputs": meta["outputs"],
        "task": model.meta["task"],
        "labels": model.meta["labels"],
    }
