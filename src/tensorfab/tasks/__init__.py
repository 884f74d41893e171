"""Tasks turn a batch into a loss and outputs into predictions and metrics."""

from tensorfab.tasks.base import Prediction, Task
from tensorfab.tasks.registry import TASKS, create_task

__all__ = ["TASKS", "Prediction", "Task", "create_task"]
