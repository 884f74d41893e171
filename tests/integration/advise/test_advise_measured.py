"""``--calibrate`` with a ``bench train`` result measured on a GPU: the run corrects the
part of that GPU's step that limited it, the other GPUs keep the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tensorfab.advise import SpecProfiler, advise
from tensorfab.advise import measured as measured_module
from tensorfab.advise.report import load_calibration
from tensorfab.cli.main import main
from tensorfab.hardware import gpu_by_id
from tensorfab.spec import load_spec

TINY = ["data.limit_train=128", "data.limit_test=64", "data.batch_size=32", "train.device=cpu"]


def _result(step_ms: float, spec_dump: dict, workload: str = "lenet-digits") -> dict:
    return {
        "workload": workload,
        "batch_size": 32,
        "tensorfab": {
            "precision": "fp32",
            "step_time_ms": {"median": step_ms},
            "settings": {"spec": spec_dump},
        },
    }


def _bench(path: Path, device_name: str, step_ms: float, spec_dump: dict, more: tuple = ()) -> Path:
    env = {"device": "cuda", "device_name": device_name}
    results = [_result(step_ms, spec_dump), *more]
    path.write_text(json.dumps({"kind": "train", "environment": env, "results": results}))
    return path


def test_a_host_bound_run_measured_on_a_gpu_sets_that_gpus_host_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(None, [*TINY, "train.precision=fp32"])
    profiler = SpecProfiler(spec)  # one profile (and one host measurement) for both sides
    monkeypatch.setattr(measured_module, "SpecProfiler", lambda _spec: profiler)
    gpus = [gpu_by_id("h100-sxm"), gpu_by_id("l4")]
    before = {r["id"]: r for r in advise(profiler, "fp32", gpus).gpus}
    host_bound = ("launch overhead", "host input")  # tiny LeNet: the host sets the pace
    assert before["h100-sxm"]["bound"] in host_bound
    predicted = before["h100-sxm"]["step_ms"]
    dump = spec.model_dump(mode="json", exclude={"output"})
    compiled = {**dump, "train": {**dump["train"], "compile": True}}  # bench's CUDA default
    more = (_result(0.1 * predicted, compiled, "lenet-compiled"),)
    path = _bench(tmp_path / "h100.json", "NVIDIA H100 80GB HBM3", 3 * predicted, dump, more)

    calibration = load_calibration(path)
    assert calibration["gpus"]["h100-sxm"] == {"host_scale": pytest.approx(3.0)}
    advice = advise(profiler, "fp32", gpus, calibration)
    after = {r["id"]: r for r in advice.gpus}
    assert after["h100-sxm"]["step_ms"] == pytest.approx(3 * predicted)  # the measurement
    assert after["h100-sxm"]["bound"] == before["h100-sxm"]["bound"]
    assert after["l4"]["step_ms"] == pytest.approx(before["l4"]["step_ms"])  # not measured
    assert "corrected by a measured run" in after["h100-sxm"]["peaks"]
    assert any(n.startswith("h100-sxm: host time x3.00, from lenet-digits") for n in advice.notes)
    assert (
        "h100-sxm: lenet-compiled left out: compiled runs are not modelled; rerun bench "
        "train --compile off" in advice.notes
    )


@pytest.mark.parametrize(
    ("device_name", "spec_dump", "message"),
    [
        ("Intel(R) Xeon(R) Processor", {}, "is not a GPU of the catalogue"),
        (
            "NVIDIA L4",
            {"task": "no-such-task"},
            "result 0 ('lenet-digits'): tensorfab.settings.spec is not a job spec",
        ),
        (
            "NVIDIA L4",
            None,
            "result 0 ('lenet-digits'): tensorfab.step_time_ms.median must be a number",
        ),
        (
            "NVIDIA L4",
            {"task": "token-classification", "data": {"format": "conll", "path": "gone.txt"}},
            "result 0 ('lenet-digits'): ",
        ),
    ],
)
def test_a_result_that_cannot_correct_a_gpu_is_one_error_line(
    device_name: str, spec_dump: dict | None, message: str, tmp_path: Path, capsys
) -> None:
    step_ms = 5.0 if spec_dump is not None else -1.0  # None: a negative step time
    path = _bench(tmp_path / "bad.json", device_name, step_ms, spec_dump or {})
    argv = ["advise", "--workload", "lenet-train", "--calibrate", str(path)]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --calibrate {path}: ") and message in err
    assert "Traceback" not in err
