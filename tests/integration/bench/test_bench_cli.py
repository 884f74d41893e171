"""``tensorfab bench`` end to end on CPU with ``--quick``: every field, every workload.

The suites run as a user runs them, in a subprocess (``--quick`` on a CPU uses one torch
thread, and the subprocess keeps that out of the test process).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import torch

from tensorfab.cli.main import main
from testkit import run_cli

REPO = Path(__file__).resolve().parents[3]

SIDE_FIELDS = {
    "precision",
    "samples_per_s",
    "tokens_per_s",
    "step_time_ms",
    "peak_memory_bytes",
    "peak_memory_kind",
    "mfu",
    "peak_tflops",
    "datasheet_peak_tflops",
    "energy_j_per_sample",
    "settings",
}
CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answers")


def _bench(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "result.json"
    # 240 s: the quick train suites took just over 120 s on the 2-core machine at load 29
    proc = run_cli("bench", *args, "--out", str(out), cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(out.read_text())
    if "--json" in args:
        assert json.loads(proc.stdout) == saved  # stdout holds only the data
    return saved


def _check_environment(result: dict, kind: str) -> None:
    env = result["environment"]
    assert env["torch_threads"] == 1  # the quick default on a CPU
    assert env["device"] == "cpu" and env["device_name"]
    assert env["torch_version"] == torch.__version__
    assert env["date"] == dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert env["command"].startswith(f"tensorfab bench {kind}")
    assert result["kind"] == kind


def _check_side(side: dict, tokens: bool) -> None:
    assert side.keys() >= SIDE_FIELDS
    assert side["samples_per_s"] > 0
    t = side["step_time_ms"]
    assert 0 < t["p10"] <= t["median"] <= t["p90"] and t["iqr"] >= 0
    assert side["peak_memory_bytes"] > 0 and side["peak_memory_kind"].startswith("rss_peak")
    assert side["peak_tflops"] > 0 and side["mfu"] > 0  # the CPU peak is measured, cached
    assert side["energy_j_per_sample"] is None  # no NVML on a CPU
    assert side["model_tflops"] > 0
    if tokens:
        assert 0 < side["tokens_per_s"] <= side["padded_tokens_per_s"]
    else:
        assert side["tokens_per_s"] is None


@CPU_ONLY
def test_bench_train_quick_json(tmp_path: Path, shared_data: Path) -> None:
    result = _bench(
        tmp_path, "train", "--quick", "--device", "cpu", "--json", "--data-dir", str(shared_data)
    )
    _check_environment(result, "train")
    rows = result["results"]
    assert [(r["workload"], r["batch_size"]) for r in rows] == [
        ("lenet-mnist", 64),
        ("lenet-mnist", 512),
        ("bert-base-ner", 4),
        ("minilm-ner", 4),
    ]
    for row in rows:
        tokens = row["workload"] != "lenet-mnist"
        _check_side(row["baseline"], tokens)
        _check_side(row["tensorfab"], tokens)
        base, ours = row["baseline"], row["tensorfab"]
        assert row["ratio"] == pytest.approx(ours["samples_per_s"] / base["samples_per_s"])
        if row["workload"] == "minilm-ner":  # the Hugging Face Trainer itself, same sentences
            trainer = row["hf_trainer"]
            _check_side(trainer, tokens=True)
            assert trainer["settings"]["loop"].startswith("transformers.Trainer")
            assert trainer["step_time_ms"]["n"] == 3 and trainer["samples"] == base["samples"]
            assert row["tensorfab_vs_hf_trainer"] == pytest.approx(
                ours["tokens_per_s"] / trainer["tokens_per_s"]
            )
        else:
            assert "hf_trainer" not in row and "tensorfab_vs_hf_trainer" not in row
        assert base["settings"]["precision"] == "fp32"
        assert ours["settings"]["spec"]["train"]["fused"] == "on"
        assert base["step_time_ms"]["n"] == ours["step_time_ms"]["n"] == 3
        # both sides train the same model: the same FLOPs per sample (images) or per token
        per_unit = "train_flops_per_sample"
        if not tokens:
            assert base[per_unit] == ours[per_unit] == 3 * 4_586_000
    assert rows[0]["data"]["source"] == "real"
    assert {"json", "markdown", "chart"} <= result["files"].keys()
    assert (tmp_path / "result.png").stat().st_size > 0
    table = (tmp_path / "result.md").read_text()
    assert "| bert-base-ner | 4 | tensorfab |" in table and "n/a" in table
    assert "| minilm-ner | 4 | hf_trainer |" in table


@CPU_ONLY
def test_bench_train_ablate_switches_each_setting_off_alone(
    tmp_path: Path, shared_data: Path
) -> None:
    result = _bench(
        tmp_path, "train", "--quick", "--device", "cpu", "--json", "--ablate",
        "--workloads", "lenet-mnist,minilm-ner", "--data-dir", str(shared_data),
    )  # fmt: skip
    first_row = {}
    for row in result["results"]:
        full = row["tensorfab"]["samples_per_s"]
        for a in row["ablations"]:
            assert a["speedup_from_setting"] == pytest.approx(full / a["samples_per_s"])
        # auto precision is measured per batch size, so bf16 is ablated where that row chose it
        bf16 = {"bf16 autocast"} if row["tensorfab"]["precision"] == "bf16" else set()
        if row["workload"] == "lenet-mnist":
            expected = {"fused optimizer", "device-resident data", "channels-last layout"} | bf16
            assert {a["switched_off"] for a in row["ablations"]} == expected
        first_row.setdefault(row["workload"], row["ablations"])
    lenet = {a["switched_off"]: a for a in first_row["lenet-mnist"]}
    assert lenet["channels-last layout"]["spec"]["train"]["channels_last"] == "off"
    assert lenet["device-resident data"]["spec"]["data"]["device_resident"] == "off"
    assert lenet["fused optimizer"]["spec"]["train"]["fused"] == "off"
    assert lenet["fused optimizer"]["spec"]["data"]["device_resident"] == "auto"
    ner = {a["switched_off"]: a for a in first_row["minilm-ner"]}
    assert ner["device-resident data"]["spec"]["data"]["device_resident"] == "off"
    assert ner["length bucketing"]["spec"]["data"]["length_bucketing"] is False
    assert ner["bucketing, packed rows instead"]["spec"]["data"]["packing"] is True
    assert "| lenet-mnist | 64 | device-resident data |" in (tmp_path / "result.md").read_text()


@CPU_ONLY
def test_bench_infer_quick(tmp_path: Path, shared_data: Path) -> None:
    result = _bench(
        tmp_path,
        "infer",
        "--quick",
        "--workloads",
        "lenet-mnist,minilm-ner",
        "--json",
        "--data-dir",
        str(shared_data),
    )
    _check_environment(result, "infer")
    assert [r["workload"] for r in result["results"]] == ["lenet-mnist", "minilm-ner"]
    for row in result["results"]:
        base, ours = row["baseline"], row["tensorfab"]
        for side in (base, ours):
            latency = side["batch1_latency_ms"]
            assert latency["n"] == 5 and 0 < latency["p50"] <= latency["p99"]
            assert side["throughput_per_s"] > 0
        # the same held-out examples on both sides
        assert base["throughput_samples"] == ours["throughput_samples"] > 0
        assert row["ratio"] == pytest.approx(ours["throughput_per_s"] / base["throughput_per_s"])


@CPU_ONLY
def test_bench_micro_quick_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORFAB_CACHE_DIR", str(tmp_path / "cache"))
    result = _bench(tmp_path, "micro", "--quick", "--device", "cpu", "--json")
    _check_environment(result, "micro")
    matmul = result["matmul"]
    assert matmul["fp32"]["tflops"] > 0 and matmul["bf16"]["tflops"] > 0
    # a quick run reads the peak cache (empty here) and never fills it with a small matrix
    assert matmul["fp32"]["cached_peak_tflops"] is None
    assert not (tmp_path / "cache" / "peaks.json").exists()
    for precision in ("tf32", "fp16", "fp8"):
        assert matmul[precision] == {"tflops": None, "reason": "not supported on cpu"}
    bandwidth = result["bandwidth_gb_s"]
    assert bandwidth["host_memcpy"] > 0
    assert bandwidth["host_to_device_pinned"] is None and bandwidth["device_to_device"] is None


@CPU_ONLY
def test_bench_compare_quick_without_gpu(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "compare.json"
    proc = run_cli(
        "bench",
        "compare",
        "--quick",
        "--data-dir",
        str(shared_data),
        "--out",
        str(out),
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "No CUDA GPU on this machine" in proc.stdout
    result = json.loads(out.read_text())
    _check_environment(result, "compare")
    assert result["gpu"] == "absent"
    (row,) = result["results"]
    assert row["workload"] == "lenet-mnist" and row["speedup"] is None
    (cpu,) = row["devices"]
    assert cpu["device"] == "cpu" and cpu["samples"] == 512 and cpu["speedup"] == 1.0
    assert cpu["samples_per_s"] == pytest.approx(512 / cpu["epoch_s"])


def test_bench_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "train", "--help"])
    assert exit_info.value.code == 0
    assert "example:\n  tensorfab bench train" in capsys.readouterr().out


def test_bench_unknown_workload_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "train", "--workloads", "lenet-mnist,resnet", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        "error: --workloads: unknown resnet; choose from lenet-mnist, bert-base-ner, minilm-ner"
    )


@CPU_ONLY
def test_bench_cuda_without_gpu_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "micro", "--device", "cuda"]) == 2
    assert capsys.readouterr().err.startswith("error: --device cuda: no CUDA GPU is available")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["micro", "--device", "cpu", "--threads", "0"], "error: --threads must be >= 1, not 0"),
        (
            ["train", "--device", "cpu", "--steps", "0"],
            "error: --steps must be >= 1 and --warmup >= 0, not 0 and 10",
        ),
    ],
)
def test_bench_bad_numbers_are_one_clear_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *argv]) == 2
    assert capsys.readouterr().err.strip() == message


def test_a_missing_data_dir_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    argv = ["bench", "train", "--quick", "--data-dir", str(tmp_path / "nope"), "--out", str(out)]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"error: --data-dir {tmp_path / 'nope'}: no such folder\n"
    assert not out.exists()


@CPU_ONLY
def test_quick_runs_never_replace_saved_results(tmp_path: Path) -> None:
    """Without --out: a -quick name, then -2; synthetic MNIST only for the default data dir,
    and said in one note (../shared/data does not exist beside tmp_path)."""
    args = ("bench", "train", "--quick", "--device", "cpu", "--workloads", "lenet-mnist")
    date = dt.datetime.now(dt.timezone.utc).date().isoformat()
    results = tmp_path / "benchmarks" / "results"
    committed = results / f"cpu-{date}-bench-train.json"
    results.mkdir(parents=True)
    committed.write_text("{}")
    first = run_cli(*args, cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stderr
    note = (
        "note: no MNIST under ../shared/data (the default --data-dir); lenet-mnist runs on "
        "synthetic images of MNIST's shape"
    )
    assert first.stderr.splitlines()[0] == note
    quick = f"benchmarks/results/cpu-{date}-bench-train-quick"
    assert f"json: {quick}.json" in first.stderr.splitlines()
    second = run_cli(*args, "--json", cwd=tmp_path, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stderr.splitlines() == [note, f"json: {quick}-2.json"]
    assert committed.read_text() == "{}"
    saved = json.loads((tmp_path / f"{quick}-2.json").read_text())
    assert saved == json.loads(second.stdout)
    assert saved["results"][0]["data"]["source"].startswith("synthetic")
