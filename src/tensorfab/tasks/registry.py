"""Task registry: ``create_task(name, classes=..., **config)``."""

from __future__ import annotations

from typing import Any

from tensorfab.registry import Registry
from tensorfab.tasks.base import Task

TASKS: Registry[Task] = Registry("task")


def create_task(name: str, **kwargs: Any) -> Task:
    from tensorfab.tasks import image_classification  # noqa: F401 - registers

    return TASKS.get(name).builder(**kwargs)
