"""``output.mlflow: URI``: the run in an MLflow tracking store, as one more run logger.

Params are the resolved spec (flattened), metrics every logged step and evaluation with
their step, artifacts the model package, the reports and the plots. The client is an
``MlflowClient`` bound to the spec's URI: no process-wide active run or tracking URI is
set, so two runs in one process never log into each other. MLflow's usage telemetry is
turned off before mlflow is imported (``MLFLOW_DISABLE_TELEMETRY``, ``DO_NOT_TRACK``); a
``file:`` or ``sqlite:`` store then needs no network at all. MLflow 3.x keeps its file store
in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is set: a ``file:``
URI in the spec asks for exactly that store, so it is set for it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tensorfab.engine.loggers import measurements
from tensorfab.errors import TensorfabError

# what keeps mlflow from calling out: its own switch, and the cross-tool convention
OFFLINE_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
MAX_PARAM_CHARS = 6000  # MLflow's limit on one param value
BATCH = 1000  # metrics per log_batch call (MLflow's limit)
ARTIFACTS = ("report.json", "report.md", "spec.yaml", "metrics.jsonl")
ARTIFACT_DIRS = ("model", "plots")


def _client(uri: str) -> Any:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if uri.startswith("file:"):  # asked for by name: MLflow 3.x otherwise refuses its file store
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.tracking import MlflowClient
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "mlflow":
            raise
        raise TensorfabError(
            "output.mlflow: needs the track extra: pip install 'tensorfab[track]'"
        ) from None
    return MlflowClient(tracking_uri=uri)


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of a ``sqlite:`` store keeps its artifacts: ``mlartifacts/``
    beside the database. MLflow's default, ``./mlruns``, is relative to wherever training
    was started, which scatters a store's files over working directories."""
    if not uri.startswith("sqlite:///"):
        return None  # a file: store keeps them inside itself; a server decides for itself
    database = Path(uri.removeprefix("sqlite:///"))
    return (database.resolve().parent / "mlartifacts").as_uri()


def _experiment(client: Any, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(uri))


class MlflowLogger:
    """One MLflow run per training run, in the experiment named after the job."""

    def __init__(self, uri: str, experiment: str, run_name: str) -> None:
        self.uri = uri
        try:
            self.client = _client(uri)
            self.run_id = self.client.create_run(
                _experiment(self.client, experiment, uri), run_name=run_name
            ).info.run_id
        except TensorfabError:
            raise
        except Exception as exc:  # the store's own errors: bad path, locked database
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TensorfabError(f"output.mlflow: cannot open {uri} ({first})") from None
        self.pending: list[Any] = []

    def log_config(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):  # MLflow takes 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def _metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(k, v, now, step) for k, v in values.items()]
        if len(self.pending) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        while self.pending:
            chunk, self.pending = self.pending[:BATCH], self.pending[BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def start_epoch(self, epoch: int, epochs: int, batches: int, done: int) -> None:
        pass

    def advance(self, batch_in_epoch: int) -> None:
        pass

    def log_step(self, record: dict[str, Any], batch_in_epoch: int, batches: int) -> None:
        self._metrics({f"train/{k}": v for k, v in measurements(record).items()}, record["step"])

    def log_eval(self, record: dict[str, Any]) -> None:
        self._metrics({f"eval/{k}": v for k, v in measurements(record).items()}, record["step"])

    def end_epoch(self, summary: str) -> None:
        self._flush()

    def phase(self, what: str, done: int, total: int, unit: str) -> None:
        pass

    def finish(self, run_dir: Path, report: dict[str, Any]) -> None:
        """The final scores as metrics, then the package, reports and plots as artifacts."""
        test = report.get("metrics", {}).get("test", {})
        self._metrics({f"final/{k}": v for k, v in measurements(test).items()}, report["steps"])
        self._flush()
        for name in ARTIFACTS:
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name))
        for name in ARTIFACT_DIRS:
            if (run_dir / name).is_dir():
                self.client.log_artifacts(self.run_id, str(run_dir / name), name)

    def close(self, failed: bool) -> None:
        self._flush()
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")
