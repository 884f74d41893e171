"""The gRPC endpoint ``inference.GRPCInferenceService`` beside HTTP (``--grpc-port``).

It implements the servicer that ``tritonclient`` ships (``service_pb2_grpc``) on
``grpc.aio``, started in the HTTP app's lifespan on uvicorn's event loop. That is why it is
``grpc.aio`` and not grpc's thread-pool server: the repository, its batchers and its locks
are asyncio objects of that one loop, so gRPC calls await them directly, as HTTP routes
do, instead of hopping between threads for every request. Each RPC answers what the HTTP
route with the same job answers (both call :class:`~tensorfab.serve.service.Service`).

What holds for HTTP holds here: the bearer token travels in the call's ``authorization``
metadata (``ServerLive`` and ``ServerReady`` are open, as HTTP's health routes are); a
message over the server's body limit is refused by gRPC itself, and an infer request
over the model's own limit (its inputs at ``max_batch_size`` rows) by the servicer, as
RESOURCE_EXHAUSTED; batch, queue and token checks are the shared path's; the call's
deadline bounds the time the request may wait in the queue; large requests are converted
in the decode pool; idle and half-opened connections are closed. Errors are the gRPC codes
Triton uses (:func:`grpc_protocol.status_code`); an unexpected one is INTERNAL, logged
rate-limited, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tensorfab.auth import REFUSED, TokenTable
from tensorfab.errors import TensorfabError
from tensorfab.serve import grpc_protocol as wire
from tensorfab.serve.access import access_line
from tensorfab.serve.guard import RateLimitedLog
from tensorfab.serve.protocol import InferRequest, ProtocolError
from tensorfab.serve.repository import LoadedVersion
from tensorfab.serve.service import GrpcOptions, Service

OFF_LOOP_BYTES = 64 * 1024  # requests at least this large are converted in the decode pool
OPEN_RPCS = frozenset({"ServerLive", "ServerReady"})
Handler = Callable[[Any, Any], Awaitable[Any]]


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The RPCs of the KServe v2 gRPC protocol over one :class:`Service`; the ones not
    listed here (streaming, shared memory, trace and log settings) answer UNIMPLEMENTED."""

    def __init__(self, service: Service, log: RateLimitedLog | None = None) -> None:
        self.service = service
        token = service.options.token
        self.table = TokenTable.single(token) if token is not None else None
        self.log = log or RateLimitedLog()

    async def _call(self, rpc: str, handler: Handler, request: Any, context: Any) -> Any:
        """Run one RPC: authorised, counted, timed, its refusals mapped to gRPC codes."""
        start, code = time.perf_counter(), grpc.StatusCode.OK
        tally = self.service.options.tally
        tally.in_flight += 1
        try:
            self._authorize(rpc, context)
            return await handler(request, context)
        except ProtocolError as exc:
            code = wire.status_code(exc.status)
            await context.abort(code, str(exc))
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            code = grpc.StatusCode.INTERNAL
            message = f"{type(exc).__name__}: {str(exc)[:300]}"
            self.log(type(exc).__name__, f"internal error on gRPC {rpc}: {message}")
            await context.abort(code, f"internal error: {message}")
        finally:
            tally.in_flight -= 1
            if code == grpc.StatusCode.CANCELLED:
                tally.cut += 1
            else:
                tally.answered += 1
            self._access(rpc, context, code, time.perf_counter() - start)

    def _authorize(self, rpc: str, context: Any) -> None:
        if self.table is None or rpc in OPEN_RPCS:
            return
        metadata = dict(context.invocation_metadata() or ())
        if self.table.identify_header(metadata.get("authorization")) is None:
            raise ProtocolError(REFUSED, 401)

    def _access(self, rpc: str, context: Any, code: grpc.StatusCode, seconds: float) -> None:
        emit = self.service.options.access_log
        if emit is not None:
            peer = context.peer().removeprefix("ipv4:").removeprefix("ipv6:")
            emit(access_line(peer, f"grpc {rpc}", code.name, seconds))

    async def ServerLive(self, request: Any, context: Any) -> Any:
        async def live(_: Any, __: Any) -> Any:
            return pb.ServerLiveResponse(live=True)

        return await self._call("ServerLive", live, request, context)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return await self._call("ServerReady", self._ready, request, context)

    async def _ready(self, request: Any, context: Any) -> Any:
        try:
            return pb.ServerReadyResponse(ready=self.service.server_ready())
        except ProtocolError:  # strict readiness with a failed model: not ready
            return pb.ServerReadyResponse(ready=False)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        return await self._call("ModelReady", self._model_ready, request, context)

    async def _model_ready(self, request: Any, context: Any) -> Any:
        try:
            self.service.repo.get(request.name, request.version or None)
        except ProtocolError as exc:
            if exc.status not in (404, 503):
                raise
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        async def metadata(_: Any, __: Any) -> Any:
            return pb.ServerMetadataResponse(**self.service.server_metadata())

        return await self._call("ServerMetadata", metadata, request, context)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        async def metadata(r: Any, _: Any) -> Any:
            return wire.model_metadata(self.service.model_metadata(r.name, r.version or None))

        return await self._call("ModelMetadata", metadata, request, context)

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        async def config(r: Any, _: Any) -> Any:
            found = self.service.model_config(r.name, r.version or None)
            return pb.ModelConfigResponse(config=wire.model_config(found))

        return await self._call("ModelConfig", config, request, context)

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        async def statistics(r: Any, _: Any) -> Any:
            return wire.statistics(self.service.statistics(r.name or None, r.version or None))

        return await self._call("ModelStatistics", statistics, request, context)

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        async def index(r: Any, _: Any) -> Any:
            return wire.repository_index(self.service.repo.index(), r.ready)

        return await self._call("RepositoryIndex", index, request, context)

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        async def load(r: Any, _: Any) -> Any:
            if r.parameters:
                raise ProtocolError(f"load {r.model_name!r}: parameters are not supported")
            await self.service.load(r.model_name)
            return pb.RepositoryModelLoadResponse()

        return await self._call("RepositoryModelLoad", load, request, context)

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        async def unload(r: Any, _: Any) -> Any:
            await self.service.unload(r.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await self._call("RepositoryModelUnload", unload, request, context)

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        return await self._call("ModelInfer", self._infer, request, context)

    async def _infer(self, request: Any, context: Any) -> Any:
        decode = self._decoder(request, context)
        done = await self.service.infer(request.model_name, request.model_version, decode)
        return wire.infer_response(
            request.model_name, done.model.version, done.request, done.outputs
        )

    def _decoder(self, message: Any, context: Any) -> Callable[[LoadedVersion], Awaitable[Any]]:
        """The gRPC front's half of the infer path: the message, within the model's limit,
        as an :class:`InferRequest` whose timeout is at most the call's deadline."""
        server_limit = self.service.options.max_body_bytes

        async def decode(model: LoadedVersion) -> InferRequest:
            size, limit = message.ByteSize(), model.body_limit(server_limit)
            if size > limit:
                raise ProtocolError(
                    f"request: {size} bytes exceed the limit of {limit} for model {model.name!r}",
                    413,
                )
            if size >= OFF_LOOP_BYTES:
                request = await self.service.off_loop(wire.infer_request, message)
            else:
                request = wire.infer_request(message)
            return _within_deadline(request, context.time_remaining())

        return decode


def _within_deadline(request: InferRequest, remaining_s: float | None) -> InferRequest:
    """The request's queue timeout, cut to the call's deadline (a client that gave up at its
    deadline should not have its request computed afterwards)."""
    if remaining_s is None:
        return request
    deadline_us = max(1, int(remaining_s * 1e6))
    asked = request.parameters.get("timeout")
    request.parameters["timeout"] = min(asked, deadline_us) if asked else deadline_us
    return request


def server_options(max_message_bytes: int, options: GrpcOptions) -> list[tuple[str, int]]:
    """grpc core's channel arguments for the server's limits."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_connection_idle_ms", int(options.idle_timeout_s * 1000)),
        ("grpc.server_handshake_timeout_ms", int(options.handshake_timeout_s * 1000)),
    ]


async def start_grpc(service: Service, options: GrpcOptions) -> grpc.aio.Server:
    """Listen on ``options.host:options.port`` on the running event loop; started server."""
    server = grpc.aio.server(options=server_options(service.options.max_body_bytes, options))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(service), server)
    address = f"{options.host}:{options.port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise TensorfabError(f"{address}: cannot listen there for gRPC (port in use?)")
    await server.start()
    if service.options.announce:
        service.options.announce(f"gRPC (KServe v2) on {address}")
    return server
