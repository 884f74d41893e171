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
import re
import time
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
from tensorfab.package.repository import (
    CONFIG_FILE,
    ModelConfig,
    load_model_config,
    repository_models,
    version_dirs,
)
from tensorfab.serve.batching import (
    BatchPolicy,
    DynamicBatcher,
    QueueFullError,
    RequestTimeoutError,
)
from tensorfab.serve.metrics import ServerMetrics
from tensorfab.serve.protocol import ProtocolError, check_inputs, check_tokens
from tensorfab.tasks import OUTPUT, ServingLimits, Task, task_from_meta

RETRY_AFTER_S = "1"
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


@dataclass
class ModelState:
    name: str
    config: ModelConfig | None = None
    versions: dict[str, LoadedVersion] = field(default_factory=dict)
    reason: str = ""  # why it is not ready

    @property
    def ready(self) -> bool:
        return bool(self.versions)


class ModelRepository:
    """Loaded models of one repository folder; every method runs on the server's event loop."""

    def __init__(self, root: Path, metrics: ServerMetrics, compute_threads: int = 4) -> None:
        if not root.is_dir():
            raise TensorfabError(f"{root}: no such model repository folder")
        self.root = root
        self.metrics = metrics
        self.models: dict[str, ModelState] = {}
        self.executor = ThreadPoolExecutor(compute_threads, thread_name_prefix="tensorfab-infer")

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

    async def load(self, name: str) -> ModelState:
        """(Re)load every version the model's config asks for; a failure is recorded."""
        if name not in self.names():
            raise ProtocolError(f"model {name!r}: not in the repository {self.root}", 404)
        await self.unload(name)
        state = ModelState(name)
        self.models[name] = state
        try:
            state.config = _checked_config(self.root / name)
            versions = version_dirs(self.root / name)
            if state.config.versions == "latest":
                versions = versions[-1:]
            for version in versions:
                state.versions[version] = await self._load_version(name, version, state.config)
        except Exception as exc:  # any failure (a corrupt graph too) stays with this model
            await self._stop(state)
            state.versions.clear()
            detail = str(exc) if isinstance(exc, TensorfabError) else f"{type(exc).__name__}: {exc}"
            state.reason = f"failed to load: {public_reason(detail, self.root)}"
        return state

    async def _load_version(self, name: str, version: str, config: ModelConfig) -> LoadedVersion:
        path = self.root / name / version
        loop = asyncio.get_running_loop()
        runtime, task, limits = await loop.run_in_executor(None, _open_version, path, config)
        outputs = input_signature(runtime.meta)[1]
        batcher = DynamicBatcher(
            run=runtime,
            policy=BatchPolicy(
                config.max_batch_size, config.max_queue_delay_us / 1e6, config.max_padding
            ),
            max_queue_size=config.max_queue_size,
            per_position=outputs[0].shape[0] == -1,  # [B, T, C]: cut back to each T
            executor=self.executor,
            instances=config.instances,
            on_batch=lambda stats: self.metrics.record_batch(name, version, stats),
        )
        batcher.start()
        return LoadedVersion(name, version, config, path, runtime, batcher, task, limits)

    async def unload(self, name: str) -> None:
        """Finish the model's queued requests, then drop it."""
        state = self.models.pop(name, None)
        if state is not None:
            await self._stop(state)

    async def _stop(self, state: ModelState) -> None:
        await asyncio.gather(*(v.batcher.stop() for v in state.versions.values()))

    async def close(self) -> None:
        for name in list(self.models):
            await self.unload(name)
        self.executor.shutdown(wait=True)

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
        config = model.config
        rows = check_inputs(inputs, model.signature[0], config.max_batch_size or None)
        check_tokens(inputs, model.limits.vocab_size, model.limits.max_positions)
        timeout_s = config.timeout_ms / 1e3
        if isinstance(timeout_us, int) and timeout_us > 0:
            timeout_s = min(timeout_s, timeout_us / 1e6)
        try:
            logits = await model.batcher.submit(inputs, rows, timeout_s)
        except QueueFullError as exc:
            raise ProtocolError(
                f"{exc}; retry later", 429, {"Retry-After": RETRY_AFTER_S}
            ) from None
        except RequestTimeoutError as exc:
            raise ProtocolError(f"request {exc}", 503, {"Retry-After": RETRY_AFTER_S}) from None
        return {OUTPUT: np.asarray(logits, dtype=np.float32)}


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])(?:[A-Za-z]:)?[/\\][^\s'\"(),;]+")


def public_reason(detail: str, root: Path) -> str:
    """A load failure as clients may read it: its first line, paths inside the repository
    relative to it (``digits/1/tensorfab.json``), any other filesystem path as ``<path>``."""
    line = detail.splitlines()[0] if detail else ""
    for prefix in {str(root.resolve()), str(root)}:
        line = line.replace(prefix.rstrip("/") + "/", "")
    return _ABSOLUTE_PATH.sub("<path>", line)


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
        runtime(task.example_feed([WARMUP_SEQ_LEN], np.random.default_rng(0)))
        meta.setdefault("serving", {})["warmup_s"] = time.perf_counter() - start
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
