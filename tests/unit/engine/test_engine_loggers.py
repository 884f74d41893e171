"""The one logger interface of a run: the fan-out, what becomes a metric, the spec as
params, and the progress display away from a terminal (phases with counts and an ETA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tensorfab.engine import progress as progress_mod
from tensorfab.engine.loggers import Loggers, RunLogger, flatten, measurements
from tensorfab.engine.progress import ProgressReporter, eta_text


class Recorder:
    """A logger that writes down every call, in order."""

    def __init__(self, name: str, calls: list[tuple[str, str, Any]]) -> None:
        self.name, self.calls = name, calls

    def __getattr__(self, method: str) -> Any:
        return lambda *args: self.calls.append((self.name, method, args))


def test_every_logger_hears_every_event_in_order() -> None:
    calls: list[tuple[str, str, Any]] = []
    loggers = Loggers([Recorder("a", calls), Recorder("b", calls)])
    loggers.start_epoch(1, 3, 10)
    loggers.log_step({"step": 5, "loss": 0.5}, 5, 10)
    loggers.phase("evaluating", 0, 100)
    loggers.close()
    assert calls == [
        ("a", "start_epoch", (1, 3, 10, 0)),
        ("b", "start_epoch", (1, 3, 10, 0)),
        ("a", "log_step", ({"step": 5, "loss": 0.5}, 5, 10)),
        ("b", "log_step", ({"step": 5, "loss": 0.5}, 5, 10)),
        ("a", "phase", ("evaluating", 0, 100, "examples")),
        ("b", "phase", ("evaluating", 0, 100, "examples")),
        ("a", "close", (False,)),
        ("b", "close", (False,)),
    ]


def test_the_progress_display_is_a_run_logger() -> None:
    methods = [m for m in RunLogger.__dict__ if not m.startswith("_")]
    assert len(methods) == 9
    assert all(callable(getattr(ProgressReporter(quiet=True), m)) for m in methods)


def test_measurements_leave_out_positions_flags_and_text() -> None:
    record = {"kind": "train", "step": 7, "epoch": 1, "loss": 0.25, "lr": 1e-3, "ok": True, "n": 3}
    assert measurements(record) == {"loss": 0.25, "lr": 1e-3, "n": 3.0}


def test_flatten_names_nested_fields_with_dots() -> None:
    spec = {"name": "x", "train": {"lr": 0.1, "early_stopping": {"patience": None}}, "data": {}}
    assert flatten(spec) == {
        "name": "x",
        "train.lr": 0.1,
        "train.early_stopping.patience": None,
        "data": {},
    }


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "text"),
    [
        (0, 10, 5.0, "eta ?"),
        (5, 10, 5.0, "eta 5s"),
        (1, 100, 2.0, "eta 3m 18s"),
        (10, 10, 9, "eta 0s"),
    ],
)
def test_eta_at_the_pace_so_far(done: int, total: int, elapsed: float, text: str) -> None:
    assert eta_text(done, total, elapsed) == text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_away_from_a_terminal_a_phase_says_what_how_many_and_when_it_ends(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    shown = ProgressReporter(interactive=False)
    shown.phase("tokenizing train split", 0, 14041, "sentences")
    clock.now += 1.0
    shown.phase("tokenizing train split", 2000, 14041, "sentences")  # within 10 s: silent
    clock.now += 10.0
    shown.phase("tokenizing train split", 4000, 14041, "sentences")
    clock.now += 5.0
    shown.phase("tokenizing train split", 14041, 14041, "sentences")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "tokenizing train split: 14,041 sentences",
        "tokenizing train split: 4,000/14,041 sentences, eta 28s",  # 11 s for 4000: 27.6 s left
        "tokenizing train split: 14,041 sentences in 16.0 s",
    ]


def test_away_from_a_terminal_steps_show_counts_and_an_eta(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    shown = ProgressReporter(interactive=False)
    shown.start_epoch(1, 2, 100)
    clock.now += 5.0
    shown.advance(10)  # within 10 s of the last line: silent
    clock.now += 15.0
    shown.log_step({"loss": 0.5, "samples_per_s": 1234.0}, 40, 100)
    clock.now += 12.0
    shown.advance(64)  # between logged steps: the step and an ETA, no loss (no device sync)
    shown.end_epoch("train loss 0.5")
    assert capsys.readouterr().err.splitlines() == [
        "epoch 1/2: 100 steps",
        "epoch 1/2 step 40/100 loss 0.5000 1,234 samples/s, eta 30s",
        "epoch 1/2 step 64/100, eta 18s",
        "epoch 1/2: train loss 0.5",
    ]


def test_quiet_shows_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shown = ProgressReporter(quiet=True)
    shown.start_epoch(1, 1, 10)
    shown.phase("evaluating", 0, 10, "examples")
    shown.phase("evaluating", 10, 10, "examples")
    shown.finish(tmp_path, {})
    assert capsys.readouterr().err == ""
