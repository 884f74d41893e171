"""``output.mlflow``: a digits training logged to a local MLflow store, offline, holds the
resolved spec as params, the per-step metrics of metrics.jsonl, and the model package and
reports as artifacts; every file the run writes follows the umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tensorfab.engine.loggers import flatten

mlflow = pytest.importorskip("mlflow", reason="the track extra (mlflow) is not installed")


def test_a_digits_run_in_mlflow_holds_params_step_metrics_and_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from tensorfab.engine.train import train
    from tensorfab.spec import load_spec

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # a local store, no server
    spec = load_spec(
        None,
        [
            "name=digits-lenet",
            "data.limit_train=256",
            "data.limit_test=64",
            "train.epochs=2",
            "train.log_every_steps=1",
            "train.device=cpu",
            f"output.runs_dir={tmp_path / 'runs'}",
            f"output.mlflow={uri}",
        ],
    )
    old = os.umask(0o022)
    try:
        result = train(spec)
    finally:
        os.umask(old)
    # away from a terminal the run says what it does, the final evaluation included
    shown = capfd.readouterr().err.splitlines()
    assert "epoch 1/2: 4 steps" in shown
    assert "scoring the best model on the test split: 64 examples" in shown
    ended = "scoring the best model on the test split: 64 examples in "
    assert any(line.startswith(ended) for line in shown)
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    timings = result.report["timings"]  # the final scoring of the best model counts too
    assert timings["final_eval_s"] > 0
    assert timings["total_s"] > timings["train_s"] + timings["eval_s"] + timings["final_eval_s"]

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("digits-lenet")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == result.run_dir.name
    assert run.data.params == {k: str(v) for k, v in flatten(spec.model_dump(mode="json")).items()}
    assert run.data.params["train.log_every_steps"] == "1"

    logged = [
        json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    steps = [(r["step"], r["loss"]) for r in logged if r["kind"] == "train"]
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(steps) > 4
    assert [m.step for m in history] == [step for step, _ in steps]
    assert [m.value for m in history] == pytest.approx([loss for _, loss in steps])
    evals = client.get_metric_history(run.info.run_id, "eval/accuracy")
    assert [m.value for m in evals] == pytest.approx(
        [h["accuracy"] for h in result.report["history"]]
    )
    final = run.data.metrics["final/accuracy"]
    assert final == pytest.approx(result.report["metrics"]["test"]["accuracy"])

    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "report.md", "spec.yaml", "metrics.jsonl", "model", "plots"} <= top
    model = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/weights.safetensors", "model/tensorfab.json"} <= model
    assert (tmp_path / "mlartifacts").is_dir()  # beside the database, not in the cwd
    copy = client.download_artifacts(run.info.run_id, "model/weights.safetensors", str(tmp_path))
    ours = result.run_dir / "model" / "weights.safetensors"
    assert Path(copy).read_bytes() == ours.read_bytes()

    modes = {
        str(p.relative_to(result.run_dir)): stat.S_IMODE(p.stat().st_mode)
        for p in result.run_dir.rglob("*")
        if p.is_file()
    }
    assert "model/weights.safetensors" in modes
    assert {k: m for k, m in modes.items() if m != 0o644} == {}


def test_a_file_store_works_offline_too(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from tensorfab.engine.mlflow_logger import MlflowLogger

    uri = (tmp_path / "mlruns").as_uri()  # file:///...: MLflow 3.x's store in maintenance
    logger = MlflowLogger(uri, "job", "run-1")
    logger.log_config({"train.lr": 0.01, "train.early_stopping.patience": None})
    logger.log_step({"kind": "train", "step": 3, "epoch": 1, "loss": 0.5, "lr": 0.01}, 3, 10)
    logger.log_eval({"epoch": 1, "step": 10, "eval_loss": 0.4, "accuracy": 0.75})
    logger.close(failed=True)
    run = MlflowClient(tracking_uri=uri).get_run(logger.run_id)
    assert run.info.status == "FAILED"
    assert run.data.params == {"train.lr": "0.01", "train.early_stopping.patience": "None"}
    assert run.data.metrics == {
        "train/loss": 0.5,
        "train/lr": 0.01,
        "eval/eval_loss": 0.4,
        "eval/accuracy": 0.75,
    }


def test_a_bad_tracking_uri_is_refused_by_the_spec() -> None:
    from tensorfab.errors import TensorfabError
    from tensorfab.spec import load_spec

    with pytest.raises(TensorfabError, match=r"output\.mlflow.*must be a tracking URI"):
        load_spec(None, ["output.mlflow=mlruns"])
