"""The model repository as the server sees it: which models exist, load, unload, infer.

``repo/<model>/config.yaml`` (optional) and ``repo/<model>/<version>/`` folders, as Triton
lays them out (``package.repository``). A model that fails to load is recorded with the
reason (reported by the repository index and by its ``ready`` endpoint) and never stops
the others. Each loaded version has its :class:`~tensorfab.optimize.runtime.LoadedModel`
(loaded through the backend registry), its own :class:`DynamicBatcher`, and the task that
turns texts or images into tensors for the convenience endpoint.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tensorfab.errors import TensorfabError
from tensorfab.optimize.runtime import (
    LoadedModel,
    TensorSpec,
    TorchSettings,
    backend_names,
    input_signature,
    load_runtime,
)
from tensorfab.package.io import META_FILE
from tensorfab.package.manifest import MANIFEST_FILE
from tensorfab.package.repository import (
    CONFIG_FILE,
    RULE,
    ModelConfig,
    is_plain_name,
    load_model_config,
    repository_models,
    unversioned_models,
    version_dirs,
)
from tensorfab.serve.batching import (
    BatcherStoppedError,
    BatchPolicy,
    DynamicBatcher,
    QueueFullError,
    RequestTimeoutError,
)
from tensorfab.serve.metrics import ServerMetrics
from tensorfab.serve.protocol import ProtocolError, check_inputs, check_tokens
from tensorfab.tasks import OUTPUT, ServingLimits, Task, task_from_meta

RETRY_AFTER_S = "1"
JSON_BYTES_PER_VALUE = 32  # "-1.2345678901234567e-300, " and then some
BODY_SLACK = 64 * 1024
WARMUP_SEQ_LEN = 8  # tokens per row of a sequence model's warm-up call


@dataclass
class LoadedVersion:
    name: str
    version: str
    config: ModelConfig
    path: Path
    runtime: LoadedModel
    batcher: DynamicBatcher
    task: Any
    limits: ServingLimits = field(default_factory=ServingLimits)  # the task's, for this version

    @property
    def meta(self) -> dict[str, Any]:
        return self.runtime.meta

    @cached_property
    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """Inputs and outputs, worked out once per load rather than once per request."""
        return input_signature(self.meta)

    def body_limit(self, server_limit: int) -> int:
        """The largest infer body this version can need: its inputs at ``max_batch_size`` rows.

        Each value is allowed ``JSON_BYTES_PER_VALUE`` bytes (a float written out in JSON)
        plus ``BODY_SLACK`` for the request's field names; the server's limit when the
        model batches without bound or an axis has no known length.
        """
        values = 0
        for spec in self.signature[0]:
            dims = [self.limits.max_positions if d == -1 else d for d in spec.shape]
            if None in dims:
                return server_limit
            values += math.prod(dims)  # type: ignore[arg-type]
        rows = self.config.max_batch_size
        if not rows:
            return server_limit
        return min(server_limit, values * rows * JSON_BYTES_PER_VALUE + BODY_SLACK)


@dataclass
class ModelState:
    name: str
    config: ModelConfig | None = None
    versions: dict[str, LoadedVersion] = field(default_factory=dict)
    reason: str = ""  # why it is not ready
    load_error: str = ""  # why the last load failed, while an older load still serves

    @property
    def ready(self) -> bool:
        return bool(self.versions)


class ModelRepository:
    """Loaded models of one repository folder; every method runs on the server's event loop."""

    def __init__(
        self,
        root: Path,
        metrics: ServerMetrics,
        compute_threads: int = 4,
        max_queue_bytes: int | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        if not root.is_dir():
            raise TensorfabError(f"{root}: no such model repository folder")
        self.root = root
        self.announce = announce
        self._warned: set[str] = set()
        self.metrics = metrics
        self.max_queue_bytes = max_queue_bytes
        self.models: dict[str, ModelState] = {}
        self.executor = ThreadPoolExecutor(compute_threads, thread_name_prefix="tensorfab-infer")
        self._locks: dict[str, asyncio.Lock] = {}
        self._running: set[DynamicBatcher] = set()  # started and not yet stopped
        self._closed = False
        for name in unversioned_models(root):
            self.warn(f"{root / name}: no numbered version folder (<model>/1/); not served")

    def warn(self, line: str) -> None:
        """Tell the server's log ``line`` once (a reload does not repeat it)."""
        if self.announce is not None and line not in self._warned:
            self._warned.add(line)
            self.announce(f"warning: {line}")

    def names(self) -> list[str]:
        """Every model folder of the repository (loaded or not)."""
        return repository_models(self.root)

    def index(self) -> list[dict[str, Any]]:
        """Triton's repository index: each model version with its state and reason."""
        out = []
        for name in self.names():
            state = self.models.get(name)
            for version in version_dirs(self.root / name):
                loaded = state is not None and version in state.versions
                row = {
                    "name": name,
                    "version": version,
                    "state": "READY" if loaded else "UNAVAILABLE",
                }
                if not loaded:
                    row["reason"] = state.reason if state and state.reason else "unloaded"
                out.append(row)
        return out

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def load(self, name: str) -> ModelState:
        """(Re)load every version the model's config asks for, beside the one serving.

        Loads of one model run one at a time. The new versions are built and warmed while
        the old ones serve, then swapped in with one assignment; the old batchers then
        finish their queues and stop. A failed load is recorded in ``load_error`` and
        leaves the old versions serving (or, with none, the model not ready and why).
        """
        if name not in self.names():
            raise ProtocolError(f"model {name!r}: not in the repository", 404)
        async with self._lock(name):
            if self._closed:
                raise ProtocolError("the server is shutting down", 503)
            return await self._replace(name)

    async def _replace(self, name: str) -> ModelState:
        fresh = ModelState(name)
        try:
            _check_folder(self.root, name)
            fresh.config = _checked_config(self.root / name)
            versions = version_dirs(self.root / name)
            if fresh.config.versions == "latest":
                versions = versions[-1:]
            for version in versions:
                folder = self.root / name / version
                if not (folder / MANIFEST_FILE).is_file():  # legal (hand-made), said once
                    self.warn(f"{folder}: no {MANIFEST_FILE}; its files are not verified")
                fresh.versions[version] = await self._load_version(name, version, fresh.config)
        except Exception as exc:  # any failure (a corrupt graph too) stays with this model
            await self._stop(fresh)
            return self._failed(name, fresh, f"failed to load: {_reason(exc, self.root)}")
        if not fresh.versions:
            return self._failed(name, fresh, "failed to load: no version folder")
        old = self.models.get(name)
        self.models[name] = fresh  # the swap: requests from now on get the new versions
        if old is not None:
            await self._stop(old)
        return fresh

    def _failed(self, name: str, fresh: ModelState, reason: str) -> ModelState:
        old = self.models.get(name)
        if old is not None and old.ready:
            old.load_error = reason
            return old
        fresh.versions.clear()
        fresh.reason = fresh.load_error = reason
        self.models[name] = fresh
        return fresh

    async def _load_version(self, name: str, version: str, config: ModelConfig) -> LoadedVersion:
        path = self.root / name / version
        loop = asyncio.get_running_loop()
        runtime, task, limits = await loop.run_in_executor(None, _open_version, path, config)
        outputs = input_signature(runtime.meta)[1]
        batcher = DynamicBatcher(
            run=runtime,
            policy=BatchPolicy(  # a ragged runtime computes no padding: no split by length
                config.max_batch_size,
                config.max_queue_delay_us / 1e6,
                None if runtime.ragged else config.max_padding,
            ),
            max_queue_size=config.max_queue_size,
            max_queue_bytes=self.max_queue_bytes,
            per_position=outputs[0].shape[0] == -1,  # [B, T, C]: cut back to each T
            executor=self.executor,
            instances=config.instances,
            on_batch=lambda stats: self.metrics.record_batch(name, version, stats),
        )
        batcher.start()
        self._running.add(batcher)
        return LoadedVersion(name, version, config, path, runtime, batcher, task, limits)

    async def unload(self, name: str) -> None:
        """Finish the model's queued requests, then drop it."""
        async with self._lock(name):
            state = self.models.pop(name, None)
            if state is not None:
                await self._stop(state)

    async def _stop(self, state: ModelState) -> None:
        """Stop each batcher of ``state`` that still runs, each exactly once."""
        batchers = [v.batcher for v in state.versions.values() if v.batcher in self._running]
        self._running.difference_update(batchers)
        await asyncio.gather(*(b.stop() for b in batchers))

    async def close(self) -> None:
        """Refuse further loads, stop every model (after the loads under way), end the pool."""
        self._closed = True
        for name in list(self.models):
            await self.unload(name)
        for lock in list(self._locks.values()):
            async with lock:  # a load that was under way has finished
                pass
        for name in list(self.models):
            await self.unload(name)
        await asyncio.gather(*(b.stop() for b in self._running))
        self._running.clear()
        self.executor.shutdown(wait=True)

    def current(self, model: LoadedVersion) -> LoadedVersion:
        """The version now serving in place of ``model`` (itself unless a reload swapped it)."""
        state = self.models.get(model.name)
        if state is not None and state.versions.get(model.version) is not None:
            return state.versions[model.version]
        return self.get(model.name)

    def get(self, name: str, version: str | None = None) -> LoadedVersion:
        """A ready version (the highest when none is named), or a 404/503 ProtocolError."""
        state = self.models.get(name)
        if state is None:
            known = name in self.names()
            message = "is not loaded" if known else "is not in the repository"
            raise ProtocolError(f"model {name!r} {message}", 404 if not known else 503)
        if not state.ready:
            raise ProtocolError(f"model {name!r} is not ready: {state.reason}", 503)
        if version is None:
            return state.versions[max(state.versions, key=int)]
        if version not in state.versions:
            raise ProtocolError(f"model {name!r}: version {version!r} is not loaded", 404)
        return state.versions[version]

    async def infer(
        self, model: LoadedVersion, inputs: dict[str, np.ndarray], timeout_us: Any = None
    ) -> dict[str, np.ndarray]:
        """Check the inputs against the model's signature and run them through its batcher."""
        if model.batcher.closing:  # swapped out by a reload since the request came
            model = self.current(model)
        config = model.config
        rows = check_inputs(inputs, model.signature[0], config.max_batch_size or None)
        check_tokens(inputs, model.limits.vocab_size, model.limits.max_positions)
        timeout_s = config.timeout_ms / 1e3
        if isinstance(timeout_us, int) and timeout_us > 0:
            timeout_s = min(timeout_s, timeout_us / 1e6)
        try:
            logits = await model.batcher.submit(inputs, rows, timeout_s)
        except BatcherStoppedError:  # swapped out while it waited to queue: the new one
            return await self.infer(self.current(model), inputs, timeout_us)
        except QueueFullError as exc:
            raise ProtocolError(
                f"{exc}; retry later", 429, {"Retry-After": RETRY_AFTER_S}
            ) from None
        except RequestTimeoutError as exc:
            raise ProtocolError(f"request {exc}", 503, {"Retry-After": RETRY_AFTER_S}) from None
        return {OUTPUT: np.asarray(logits, dtype=np.float32)}


def _reason(exc: Exception, root: Path) -> str:
    """Why a load failed, as clients may read it (see :func:`public_reason`)."""
    detail = str(exc) if isinstance(exc, TensorfabError) else f"{type(exc).__name__}: {exc}"
    return public_reason(detail, root) if detail else type(exc).__name__


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])(?:[A-Za-z]:)?[/\\][^\s'\"(),;]+")


def public_reason(detail: str, root: Path) -> str:
    """A load failure as clients may read it: its first line, paths inside the repository
    relative to it (``digits/1/tensorfab.json``), any other filesystem path as ``<path>``."""
    line = detail.splitlines()[0] if detail else ""
    for prefix in {str(root.resolve()), str(root)}:
        line = line.replace(prefix.rstrip("/") + "/", "")
    return _ABSOLUTE_PATH.sub("<path>", line)


def _check_folder(root: Path, name: str) -> None:
    """A model folder is named as documented and every file in it lies in the repository
    (a symlink out of it would serve, and pass the manifest, with files nobody exported)."""
    if not is_plain_name(name):
        raise TensorfabError(f"{name!r} is not a model name; a model name is {RULE}")
    inside = root.resolve()
    for path in sorted((root / name).rglob("*")):
        if not path.resolve().is_relative_to(inside):
            raise TensorfabError(f"{path}: a link to a file outside the model repository")


def _check_labels(path: Path, task: Task, labels: Any, logits: np.ndarray) -> None:
    """The package's labels are the task's classes (``/config`` shows the one, answers use
    the other) and make the outputs the model gives, seen on the warm-up call: the task's
    signature says how many scores its classes make (an intent model's ``oos`` is one more)."""
    classes = getattr(task, "classes", None)
    if isinstance(labels, list) and classes is not None and list(classes) != labels:
        raise TensorfabError(
            f"{path / META_FILE}: labels ({len(labels)} names) differ from the task's "
            f"classes ({len(classes)}, task_config.classes)"
        )
    expected = task.signature()[1][0].shape[-1]
    width = logits.shape[-1] if logits.ndim else None
    if width is not None and expected != width:
        raise TensorfabError(
            f"{path / META_FILE}: its labels make {expected} scores per row; the model gives "
            f"{width}"
        )


def _checked_config(model_dir: Path) -> ModelConfig:
    """The model's config.yaml, its backend one that is registered (named in the file)."""
    config = load_model_config(model_dir)
    if config.backend not in backend_names():
        choices = ", ".join(backend_names())
        raise TensorfabError(
            f"{model_dir / CONFIG_FILE}: backend {config.backend!r}; choose from {choices}"
        )
    return config


def _settings(config: ModelConfig) -> TorchSettings | None:
    """The torch settings config.yaml names; None keeps what export recorded in the version."""
    if not {"precision", "compile", "cuda_graphs"} & config.model_fields_set:
        return None
    return TorchSettings(config.precision, config.compile, config.cuda_graphs)


def _open_version(path: Path, config: ModelConfig) -> tuple[LoadedModel, Task, ServingLimits]:
    """Load the runtime, the task and its serving limits of one version folder and warm it
    up (in a thread)."""
    if not (path / META_FILE).is_file():
        raise TensorfabError(f"{path}: no {META_FILE} (not an exported model or a package)")
    runtime = load_runtime(path, config.backend, config.device, config.threads, _settings(config))
    meta = runtime.meta
    try:
        task = task_from_meta(meta, package_dir=str(path))
        limits = task.serving_limits(path)
    except TensorfabError as exc:
        raise TensorfabError(f"{path / META_FILE}: {exc}") from None
    except OSError as exc:
        raise TensorfabError(f"{path / META_FILE}: cannot rebuild the task ({exc})") from None
    task = task.within(limits)  # e.g. texts truncated to the position table
    if config.warmup:
        start = time.perf_counter()
        logits = runtime(task.example_feed([WARMUP_SEQ_LEN], np.random.default_rng(0)))
        meta.setdefault("serving", {})["warmup_s"] = time.perf_counter() - start
        _check_labels(path, task, meta.get("labels"), np.asarray(logits))
    return runtime, task, limits


def describe(model: LoadedVersion) -> dict[str, Any]:
    """The protocol's model metadata: name, versions, platform, input and output tensors."""
    inputs, outputs = model.signature

    def tensors(specs: list) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.datatype, "shape": [-1, *s.shape]} for s in specs]

    return {
        "name": model.name,
        "versions": [model.version],
        "platform": f"tensorfab_{model.runtime.backend}",
        "inputs": tensors(inputs),
        "outputs": tensors(outputs),
    }
