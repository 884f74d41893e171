"""What the server's fronts share: one repository, its metrics, and the one inference path.

The HTTP app (``app.py``) and the gRPC servicer (``grpc_server.py``) are two wire formats
over one :class:`Service`: each turns its request into the same
:class:`~tensorfab.serve.protocol.InferRequest` and calls :meth:`Service.infer`, which
counts the request, checks it against the model and runs it through the model's batcher.
Readiness, metadata, config, statistics and model control are answered here too, so both
fronts say the same thing and refuse the same things.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tensorfab import __version__
from tensorfab.serve.guard import RequestTally
from tensorfab.serve.handoff import Handoff
from tensorfab.serve.metrics import ServerMetrics
from tensorfab.serve.protocol import InferRequest, ProtocolError, chosen_outputs
from tensorfab.serve.repository import LoadedVersion, ModelRepository, describe
from tensorfab.serve.statistics import model_statistics

MODEL_CONTROL = ("none", "explicit")
EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "statistics_metrics"]


@dataclass(frozen=True)
class GrpcOptions:
    """Where and how the gRPC endpoint listens (``--grpc-port``); off when not given."""

    port: int
    host: str = "127.0.0.1"
    grace_s: float = 30.0  # requests in flight get this long at shutdown
    handshake_timeout_s: float = 10.0  # a connection must finish its HTTP/2 start in this
    idle_timeout_s: float = 75.0  # an idle connection is closed after this


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
    grpc: GrpcOptions | None = None  # the gRPC endpoint beside HTTP (off by default)
    access_log: Callable[[str], None] | None = None  # one line per request; None: off


@dataclass
class Inferred:
    """One answered infer request: the version that ran it, the request, chosen outputs."""

    model: LoadedVersion
    request: InferRequest
    outputs: dict[str, np.ndarray]


Decode = Callable[[LoadedVersion], Awaitable[InferRequest]]


class Service:
    """The models of one repository as both fronts serve them; lives on the server's loop."""

    def __init__(self, options: ServerOptions) -> None:
        if options.model_control not in MODEL_CONTROL:
            raise ValueError(f"model_control {options.model_control!r}: one of {MODEL_CONTROL}")
        self.options = options
        self.metrics = ServerMetrics()
        self.repo = ModelRepository(
            options.repository,
            self.metrics,
            options.compute_threads,
            options.max_queue_bytes,
            options.announce,
        )
        self.decoder = ThreadPoolExecutor(
            options.decode_threads, thread_name_prefix="tensorfab-decode"
        )
        self.handoff = Handoff(self.decoder, options.decode_threads)  # predict's decoding
        self.started = False
        self.stopping = False

    async def start(self) -> None:
        """Load the models asked for (each failure is kept with its model, never raised)."""
        for name in self.options.models or self.repo.names():
            state = await self.repo.load(name)
            if self.options.announce:
                versions = ",".join(state.versions) or "-"
                reason = "ready" if state.ready else state.reason
                self.options.announce(f"  {name} [{versions}]: {reason}")
        self.started = True

    async def stop(self) -> None:
        """Finish every queue and stop the models; the decode pool ends."""
        self.stopping = True
        await self.repo.close()
        self.decoder.shutdown(wait=False, cancel_futures=True)

    def server_ready(self) -> bool:
        """Ready once started and until stopping; with strict readiness, refused (503) while
        any model failed to load."""
        failed = [s.name for s in self.repo.models.values() if not s.ready]
        if self.options.strict_readiness and failed:
            raise ProtocolError(f"models not ready: {failed}", 503)
        return self.started and not self.stopping

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "tensorfab", "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The protocol's model metadata; without a version, every loaded version is listed."""
        model = self.repo.get(name, version)
        meta = describe(model)
        if not version:
            meta["versions"] = sorted(self.repo.models[name].versions, key=int)
        return meta

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The model's configuration as Triton's ``/config`` shows it (plus tensorfab's own)."""
        model = self.repo.get(name, version)
        meta, config = describe(model), model.config
        batching = {"max_queue_delay_microseconds": config.max_queue_delay_us}
        return {
            "name": model.name,
            "platform": meta["platform"],
            "backend": model.runtime.backend,
            "max_batch_size": config.max_batch_size,
            "input": meta["inputs"],
            "output": meta["outputs"],
            "dynamic_batching": batching if config.max_batch_size else None,
            "instance_group": [{"count": config.instances, "kind": config.device.upper()}],
            "tensorfab": {"task": model.meta["task"], "labels": model.meta["labels"]},
        }

    async def infer(self, name: str, version: str | None, decode: Decode) -> Inferred:
        """The one inference path: ``decode`` turns the front's request into an
        :class:`InferRequest` (refusing what is over the model's limits), then it is checked,
        batched and run; counted in the metrics as a success or a failure."""
        model = self.repo.get(name, version or None)
        with self.metrics.request(name, model.version):
            request = await decode(model)
            outputs = await self.repo.infer(
                model, request.inputs, request.parameters.get("timeout")
            )
            return Inferred(model, request, chosen_outputs(request, outputs))

    async def off_loop(self, work: Callable[..., Any], *args: Any) -> Any:
        """``work(*args)`` in the decode pool, so that the event loop keeps serving meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self.decoder, work, *args)

    def _controlled(self, action: str) -> None:
        if self.options.model_control != "explicit":
            raise ProtocolError(
                f"{action}: model control is off; start the server with --model-control explicit",
                403,
            )

    async def load(self, name: str) -> None:
        """(Re)load a model (explicit model control only); a failed load is a 400 saying why."""
        self._controlled("load")
        state = await self.repo.load(name)
        if state.load_error:
            serving = f"; still serving {sorted(state.versions)}" if state.ready else ""
            raise ProtocolError(f"model {name!r}: {state.load_error}{serving}", 400)

    async def unload(self, name: str) -> None:
        """Unload a model after its queue (explicit model control only)."""
        self._controlled("unload")
        if name not in self.repo.names():
            raise ProtocolError(f"model {name!r}: not in the repository", 404)
        await self.repo.unload(name)

    def statistics(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Triton's statistics extension: per loaded version, from the server's metrics."""
        if not name:
            pairs = [(state.name, v) for state in self.repo.models.values() for v in state.versions]
        elif version:
            pairs = [(name, self.repo.get(name, version).version)]
        else:
            self.repo.get(name)  # 404 / 503 as every model route says it
            pairs = [(name, v) for v in self.repo.models[name].versions]
        pairs.sort(key=lambda p: (p[0], int(p[1])))
        return {"model_stats": [model_statistics(self.metrics, n, v) for n, v in pairs]}

    def queue_depths(self) -> None:
        """Set the queue-depth gauge of every loaded version (before /metrics renders)."""
        for state in self.repo.models.values():
            for v in state.versions.values():
                self.metrics.queue_depth.labels(state.name, v.version).set(len(v.batcher.queue))
