"""Datasheet lookup, MFU, the CPU matmul timer and the measured-peak cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tensorfab.hardware import peaks
from tensorfab.hardware.peaks import (
    datasheet_peak_tflops,
    default_cache_path,
    measure_matmul_tflops,
    measured_peak_tflops,
    mfu,
)


@pytest.mark.parametrize(
    ("name", "precision", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 PCIe", "fp8", 1513.0),
        ("NVIDIA H200", "fp32", 67.0),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
        ("NVIDIA A100-SXM4-80GB", "fp8", None),
        ("NVIDIA L4", "fp16", 121.0),
        ("NVIDIA L40S", "bf16", 362.05),  # "L4" must not match L40S (L4: 121)
        ("Tesla T4", "bf16", None),  # Turing has no bf16
        ("NVIDIA GH200 480GB", "bf16", 989.4),  # "H200" must not match GH200
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2),
        ("AMD EPYC", "fp32", None),
    ],
)
def test_datasheet_lookup(name: str, precision: str, expected: float | None) -> None:
    assert datasheet_peak_tflops(name, precision) == expected


def test_mfu() -> None:
    assert mfu(494.7e12, 989.4) == pytest.approx(0.5)
    assert mfu(1e12, None) is None


def test_measure_matmul_on_cpu_restores_tf32() -> None:
    before = torch.backends.cuda.matmul.allow_tf32
    assert measure_matmul_tflops("cpu", "fp32", n=64, iters=2, warmup=1) > 0
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_cpu_peak_is_measured_and_cached_per_thread_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peaks, "device_name", lambda d: "Fake EPYC")
    path = tmp_path / "p.json"
    calls: list[tuple[str, int]] = []

    def fake(device: torch.device, precision: str) -> float:
        calls.append((precision, torch.get_num_threads()))
        return 0.5 if precision == "bf16" else 0.2

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert measured_peak_tflops("cpu", "bf16", path, measure=fake) == 0.5
        assert measured_peak_tflops("cpu", "bf16", path, measure=fake) == 0.5  # cached
        torch.set_num_threads(2)  # another thread count is another peak
        assert measured_peak_tflops("cpu", "fp32", path, measure=fake) == 0.2
    finally:
        torch.set_num_threads(threads)
    assert calls == [("bf16", 1), ("fp32", 2)]
    key = f"Fake EPYC | torch {torch.__version__}"
    assert json.loads(path.read_text()) == {
        f"{key} | threads 1": {"bf16": 0.5},
        f"{key} | threads 2": {"fp32": 0.2},
    }
    assert measured_peak_tflops("cpu", "fp16", path, measure=fake) is None  # CPU lacks it


def test_mps_has_no_measured_peak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(device: torch.device, precision: str) -> float:
        raise AssertionError("MPS is never measured")

    monkeypatch.setattr(peaks, "supported_precisions", lambda d: ["fp32", "fp16"])
    assert measured_peak_tflops("mps", "fp32", tmp_path / "p.json", measure=never) is None
    assert not (tmp_path / "p.json").exists()


def test_peak_sizes() -> None:
    assert peaks.peak_matmul_size(torch.device("cuda", 0)) == (8192, 20)
    assert peaks.peak_matmul_size(torch.device("cpu")) == (1024, 10)


def test_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peaks, "supported_precisions", lambda d: ["fp32", "bf16"])
    monkeypatch.setattr(peaks, "device_name", lambda d: "Fake GPU")
    calls: list[str] = []

    def fake(device: torch.device, precision: str) -> float:
        calls.append(precision)
        return 123.5

    path = tmp_path / "cache" / "peaks.json"
    gpu = torch.device("cuda", 0)
    assert measured_peak_tflops(gpu, "bf16", path, measure_if_missing=False, measure=fake) is None
    assert measured_peak_tflops(gpu, "bf16", path, measure=fake) == 123.5
    assert measured_peak_tflops(gpu, "bf16", path, measure=fake) == 123.5
    assert calls == ["bf16"]
    saved = json.loads(path.read_text())
    assert saved == {f"Fake GPU | torch {torch.__version__}": {"bf16": 123.5}}
    assert measured_peak_tflops(gpu, "fp8", path, measure=fake) is None  # not supported


def test_damaged_cache_is_measured_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peaks, "supported_precisions", lambda d: ["fp32"])
    monkeypatch.setattr(peaks, "device_name", lambda d: "Fake GPU")
    path = tmp_path / "peaks.json"
    path.write_text("{not json")
    assert measured_peak_tflops("cuda:0", "fp32", path, measure=lambda d, p: 7.0) == 7.0


def test_cache_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORFAB_CACHE_DIR", str(tmp_path))
    assert default_cache_path() == tmp_path / "peaks.json"
    monkeypatch.delenv("TENSORFAB_CACHE_DIR")
    assert default_cache_path() == Path.home() / ".cache" / "tensorfab" / "peaks.json"


def test_measuring_a_peak_leaves_the_random_state_as_it_was() -> None:
    # a first run measures the peak, its re-run reads it from the cache: both must draw
    # the same dropout masks afterwards (the exact-resume tests of CRF/context runs)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    measure_matmul_tflops(torch.device("cpu"), "fp32", n=16, iters=1)
    assert torch.equal(torch.rand(3), expected)
