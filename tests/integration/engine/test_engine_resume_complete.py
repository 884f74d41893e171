"""``--resume`` of a run that has already finished: nothing to do, nothing touched.

A scheduler requeues a job that finished while it was down with ``--resume``, so this must
be safe: the run directory stays byte for byte (and mtime for mtime) as it was. A run that
died between its last checkpoint and its report gets the report, without training; a run
given more epochs trains on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tensorfab.engine.train import train
from tensorfab.spec import JobSpec, load_spec
from testkit import run_cli

JOB = ["--set", "train.device=cpu", "--set", "train.epochs=1", "--set", "data.batch_size=64"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits run trained to its end (1 epoch), as a user's `tensorfab train` leaves it."""
    cwd = tmp_path_factory.mktemp("finished")
    proc = run_cli("train", *JOB, "--name", "done", "--quiet", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd / "runs" / "done"


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs" / run.name
    shutil.copytree(run, target)
    return target


def _snapshot(run: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every path under ``run``: files with their bytes and mtime, folders as None."""
    return {
        str(p.relative_to(run)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
        for p in sorted(run.rglob("*"))
    }


def _spec() -> JobSpec:
    """The spec of JOB, as the library takes it (runs/ under the working directory)."""
    return load_spec(None, [*JOB[1::2], "output.name=done"])


def _report(run: Path) -> dict:
    return json.loads((run / "report.json").read_text())


def test_resume_of_a_complete_run_says_so_and_changes_nothing(
    finished: Path, tmp_path: Path
) -> None:
    run = _copy(finished, tmp_path)
    steps = _report(run)["steps"]
    before = _snapshot(run)
    proc = run_cli("train", *JOB, "--name", "done", "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"run runs/done is already complete (epoch 1/1, step {steps}); nothing to do"
    ]
    assert proc.stdout == ""
    assert _snapshot(run) == before

    as_json = run_cli("train", *JOB, "--name", "done", "--resume", "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == _report(run)  # the run's own report, as it was
    assert _snapshot(run) == before


def test_library_resume_of_a_complete_run_returns_its_report(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _copy(finished, tmp_path)
    before = _snapshot(run)
    monkeypatch.chdir(tmp_path)
    result = train(_spec(), resume=True, quiet=True)
    assert result.status == "already-complete"
    assert result.report == _report(run)
    assert result.message.startswith("run runs/done is already complete (epoch 1/1, step ")
    assert _snapshot(run) == before


def test_a_run_killed_before_its_report_gets_the_report_without_training(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _copy(finished, tmp_path)
    original = _report(run)
    (run / "report.json").unlink()  # as if killed after the last checkpoint
    (run / "report.md").unlink()
    kept = ["checkpoints/last.pt", "model/weights.safetensors", "metrics.jsonl"]
    before = {name: (run / name).read_bytes() for name in kept}
    proc = run_cli("train", *JOB, "--name", "done", "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())  # rich wraps long lines
    assert f"run runs/done ended training at step {original['steps']}; writing its" in said
    assert "resuming" not in proc.stderr
    assert {name: (run / name).read_bytes() for name in kept} == before  # no training step
    report = _report(run)
    assert (report["steps"], report["status"]) == (original["steps"], "completed")
    assert report["metrics"]["test"] == original["metrics"]["test"]
    assert report["history"] == original["history"]
    # the speed of the training it did, not 0 samples/s: timings travel in the checkpoint
    assert report["throughput"]["train_samples_per_s"] > 0
    assert report["throughput"]["epoch_time_s"] == original["throughput"]["epoch_time_s"]
    assert (run / "report.md").is_file()
    monkeypatch.chdir(tmp_path)  # now it is complete
    assert train(_spec(), resume=True, quiet=True).status == "already-complete"


def test_resume_with_more_epochs_trains_on(finished: Path, tmp_path: Path) -> None:
    run = _copy(finished, tmp_path)
    first = _report(run)
    more = [*JOB, "--set", "train.epochs=2"]
    proc = run_cli("train", *more, "--name", "done", "--resume", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = _report(run)
    assert report["status"] == "completed" and report["steps"] == 2 * first["steps"]
    assert [h["epoch"] for h in report["history"]] == [1, 2]
    assert report["history"][0] == first["history"][0]
    # both epochs' timings, the one before the resume included
    assert len(report["throughput"]["epoch_time_s"]) == 2
    assert report["throughput"]["epoch_time_s"][0] == first["throughput"]["epoch_time_s"][0]
    evals = [
        json.loads(line)["epoch"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "eval"
    ]
    assert evals == [1, 2]
