"""``precision: auto`` and ``threads: auto`` on a real, tiny CPU run: the choice, its reason
and numbers in the report, fp32 master weights, a resume that keeps the checkpoint's
precision even when the cached choice says otherwise, and ``--profile``'s files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tensorfab.engine.train import train
from tensorfab.hardware import peak_cache_key
from tensorfab.spec import load_spec

TINY = [
    "data.limit_train=128",
    "data.limit_test=64",
    "data.batch_size=32",
    "train.device=cpu",
    "train.log_every_steps=2",
]


def test_auto_precision_is_reported_and_kept_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENSORFAB_CACHE_DIR", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # LeNet's auto count: the peaks below are for one thread
        peaks = {peak_cache_key(torch.device("cpu")): {"fp32": 0.1, "bf16": 0.3}}
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache" / "peaks.json").write_text(json.dumps(peaks))  # not measured here
        spec = load_spec(None, [*TINY, "train.epochs=1", f"output.runs_dir={tmp_path}", "name=p"])
        first = train(spec, quiet=True, profile=True).report
        chosen = first["hardware"]["precision"]
        why = first["hardware"]["precision_choice"]
        cache = json.loads((tmp_path / "cache" / "precision.json").read_text())
        (key,) = cache
        assert cache[key] == why and why["precision"] == chosen
        numbers = why["numbers"]
        assert numbers["peak_ratio"] == pytest.approx(3.0)  # 0.3 / 0.1: probed
        speedup = numbers["probe_fp32_step_s"] / numbers["probe_bf16_step_s"]
        assert (chosen == "bf16") == (speedup >= 1.2)
        assert first["hardware"]["threads"]["threads"] == 1  # LeNet: under 1M parameters
        assert first["hardware"]["channels_last"] is True  # auto on a CPU
        assert first["throughput"]["peak_tflops"] == pytest.approx(numbers[f"{chosen}_peak_tflops"])
        weights = load_file(str(tmp_path / "p" / "model" / "weights.safetensors"))
        assert {w.dtype for w in weights.values()} == {torch.float32}  # fp32 master weights
        top_ops = (tmp_path / "p" / "profile" / "top_ops.md").read_text()
        assert "aten::convolution" in top_ops or "aten::mkldnn_convolution" in top_ops
        assert (tmp_path / "p" / "profile" / "trace.json").stat().st_size > 0
        ckpt = torch.load(tmp_path / "p" / "checkpoints" / "last.pt", weights_only=False)
        assert ckpt["precision"] == chosen

        # the cache now says the other precision: a resumed run must not follow it
        other = "fp32" if chosen == "bf16" else "bf16"
        cache[key] = {"precision": other, "reason": "edited", "numbers": {}}
        (tmp_path / "cache" / "precision.json").write_text(json.dumps(cache))
        longer = load_spec(None, [*TINY, "train.epochs=2", f"output.runs_dir={tmp_path}", "name=p"])
        resumed = train(longer, resume=True, quiet=True).report
    finally:
        torch.set_num_threads(threads)
    assert resumed["hardware"]["precision"] == chosen
    assert resumed["hardware"]["precision_choice"]["reason"].startswith("kept from the checkpoint")
    assert resumed["steps"] == 2 * first["steps"]


def test_the_thread_count_is_given_back_after_a_run(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        sets = ["train.epochs=1", "train.threads=1", "train.precision=fp32", "name=t"]
        spec = load_spec(None, [*TINY, *sets, f"output.runs_dir={tmp_path}"])
        report = train(spec, quiet=True).report
        assert report["hardware"]["threads"]["threads"] == 1  # the run had one
        assert torch.get_num_threads() == 2  # and the caller has its two again
    finally:
        torch.set_num_threads(before)
