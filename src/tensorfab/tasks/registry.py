"""Task registry: ``create_task(name, ...)``, ``task_from_meta(meta)`` and
``prepare_workload(name, splits, ...)``.

A new task is one module that registers itself here (``@TASKS.register(name,
prepare=...)``) and is named in :data:`TASK_MODULES`; nothing outside ``tasks/`` changes.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError

from tensorfab.errors import TensorfabError
from tensorfab.registry import Entry, Registry
from tensorfab.tasks.base import Task, Workload

TASKS: Registry[Task] = Registry("task")
TASK_MODULES = (
    "image_classification",
    "token_classification",
    "text_classification",
    "tabular_classification",
    "recommendation",
    "intent_classification",
)
LOADER_ARGS = ("package_dir", "input_spec")  # every builder's; set by the loader, never a package


def register_all() -> Registry[Task]:
    """Import every task module (each registers itself) and return the registry."""
    for module in TASK_MODULES:
        importlib.import_module(f"tensorfab.tasks.{module}")
    return TASKS


def task_entry(name: str) -> Entry[Task]:
    return register_all().get(name)


def create_task(name: str, **kwargs: Any) -> Task:
    """Rebuild a task from what a model package recorded (``task_config``).

    Every builder takes ``package_dir`` (its assets) and ``input_spec`` (the package's
    ``input`` record), besides its own ``task_config``."""
    return task_entry(name).builder(**kwargs)


def check_task_config(name: str, config: Any) -> None:
    """A package's ``task_config`` as task ``name``'s builder declares it, or one line.

    The builder's own signature is the declaration: a key it does not take, a value of
    another type, or a loader argument (``package_dir``, ``input_spec``) is refused.
    """
    builder = task_entry(name).builder
    if not isinstance(config, dict):
        raise TensorfabError(f"task_config: expected an object, not {type(config).__name__}")
    params = inspect.signature(builder).parameters
    hints = typing.get_type_hints(builder)
    takes = [p for p in params if p not in LOADER_ARGS]
    for key, value in config.items():
        if key in LOADER_ARGS:
            raise TensorfabError(f"task_config.{key}: set by the loader, not by a package")
        if key not in takes:
            raise TensorfabError(
                f"task_config.{key}: unknown key (task {name!r} takes {', '.join(takes)})"
            )
        try:
            TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise TensorfabError(f"task_config.{key}: {reason}") from None


def task_from_meta(meta: dict[str, Any], package_dir: str | None = None) -> Task:
    """The task a package or exported version (its ``tensorfab.json``) describes.

    Cheap: assets such as a tokenizer load when first needed, so a task rebuilt only for
    its signature or its evaluation data reads no more than the JSON.
    """
    try:
        config = {"classes": meta.get("labels"), **meta.get("task_config", {})}
        return create_task(
            meta["task"],
            **config,
            package_dir=package_dir,
            input_spec=meta.get("input"),
        )
    except (KeyError, TypeError) as exc:
        raise TensorfabError(f"cannot rebuild the task {meta.get('task')!r} ({exc})") from None


def prepare_workload(name: str, splits: Any, **options: Any) -> Workload:
    """Apply task ``name`` to loaded splits: tokenize/normalise, label maps, batch makers.

    ``options``: val_fraction, split_seed, model_name, max_length; each task uses what it needs.
    """
    return task_entry(name).meta["prepare"](splits, **options)
