"""The GPU catalogue: complete entries with sources, dense peaks, names matched as words."""

from __future__ import annotations

import pytest

from tensorfab.errors import TensorfabError
from tensorfab.hardware import find_gpu, gpu_by_id, load_catalogue
from tensorfab.hardware.catalogue import parse_catalogue
from tensorfab.hardware.peaks import datasheet_peak_tflops

REQUIRED = {
    "b200",
    "h200",
    "h100-sxm",
    "h100-pcie",
    "a100-40gb",
    "a100-80gb",
    "l40s",
    "l4",
    "a10",
    "t4",
    "v100",
    "rtx-4090",
    "rtx-6000-ada",
}


def test_catalogue_has_the_required_gpus_each_with_sources() -> None:
    gpus = {g.id: g for g in load_catalogue()}
    assert set(gpus) >= REQUIRED
    for gpu in gpus.values():
        assert {"tflops", "memory", "power", "price"} <= set(gpu.sources), gpu.id
        assert gpu.memory_gb > 0 and gpu.bandwidth_gb_s > 0 and gpu.tdp_w > 0
        assert gpu.price_usd_h > 0
        assert "fp32" in gpu.tflops


def test_no_bf16_or_tf32_before_ampere_and_no_fp8_on_ampere() -> None:
    for gpu_id in ("t4", "v100"):
        assert gpu_by_id(gpu_id).precisions == ["fp32", "fp16"]
    for gpu_id in ("a100-40gb", "a100-80gb", "a10"):
        assert "fp8" not in gpu_by_id(gpu_id).tflops


def test_dense_figures_not_sparse() -> None:
    """H100 SXM dense bf16 is 989.4 (1979 is the 2:4-sparsity figure); tf32 half of bf16."""
    h100 = gpu_by_id("h100-sxm")
    assert h100.tflops["bf16"] == 989.4
    assert h100.tflops["tf32"] == pytest.approx(h100.tflops["bf16"] / 2)
    assert gpu_by_id("b200").tflops["bf16"] == 2250.0


@pytest.mark.parametrize(
    ("name", "gpu_id"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA A10", "a10"),
        ("Tesla V100-SXM2-32GB", "v100"),
        ("NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada"),
    ],
)
def test_device_names_match_the_right_entry(name: str, gpu_id: str) -> None:
    gpu = find_gpu(name)
    assert gpu is not None and gpu.id == gpu_id


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA H100 80GB HBM3 MIG 1g.10gb",  # a slice: 1/7 of the SMs, 10 of 80 GB
        "NVIDIA A100-SXM4-40GB MIG 3g.20gb",
        "NVIDIA A100 80GB PCIe",  # the catalogue's A100s are SXM (400 W, 2039 GB/s)
        "NVIDIA A100-PCIE-40GB",
        "Tesla V100-PCIE-32GB",  # the catalogue's V100 is the SXM2 board (300 W, 125 TF)
        "NVIDIA GeForce RTX 4090 D",  # 14,592 of the 4090's 16,384 cores
        "NVIDIA GeForce RTX 4090 Laptop GPU",
    ],
)
def test_another_board_under_an_entrys_name_matches_nothing(name: str) -> None:
    assert find_gpu(name) is None
    assert datasheet_peak_tflops(name, "fp16") is None  # MFU's peak: n/a, not the board's


def test_the_form_factor_a_name_states_must_agree() -> None:
    assert find_gpu("NVIDIA H100 NVL").id == "h100-nvl"  # entry named "H100 NVL (PCIe)"
    assert find_gpu("NVIDIA H200 NVL").id == "h200-nvl"
    assert find_gpu("NVIDIA GeForce RTX 4090").id == "rtx-4090"
    assert datasheet_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4


def test_unknown_id_lists_the_catalogue() -> None:
    with pytest.raises(
        TensorfabError, match=r"--gpus: unknown GPU 'h1000'; the catalogue has b200"
    ):
        gpu_by_id("h1000")


def test_parse_refuses_missing_fields_and_duplicates() -> None:
    with pytest.raises(TensorfabError, match=r"gpus\[0\]: missing .*tdp_w"):
        parse_catalogue(
            "gpus:\n  - {id: x, name: X, match: [X], tflops: {fp32: 1}, "
            "memory_gb: 1, bandwidth_gb_s: 1, interconnect: pcie}\n"
        )
    entry = (
        "{id: x, name: X, match: [X], tflops: {fp32: 1}, memory_gb: 1, bandwidth_gb_s: 1, "
        "interconnect: p, tdp_w: 1, price_usd_h: 1, sources: {}}"
    )
    with pytest.raises(TensorfabError, match="duplicate GPU ids x"):
        parse_catalogue(f"gpus:\n  - {entry}\n  - {entry}\n")
