"""The one logger interface the training loop calls, and the loggers behind it.

The loop reports events (an epoch starts, a step's numbers, an evaluation, a long phase
such as the final evaluation, the end of the run) to one :class:`Loggers` object; what
listens (the progress display, TensorBoard, MLflow) is chosen once by :func:`open_loggers`
from the spec, so the loop never knows which are on (torchtune's
``MetricLoggerInterface``). A logger implements :class:`RunLogger`; the fan-out calls
every logger in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

# Records' keys that are positions, not measurements: never logged as a metric.
POSITION_KEYS = ("kind", "step", "epoch")


class RunLogger(Protocol):
    """What one side channel of a run hears. Records are ``metrics.jsonl``'s."""

    def log_config(self, params: dict[str, Any]) -> None:
        """The resolved spec, flattened (``train.lr``: 0.001), once at the start."""
        ...

    def start_epoch(self, epoch: int, epochs: int, batches: int, done: int) -> None: ...

    def advance(self, batch_in_epoch: int) -> None:
        """A step was taken; no numbers (they would need a device sync)."""
        ...

    def log_step(self, record: dict[str, Any], batch_in_epoch: int, batches: int) -> None:
        """A training record: ``step``, ``epoch``, ``loss``, ``lr``, ``samples_per_s``."""
        ...

    def log_eval(self, record: dict[str, Any]) -> None:
        """An evaluation record: ``epoch``, ``step``, ``eval_loss``, the task's scores."""
        ...

    def end_epoch(self, summary: str) -> None: ...

    def phase(self, what: str, done: int, total: int, unit: str) -> None:
        """Progress of work outside the steps (the final evaluation): ``done`` of ``total``."""
        ...

    def finish(self, run_dir: Path, report: dict[str, Any]) -> None:
        """The run's files are written (report, package, plots): a logger may keep them."""
        ...

    def close(self, failed: bool) -> None: ...


class Loggers:
    """Every logger of a run, called in order; what the loop holds."""

    def __init__(self, loggers: list[RunLogger]) -> None:
        self.loggers = list(loggers)

    def log_config(self, params: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_config(params)

    def start_epoch(self, epoch: int, epochs: int, batches: int, done: int = 0) -> None:
        for logger in self.loggers:
            logger.start_epoch(epoch, epochs, batches, done)

    def advance(self, batch_in_epoch: int) -> None:
        for logger in self.loggers:
            logger.advance(batch_in_epoch)

    def log_step(self, record: dict[str, Any], batch_in_epoch: int, batches: int) -> None:
        for logger in self.loggers:
            logger.log_step(record, batch_in_epoch, batches)

    def log_eval(self, record: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_eval(record)

    def end_epoch(self, summary: str) -> None:
        for logger in self.loggers:
            logger.end_epoch(summary)

    def phase(self, what: str, done: int, total: int, unit: str = "examples") -> None:
        for logger in self.loggers:
            logger.phase(what, done, total, unit)

    def finish(self, run_dir: Path, report: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.finish(run_dir, report)

    def close(self, failed: bool = False) -> None:
        for logger in self.loggers:
            logger.close(failed)


def measurements(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a record worth a curve: every float or int but its position."""
    return {
        k: float(v)
        for k, v in record.items()
        if k not in POSITION_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}`` (a spec as parameters)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class TensorBoardLogger:
    """``tb/`` event files: train loss and lr per logged step, evaluation scores."""

    def __init__(self, directory: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(directory), purge_step=purge_step)

    def log_config(self, params: dict[str, Any]) -> None:
        del params  # the resolved spec is spec.yaml beside the event files

    def start_epoch(self, epoch: int, epochs: int, batches: int, done: int) -> None:
        pass

    def advance(self, batch_in_epoch: int) -> None:
        pass

    def log_step(self, record: dict[str, Any], batch_in_epoch: int, batches: int) -> None:
        for key in ("loss", "lr"):
            self.writer.add_scalar(f"train/{key}", record[key], record["step"])

    def log_eval(self, record: dict[str, Any]) -> None:
        for key, value in measurements(record).items():
            self.writer.add_scalar(f"eval/{key}", value, record["step"])

    def end_epoch(self, summary: str) -> None:
        pass

    def phase(self, what: str, done: int, total: int, unit: str) -> None:
        pass

    def finish(self, run_dir: Path, report: dict[str, Any]) -> None:
        self.writer.flush()

    def close(self, failed: bool) -> None:
        self.writer.close()
