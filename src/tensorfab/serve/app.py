"""The HTTP API: KServe v2 / Triton inference protocol on FastAPI, plus metrics and predict.

Routes (``{v}`` optional everywhere Triton has it):
``GET /v2/health/live|ready``, ``GET /v2``, ``GET /v2/models/{name}[/versions/{v}]``,
``GET .../ready``, ``GET .../config``, ``POST .../infer``, ``POST /v2/repository/index``,
``POST /v2/repository/models/{name}/load|unload``, ``GET /metrics`` (Prometheus) and
``POST /v1/models/{name}:predict`` (texts or an image in, readable results out).
Errors are the protocol's ``{"error": "..."}`` with a 4xx/5xx status; the server keeps
serving after any of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from tensorfab import __version__
from tensorfab.auth import TokenTable, install_auth
from tensorfab.metrics.prometheus import CONTENT_TYPE
from tensorfab.serve.convenience import predict
from tensorfab.serve.guard import RequestTally
from tensorfab.serve.metrics import ServerMetrics
from tensorfab.serve.protocol import (
    HEADER_LENGTH,
    ProtocolError,
    infer_response,
    parse_infer_request,
)
from tensorfab.serve.repository import LoadedVersion, ModelRepository, describe

OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")
MODEL_CONTROL = ("none", "explicit")
OFF_LOOP_BYTES = 64 * 1024  # bodies at least this large are parsed in the decode pool


@dataclass
class ServerOptions:
    """What ``tensorfab serve`` passes in: models to load, limits, auth."""

    repository: Path
    models: list[str] | None = None  # None: every model of the repository
    token: str | None = None  # bearer token required on every route but health
    max_body_bytes: int = 16 * 1024 * 1024
    strict_readiness: bool = False  # server not ready while any model failed to load
    compute_threads: int = 4
    announce: Callable[[str], None] | None = None  # told each model's state once loaded
    model_control: str = "none"  # "explicit": the load/unload routes are open (Triton's name)
    max_queue_bytes: int | None = 256 * 1024 * 1024  # per model version, besides the count
    body_timeout_s: float = 30.0  # the whole body must arrive within this; else 408
    decode_threads: int = 2  # image decoding, tokenizing, large JSON bodies
    tally: RequestTally = field(default_factory=RequestTally)


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int, timeout_s: float = 30.0) -> bytes:
    """The request body, refused (413) past ``limit`` bytes without reading it all, and
    refused (408) when it has not all come within ``timeout_s`` (a slow or stalled client)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(f"request body: {declared} bytes exceed the limit of {limit}", 413)
    try:
        return await asyncio.wait_for(_collect(request, limit), timeout_s)
    except TimeoutError:
        raise ProtocolError(
            f"request body: not received within {timeout_s:g} s", 408, {"Connection": "close"}
        ) from None
    except ClientDisconnect:
        raise ProtocolError("request body: the client went away", 400) from None


async def _collect(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError(f"request body: over the limit of {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(options: ServerOptions) -> FastAPI:
    """The ASGI app; models load on startup and drain on shutdown (lifespan)."""
    if options.model_control not in MODEL_CONTROL:
        raise ValueError(f"model_control {options.model_control!r}: one of {MODEL_CONTROL}")
    metrics = ServerMetrics()
    repo = ModelRepository(
        options.repository, metrics, options.compute_threads, options.max_queue_bytes
    )
    decoder = ThreadPoolExecutor(options.decode_threads, thread_name_prefix="tensorfab-decode")
    status = {"started": False, "stopping": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for name in options.models or repo.names():
            state = await repo.load(name)
            if options.announce:
                versions = ",".join(state.versions) or "-"
                options.announce(
                    f"  {name} [{versions}]: {'ready' if state.ready else state.reason}"
                )
        status["started"] = True
        yield
        status["stopping"] = True
        await repo.close()
        decoder.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="tensorfab inference server", version=__version__, lifespan=lifespan)
    app.state.repo, app.state.metrics, app.state.status = repo, metrics, status
    _add_handlers(app, options)
    _add_health_routes(app, options, repo, status)
    _add_repository_routes(app, repo, options.model_control == "explicit")
    _add_model_routes(app, options, repo, metrics, decoder)
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


def _add_health_routes(
    app: FastAPI, options: ServerOptions, repo: ModelRepository, status: dict[str, bool]
) -> None:
    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        failed = [s.name for s in repo.models.values() if not s.ready]
        ok = status["started"] and not status["stopping"]
        if options.strict_readiness and failed:
            return _error(f"models not ready: {failed}", 503)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {
            "name": "tensorfab",
            "version": __version__,
            "extensions": ["binary_tensor_data", "model_repository", "statistics_metrics"],
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        for state in repo.models.values():
            for v in state.versions.values():
                depth = len(v.batcher.queue)
                app.state.metrics.queue_depth.labels(state.name, v.version).set(depth)
        return Response(app.state.metrics.render(), media_type=CONTENT_TYPE)


def _controlled(explicit: bool, action: str) -> None:
    if not explicit:
        raise ProtocolError(
            f"{action}: model control is off; start the server with --model-control explicit",
            403,
        )


def _add_repository_routes(app: FastAPI, repo: ModelRepository, explicit: bool) -> None:
    @app.post("/v2/repository/index")
    async def repository_index() -> list[dict[str, Any]]:
        return repo.index()

    @app.post("/v2/repository/models/{name}/load")
    async def load(name: str) -> dict[str, Any]:
        _controlled(explicit, "load")
        state = await repo.load(name)
        if state.load_error:
            serving = f"; still serving {sorted(state.versions)}" if state.ready else ""
            raise ProtocolError(f"model {name!r}: {state.load_error}{serving}", 400)
        return {}

    @app.post("/v2/repository/models/{name}/unload")
    async def unload(name: str) -> dict[str, Any]:
        _controlled(explicit, "unload")
        if name not in repo.names():
            raise ProtocolError(f"model {name!r}: not in the repository", 404)
        await repo.unload(name)
        return {}


def _model_config(model: LoadedVersion) -> dict[str, Any]:
    meta = describe(model)
    config = model.config
    return {
        "name": model.name,
        "platform": meta["platform"],
        "backend": model.runtime.backend,
        "max_batch_size": config.max_batch_size,
        "input": meta["inputs"],
        "output": meta["outputs"],
        "dynamic_batching": {"max_queue_delay_microseconds": config.max_queue_delay_us}
        if config.max_batch_size
        else None,
        "instance_group": [{"count": config.instances, "kind": config.device.upper()}],
        "tensorfab": {"task": model.meta["task"], "labels": model.meta["labels"]},
    }


async def _off_loop(pool: ThreadPoolExecutor, work: Callable[..., Any], *args: Any) -> Any:
    """``work(*args)`` in the decode pool, so that the event loop keeps serving meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(pool, work, *args)


def _add_model_routes(
    app: FastAPI,
    options: ServerOptions,
    repo: ModelRepository,
    metrics: ServerMetrics,
    decoder: ThreadPoolExecutor,
) -> None:
    async def metadata(name: str, version: str | None = None) -> dict[str, Any]:
        model = repo.get(name, version)
        meta = describe(model)
        if version is None:
            meta["versions"] = sorted(repo.models[name].versions, key=int)
        return meta

    async def model_ready(name: str, version: str | None = None) -> dict[str, Any]:
        model = repo.get(name, version)
        return {"name": name, "version": model.version, "ready": True}

    async def config(name: str, version: str | None = None) -> dict[str, Any]:
        return _model_config(repo.get(name, version))

    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        model = repo.get(name, version)
        with metrics.request(name, model.version):
            limit = model.body_limit(options.max_body_bytes)
            body = await read_body(request, limit, options.body_timeout_s)
            header = request.headers.get(HEADER_LENGTH)
            if len(body) >= OFF_LOOP_BYTES:
                parsed = await _off_loop(decoder, parse_infer_request, body, header)
            else:
                parsed = parse_infer_request(body, header)
            outputs = await repo.infer(model, parsed.inputs, parsed.parameters.get("timeout"))
            content, header = infer_response(name, model.version, parsed, outputs)
        if header is None:
            return Response(content, media_type="application/json")
        headers = {HEADER_LENGTH: str(header)}
        return Response(content, media_type="application/octet-stream", headers=headers)

    async def predict_route(request: Request, name: str) -> JSONResponse:
        model = repo.get(name)
        with metrics.request(name, model.version):
            body = await read_body(request, options.max_body_bytes, options.body_timeout_s)
            result = await predict(repo, model, body, decoder)
        return JSONResponse(result)  # plain JSON, no re-encoding

    for suffix in ("", "/versions/{version}"):
        base = "/v2/models/{name}" + suffix
        app.add_api_route(base, metadata, methods=["GET"])
        app.add_api_route(base + "/ready", model_ready, methods=["GET"])
        app.add_api_route(base + "/config", config, methods=["GET"])
        app.add_api_route(base + "/infer", infer, methods=["POST"])
    app.add_api_route("/v1/models/{name}:predict", predict_route, methods=["POST"])
