"""collect_info on a machine as it is, NVML failures, and ``tensorfab info --json``."""

from __future__ import annotations

import json
import sys
import types

import pytest

from tensorfab.cli import main as cli_main
from tensorfab.hardware import collect_info, driver_version, energy_mj, gpu_readings


def test_collect_info_shape() -> None:
    info = collect_info()
    for key in ("os", "python", "torch", "torch_cuda", "cpu", "memory", "mps_available", "gpus"):
        assert key in info
    assert info["cpu"]["logical_cores"] > 0
    assert info["cpu"]["model"]
    assert info["memory"]["total_bytes"] is None or info["memory"]["total_bytes"] > 0
    assert isinstance(info["gpus"], list)
    json.dumps(info)


def test_nvml_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert gpu_readings(0) is None
    assert driver_version() is None


def test_nvml_without_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    class NVMLError(Exception):
        pass

    def init() -> None:
        raise NVMLError("Driver Not Loaded")

    fake = types.SimpleNamespace(NVMLError=NVMLError, nvmlInit=init)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert gpu_readings(0, uuid="abc") is None
    assert driver_version() is None


def test_nvml_reading_not_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(handle: object) -> int:
        raise RuntimeError("Not Supported")

    fake = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlSystemGetDriverVersion=lambda: b"550.54.15",
        nvmlDeviceGetHandleByUUID=unsupported,
        nvmlDeviceGetHandleByIndex=lambda i: "handle",
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=42),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=2**30),
        nvmlDeviceGetPowerUsage=unsupported,
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert driver_version() == "550.54.15"
    readings = gpu_readings(0, uuid="abc")
    assert readings == {"utilization_pct": 42, "memory_used_bytes": 2**30, "power_w": None}
    assert energy_mj(0, uuid="abc") is None  # no nvmlDeviceGetTotalEnergyConsumption here


def test_energy_counter_by_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByUUID=lambda u: f"handle {u}",
        nvmlDeviceGetTotalEnergyConsumption=lambda h: 123_456 if h == "handle GPU-abc" else 0,
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert energy_mj(3, uuid="abc") == 123_456


@pytest.fixture
def info_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the info command: the other command modules belong to other layers' tests.
    monkeypatch.setattr(cli_main, "COMMANDS", {"info": cli_main.COMMANDS["info"]})


def test_cli_info_json(info_only: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["info", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["cpu"]["logical_cores"] > 0


def test_cli_info_table(info_only: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "CPU" in out and "torch" in out
