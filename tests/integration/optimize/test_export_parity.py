"""ONNX export, INT8 quantization and torch variants of an image model, with parity reports."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import pytest

from tensorfab.cli.main import main
from tensorfab.engine.train import train
from tensorfab.errors import TensorfabError
from tensorfab.optimize import export_package, parity_report
from tensorfab.package import load_package
from tensorfab.spec import load_spec
from testkit import run_cli

pytest.importorskip("onnxruntime", reason="onnxruntime (the deploy extra) is not installed")


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    spec = load_spec(
        None, ["train.epochs=3", "train.device=cpu", f"output.runs_dir={runs}", "name=digits"]
    )
    return train(spec, quiet=True).run_dir


def test_lenet_variants_match_pytorch(lenet_run: Path, tmp_path: Path) -> None:
    import onnx

    pkg = load_package(lenet_run)
    exported = export_package(pkg, tmp_path / "repo", "digits", calibration_samples=128)
    assert [e.variant for e in exported] == ["fp32", "int8-dynamic", "int8-static"]
    assert exported[0].path == tmp_path / "repo/digits/1/model.onnx"
    assert exported[1].path == tmp_path / "repo/digits-int8-dynamic/1/model.onnx"
    assert exported[2].path == tmp_path / "repo/digits-int8-static/1/model.onnx"
    assert exported[1].path.stat().st_size < exported[0].path.stat().st_size / 2
    assert exported[2].path.stat().st_size < exported[0].path.stat().st_size / 2
    graph = onnx.load(str(exported[0].path)).graph
    assert [i.name for i in graph.input] == ["images"]
    static_ops = {n.op_type for n in onnx.load(str(exported[2].path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= static_ops  # QDQ around the convs
    report = parity_report(pkg, exported, max_samples=200)
    fp32, int8 = report["variants"]["fp32"], report["variants"]["int8-dynamic"]
    static = report["variants"]["int8-static"]
    assert report["n"] == 200 and report["metric"] == "accuracy"
    assert fp32["max_abs_diff"] < 1e-3 and fp32["agreement"] == 1.0 and fp32["delta"] == 0.0
    assert int8["agreement"] > 0.95 and int8["passed"]
    assert static["agreement"] > 0.95 and static["passed"] and static["max_abs_diff"] > 1e-4
    assert static["providers"] == ["CPUExecutionProvider"] and static["notes"] == []
    # 7-bit weights: with 8, a CPU without VNNI saturated (3 of 200 labels changed on AVX2)
    static_meta = json.loads((tmp_path / "repo/digits-int8-static/1/tensorfab.json").read_text())
    assert static_meta["onnx"]["weight_bits"] == 7
    import yaml

    config = yaml.safe_load((tmp_path / "repo/digits-int8-dynamic/config.yaml").read_text())
    assert config == {
        "backend": "onnxruntime",
        "max_batch_size": 64,
        "max_queue_delay_us": 2000,
        "max_padding": 0.25,
        "instances": 1,
    }
    meta = json.loads((tmp_path / "repo/digits-int8-dynamic/1/tensorfab.json").read_text())
    assert meta["onnx"] == {"variant": "int8-dynamic", "opset": 17, "inputs": ["images"]}
    meta = json.loads((tmp_path / "repo/digits-int8-static/1/tensorfab.json").read_text())
    calibration = meta["onnx"]["calibration"]
    assert calibration["samples"] == 128 and calibration["method"] == "minmax"
    assert calibration["data"].startswith("digits train split (128 of ")


def test_only_the_requested_variants_are_written(lenet_run: Path, tmp_path: Path) -> None:
    exported = export_package(load_package(lenet_run), tmp_path, "d", variants=("int8-dynamic",))
    assert [e.variant for e in exported] == ["int8-dynamic"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d-int8-dynamic"]  # no stray fp32


def test_onnx_on_cuda_without_gpu_provider_runs_on_cpu_with_a_note(
    lenet_run: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    pkg = load_package(lenet_run)
    exported = export_package(pkg, tmp_path, "d", variants=("fp32",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the note says it: no RuntimeWarning repeats it
        row = parity_report(pkg, exported, max_samples=64, device="cuda")["variants"]["fp32"]
    assert row["device"] == "cpu" and row["providers"] == ["CPUExecutionProvider"]
    assert len(row["notes"]) == 1 and "'cuda' asked" in row["notes"][0]
    assert row["agreement"] == 1.0


def test_export_cli_writes_parity_and_exits_zero(lenet_run: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "export",
        str(lenet_run),
        "--repo",
        "repo",
        "--variants",
        "fp32,torch-bf16,torch-cudagraphs",
        "--latency",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert list(report["variants"]) == ["fp32", "torch-bf16", "torch-cudagraphs"]
    assert report["variants"]["torch-bf16"]["agreement"] > 0.95
    assert report["variants"]["torch-bf16"]["backend"] == "torch"
    assert report["variants"]["torch-cudagraphs"] == {
        "skipped": "torch-cudagraphs needs a CUDA GPU (device is cpu)",
        "passed": None,
    }
    assert report["version"] == 1
    saved = json.loads((tmp_path / "repo/digits/export-report-1.json").read_text())
    assert saved == report
    table = (tmp_path / "repo/digits/export-report-1.md").read_text()
    assert "| fp32 | " in table and "| ok |" in table
    assert "| torch-fp32 |" in table and "| onnx-fp32 |" in table
    assert "| torch-cudagraphs | | | | | | not checked: torch-cudagraphs needs a CUDA GPU" in table
    choice = report["inference_precision"]  # --latency: what auto is for the torch runtime
    assert choice["precision"] in ("fp32", "bf16") and choice["reason"]
    assert f"Inference precision (auto, torch runtime): {choice['precision']}: " in table
    latency = report["latency"]
    assert latency["device"].startswith("cpu (") and latency["seq_len"] is None
    runtimes = latency["runtimes"]
    assert set(runtimes) == {"torch-fp32", "onnx-fp32", "torch-bf16", "torch-cudagraphs"}
    assert runtimes.pop("torch-cudagraphs") == {
        "skipped": "torch-cudagraphs needs a CUDA GPU (device is cpu)"
    }
    for row in runtimes.values():
        assert 0 < row["batch1_p50_ms"] <= row["batch1_p99_ms"]
        assert row["best_batch"] in (1, 8, 32, 64) and row["best_throughput_per_s"] > 0
        assert row["device"] == "cpu" and "tokens_per_s" not in row
    assert runtimes["torch-fp32"]["speedup_vs_torch_fp32"] == 1.0
    assert runtimes["onnx-fp32"]["providers"] == ["CPUExecutionProvider"]
    assert runtimes["torch-bf16"]["settings"]["precision"] == "bf16"


def test_unknown_variant_is_refused(lenet_run: Path, tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match=r"--variants: unknown \['fp8'\]; choose from fp32,"):
        export_package(load_package(lenet_run), tmp_path, "x", variants=("fp8",))


def test_zero_calibration_samples_are_refused(lenet_run: Path, tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match="--calibration-samples: must be at least 1"):
        export_package(load_package(lenet_run), tmp_path, "x", calibration_samples=0)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_unreadable_training_data_stops_int8_static_before_anything_is_written(
    lenet_run: Path, tmp_path: Path
) -> None:
    pkg = load_package(lenet_run)
    pkg.meta["data"]["spec"].update(format="idx", path=str(tmp_path / "gone"))
    with pytest.raises(TensorfabError, match="int8-static calibrates on the model's training"):
        export_package(pkg, tmp_path / "repo", "digits")
    assert not (tmp_path / "repo").exists()
    exported = export_package(pkg, tmp_path / "repo", "digits", variants=("fp32", "int8-dynamic"))
    assert [e.variant for e in exported] == ["fp32", "int8-dynamic"]


def _export(lenet_run: Path, cwd: Path, *args: str) -> tuple[int, str, str]:
    """``tensorfab export`` in this process (no interpreter start-up per call)."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["export", str(lenet_run), "--repo", str(cwd / "repo"), "--samples", "64", *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--samples", "0"], "--samples must be at least 1, not 0"),
        (["--version", "0"], "--version must be at least 1 (Triton's versions start at 1), not 0"),
        (
            ["--name", "../evil"],
            "--name '../evil': a model name is letters, digits, '_', '-' and '.' "
            "(no path separators, not '.' or '..')",
        ),
        (["--data", "nope.conll"], "nope.conll: no such file or folder"),
        (["--seq-len", "0"], "--seq-len must be at least 1, not 0"),
        (["--tolerance", "-1"], "--tolerance must be 0 or more, not -1.0"),
        (["--threads", "0"], "--threads must be at least 1, not 0"),
        (["--device", "gpu"], "--device: must be cpu, cuda, cuda:N or auto, not 'gpu'"),
        (
            ["--variants", "fp32,banana"],
            "--variants: unknown ['banana']; choose from fp32, int8-dynamic, int8-static, "
            "torch-fp16, torch-bf16, torch-compile, torch-cudagraphs, torch-auto\n",
        ),
    ],
)
def test_export_bad_input_is_refused_before_anything_is_written(
    lenet_run: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    code, out, err = _export(lenet_run, tmp_path, *args)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "repo").exists()
    assert not (tmp_path / "evil").exists()


def test_export_again_writes_the_next_version_and_keeps_every_report(
    lenet_run: Path, tmp_path: Path
) -> None:
    assert _export(lenet_run, tmp_path, "--variants", "fp32", "--json")[0] == 0
    first = (tmp_path / "repo/digits/1/model.onnx").read_bytes()
    code, out, _ = _export(lenet_run, tmp_path, "--variants", "fp32,int8-dynamic")
    assert code == 0 and out.endswith(f"report: {tmp_path / 'repo/digits/export-report-2.json'}\n")
    assert (tmp_path / "repo/digits/1/model.onnx").read_bytes() == first  # untouched
    assert (tmp_path / "repo/digits/2/model.onnx").is_file()
    assert (tmp_path / "repo/digits-int8-dynamic/2/model.onnx").is_file()  # one version each
    one = json.loads((tmp_path / "repo/digits/export-report-1.json").read_text())
    two = json.loads((tmp_path / "repo/digits/export-report-2.json").read_text())
    assert (one["version"], list(one["variants"])) == (1, ["fp32"])
    assert (two["version"], list(two["variants"])) == (2, ["fp32", "int8-dynamic"])

    code, out, err = _export(lenet_run, tmp_path, "--variants", "fp32", "--version", "1")
    assert code == 2 and out == ""
    assert (
        err == f"error: {tmp_path / 'repo/digits/1'} exists; pick another --version or remove it\n"
    )
    assert (tmp_path / "repo/digits/1/model.onnx").read_bytes() == first
    assert json.loads((tmp_path / "repo/digits/export-report-1.json").read_text()) == one
