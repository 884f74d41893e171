"""Tasks own everything that depends on what a model reads and answers (see ``base.Task``)."""

from tensorfab.tasks.base import (
    OUTPUT,
    Inputs,
    Placement,
    Prediction,
    ServingLimits,
    Task,
    TensorSpec,
    TokenCount,
    Workload,
)
from tensorfab.tasks.registry import (
    TASKS,
    check_task_config,
    create_task,
    prepare_workload,
    register_all,
    task_from_meta,
)

__all__ = [
    "OUTPUT",
    "TASKS",
    "Inputs",
    "Placement",
    "Prediction",
    "ServingLimits",
    "Task",
    "TensorSpec",
    "TokenCount",
    "Workload",
    "check_task_config",
    "create_task",
    "prepare_workload",
    "register_all",
    "task_from_meta",
]
