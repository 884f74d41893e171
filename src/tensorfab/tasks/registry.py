"""Task registry: ``create_task(name, ...)`` and ``prepare_workload(name, splits, ...)``."""

from __future__ import annotations

from typing import Any

from tensorfab.registry import Entry, Registry
from tensorfab.tasks.base import Task, Workload

TASKS: Registry[Task] = Registry("task")


def task_entry(name: str) -> Entry[Task]:
    from tensorfab.tasks import image_classification, text_tasks  # noqa: F401 - registers

    return TASKS.get(name)


def create_task(name: str, **kwargs: Any) -> Task:
    """Rebuild a task from what a model package recorded (``task_config``)."""
    return task_entry(name).builder(**kwargs)


def prepare_workload(name: str, splits: Any, **options: Any) -> Workload:
    """Apply task ``name`` to loaded splits: tokenize/normalise, label maps, batch makers.

    ``options``: val_fraction, split_seed, model_name, max_length; each task uses what it needs.
    """
    return task_entry(name).meta["prepare"](splits, **options)
