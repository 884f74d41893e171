"""``precision: auto`` for inference: ``torch-auto`` resolved from the choice, the rule's reason
names the probed pass, ``bench infer --variants`` parsing."""

from __future__ import annotations

import pytest

from tensorfab.bench.infer_variants import BASELINE, DEFAULT_ROWS, parse_rows
from tensorfab.errors import TensorfabError
from tensorfab.hardware.autoprecision import PrecisionChoice, decide_cpu_precision
from tensorfab.optimize.precision import resolve_auto_variant

BF16 = PrecisionChoice("bf16", "bf16 matmul peak 6.40x fp32, a bf16 forward ...")
FP32 = PrecisionChoice("fp32", "bf16 matmul peak is 1.10x fp32 (< 1.5x): no bf16 units")


def test_torch_auto_becomes_the_chosen_torch_variant_in_place() -> None:
    variants = ("fp32", "torch-auto", "int8-dynamic")
    assert resolve_auto_variant(variants, BF16) == ("fp32", "torch-bf16", "int8-dynamic")
    assert resolve_auto_variant(("torch-auto", "torch-bf16"), BF16) == ("torch-bf16",)
    fp16 = PrecisionChoice("fp16", "auto on cuda")
    assert resolve_auto_variant(("torch-auto",), fp16) == ("torch-fp16",)


def test_torch_auto_at_fp32_needs_no_variant_and_alone_is_refused() -> None:
    assert resolve_auto_variant(("int8-dynamic", "torch-auto"), FP32) == ("int8-dynamic",)
    assert resolve_auto_variant(("fp32",), FP32) == ("fp32",)  # not asked: untouched
    with pytest.raises(TensorfabError) as err:
        resolve_auto_variant(("torch-auto",), FP32)
    assert str(err.value) == (
        "--variants torch-auto: auto chose fp32 here (bf16 matmul peak is 1.10x fp32 (< 1.5x): "
        "no bf16 units); the model package itself is the fp32 PyTorch model, so there is "
        "nothing to export: serve the package, or add an ONNX variant"
    )


def test_the_reason_names_the_probed_forward() -> None:
    choice = decide_cpu_precision(
        {"fp32": 0.1, "bf16": 0.4}, lambda: {"fp32": 0.2, "bf16": 0.1}, what="forward"
    )
    assert choice.precision == "bf16"
    assert choice.reason == (
        "bf16 matmul peak 4.00x fp32, a bf16 forward of this model 2.00x faster (>= 1.2x)"
    )
    slow = decide_cpu_precision(
        {"fp32": 0.1, "bf16": 0.4}, lambda: {"fp32": 0.1, "bf16": 0.1}, what="forward"
    )
    assert slow.precision == "fp32"
    assert "a bf16 forward of this model is only 1.00x faster (< 1.2x)" in slow.reason


def test_variant_rows_keep_the_baseline_first_once() -> None:
    assert parse_rows(None) == DEFAULT_ROWS and DEFAULT_ROWS[0] == BASELINE
    assert parse_rows("onnx-int8-dynamic, eager-fp32,torch-auto,onnx-int8-dynamic") == (
        BASELINE,
        "onnx-int8-dynamic",
        "torch-auto",
    )
    with pytest.raises(TensorfabError, match=r"--variants: unknown \['torch-fp16'\]"):
        parse_rows("torch-fp16")


def test_bench_infer_model_numbers_are_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from tensorfab.cli.main import main

    argv = ["bench", "infer", "--model", "nowhere", "--device", "cpu"]
    assert main([*argv, "--repeats", "0"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: --repeats must be at least 1, not 0"]
    assert main([*argv, "--samples", "-3"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: --samples must be at least 1, not -3"]


def test_a_gpu_takes_the_hardware_rule_without_a_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from tensorfab.optimize import precision

    monkeypatch.setattr(precision, "resolve_device", lambda d, f: torch.device("cuda", 0))
    seen = []
    monkeypatch.setattr(precision, "resolve_precision", lambda r, d, f: seen.append(r) or "bf16")
    choice = precision.choose_inference_precision(None, "cuda")  # type: ignore[arg-type]
    assert choice == PrecisionChoice("bf16", "auto on cuda: the device's fastest native type")
    assert seen == ["auto"]
