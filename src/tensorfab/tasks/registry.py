"""Task registry: ``create_task(name, ...)``, ``task_from_meta(meta)`` and
``prepare_workload(name, splits, ...)``.

A new task is one module that registers itself here (``@TASKS.register(name,
prepare=...)``) and is named in :data:`TASK_MODULES`; nothing outside ``tasks/`` changes.
"""

from __future__ import annotations

import importlib
from typing import Any

from tensorfab.errors import TensorfabError
from tensorfab.registry import Entry, Registry
from tensorfab.tasks.base import Task, Workload

TASKS: Registry[Task] = Registry("task")
TASK_MODULES = (
    "image_classification",
    "token_classification",
    "text_classification",
    "intent_classification",
)


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
