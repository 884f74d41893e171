"""--calibrate files: a bench micro result of a catalogue GPU, an advise object, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tensorfab.advise.report import load_calibration
from tensorfab.errors import TensorfabError


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data))
    return path


def test_bench_micro_result_becomes_the_gpus_measured_figures(tmp_path: Path) -> None:
    micro = {
        "kind": "micro",
        "environment": {"device_name": "NVIDIA H100 80GB HBM3"},
        "matmul": {"bf16": {"tflops": 776.0}, "fp8": {"tflops": None, "reason": "n/a"}},
        "bandwidth_gb_s": {"device_to_device": 1500.0},
    }
    calibration = load_calibration(_write(tmp_path, micro))
    assert calibration == {
        "gpus": {"h100-sxm": {"tflops": {"bf16": 776.0}, "bandwidth_gb_s": 3000.0}}
    }


def test_advise_object_passes_and_bad_files_are_one_line(tmp_path: Path) -> None:
    data = {"host_op_us": 20.0, "gpus": {"l4": {"price_usd_h": 0.5}}}
    assert load_calibration(_write(tmp_path, data)) == data
    with pytest.raises(TensorfabError, match=r"cal\.json: the calibration: unknown keys peak"):
        load_calibration(_write(tmp_path, {"peak": 1}))
    with pytest.raises(TensorfabError, match=r"cal\.json: not JSON"):
        (tmp_path / "cal.json").write_text("{")
        load_calibration(tmp_path / "cal.json")
    micro = {"kind": "micro", "environment": {"device_name": "AMD EPYC"}, "matmul": {}}
    with pytest.raises(TensorfabError, match="'AMD EPYC' is not a GPU of the catalogue"):
        load_calibration(_write(tmp_path, micro))
