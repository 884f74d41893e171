"""Tasks turn a batch into a loss and outputs into predictions and metrics."""

from tensorfab.tasks.base import Placement, Prediction, Task, Workload
from tensorfab.tasks.registry import TASKS, create_task, prepare_workload

__all__ = [
    "TASKS",
    "Placement",
    "Prediction",
    "Task",
    "Workload",
    "create_task",
    "prepare_workload",
]
