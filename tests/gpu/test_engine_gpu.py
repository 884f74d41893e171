"""GPU paths of the engine: bf16 autocast, fused optimizer, compile, device-resident data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tensorfab.engine.compare import compare_devices
from tensorfab.engine.train import train
from tensorfab.spec import load_spec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("precision", ["auto", "fp32", "tf32", "fp16"])
def test_digits_trains_on_cuda(tmp_path: Path, precision: str) -> None:
    spec = load_spec(
        None,
        [
            "train.device=cuda",
            f"train.precision={precision}",
            "train.epochs=10",
            f"output.runs_dir={tmp_path}",
        ],
    )
    result = train(spec, quiet=True)
    assert result.report["metrics"]["test"]["accuracy"] >= 0.95
    assert result.report["hardware"]["device"].startswith("cuda")
    assert result.report["throughput"]["mfu"] is not None


def test_compiled_model_trains(tmp_path: Path) -> None:
    spec = load_spec(
        None,
        [
            "train.device=cuda",
            "train.compile=true",
            "train.epochs=3",
            f"output.runs_dir={tmp_path}",
        ],
    )
    assert train(spec, quiet=True).report["metrics"]["test"]["accuracy"] >= 0.9


def test_gpu_epoch_is_faster_than_cpu() -> None:
    spec = load_spec(None, ["data.batch_size=512"])
    rows = compare_devices(spec, ["cpu", "cuda"])["devices"]
    assert rows[1]["speedup"] > 1.0


def test_resident_text_batches_on_cuda_equal_the_host_collated_ones() -> None:
    from tensorfab.data.sequence_batching import SequenceBatches

    g = torch.Generator().manual_seed(0)
    ids = [
        torch.randint(5, 30000, (int(n),), generator=g).tolist()
        for n in torch.randint(1, 60, (200,), generator=g)
    ]
    tags = [[i % 9 for i in range(len(x))] for x in ids]
    cuda = torch.device("cuda")
    host = SequenceBatches(ids, tags, 16, device=cuda, shuffle=True, bucket=True, seed=2)
    resident = SequenceBatches(
        ids, tags, 16, device=cuda, shuffle=True, bucket=True, seed=2, resident=True
    )
    for a, b in zip(host.epoch(1), resident.epoch(1), strict=True):
        assert all(x.device.type == "cuda" and torch.equal(x, y) for x, y in zip(a, b, strict=True))
