"""The model on hand-made profiles: rooflines, host overlap, bounds, memory, energy, refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tensorfab.advise.advise import advise, rank, run_precision
from tensorfab.advise.model import (
    Device,
    cpu_device,
    curve_value,
    energy_j,
    gpu_device,
    host_dispatch_s,
    load_constants,
    op_class,
    op_seconds,
    op_share,
    step_time,
)
from tensorfab.advise.profile import OpLine, Profile, epoch_samples
from tensorfab.advise.report import markdown
from tensorfab.hardware import gpu_by_id


def _profile(
    ops: list[OpLine],
    host_ops: int = 0,
    input_s: float = 0.0,
    batch: int = 1,
    curve: tuple = ((100.0, 10.0),),
) -> Profile:
    return Profile(
        "toy",
        "train",
        "fp32",
        batch,
        tuple(ops),
        curve,
        (0.0, 0.0),
        host_ops,
        0,
        input_s,
        1000,
        2,
        None,
        1,
    )


def _device(asynchronous: bool = True) -> Device:
    return Device(
        "toy",
        "Toy",
        {"fp32": 10.0, "bf16": 100.0},
        100.0,
        1e-6,
        100.0,
        3.6,
        asynchronous,
        "test",
        kernel_latency_us=1.0,
        launch_us=2.0,
    )


def test_roofline_takes_the_longer_of_flops_and_bytes_plus_kernel_latency() -> None:
    matmul = OpLine("mm", "float32", 1, (0.0, 1e12), (0.0, 1e9))  # 0.1 s of FLOPs, 0.01 s bytes
    copy = OpLine("copy_", "float32", 1, (0.0, 0.0), (2e9, 0.0))  # 0.02 s of bytes
    t = step_time(_profile([matmul, copy]), _device(), "fp32", host_op_us=0.0)
    assert t.compute_s == pytest.approx(0.1)
    assert t.memory_s == pytest.approx(0.02)
    assert t.latency_s == pytest.approx(2e-6)
    assert t.step_s == pytest.approx(0.120002)
    assert t.bound == "compute"


def test_bf16_ops_run_at_the_bf16_peak_and_scale_with_batch() -> None:
    op = OpLine("mm", "bfloat16", 1, (0.0, 1e12), (0.0, 0.0))
    t = step_time(_profile([op], batch=4), _device(), "bf16", host_op_us=0.0)
    assert t.compute_s == pytest.approx(4e12 / 100e12)


def test_gpu_overlaps_host_cpu_adds_it() -> None:
    op = OpLine("add", "float32", 1, (0.0, 0.0), (1e6, 0.0))  # 10 us of bytes
    profile = _profile([op], host_ops=100, input_s=0.001)
    gpu = step_time(profile, _device(True), "fp32", host_op_us=10.0)
    # host: 100 ops x 10 us + 1 kernel x 2 us launch + 1 ms input = 2.002 ms > device 11 us
    assert gpu.step_s == pytest.approx(0.002002)
    assert gpu.bound == "launch overhead"
    cpu = step_time(profile, _device(False), "fp32", host_op_us=10.0)
    assert cpu.step_s == pytest.approx(0.002002 + 11e-6)
    slow_input = step_time(_profile([op], host_ops=1, input_s=0.5), _device(), "fp32", 10.0)
    assert slow_input.bound == "host input"


def test_largest_batch_is_the_lowest_cap_over_the_memory_curve() -> None:
    # two points of the step: 1000 + 100 B and 5000 + 10 B per sample
    profile = _profile([], curve=((1000.0, 100.0), (5000.0, 10.0)))
    assert profile.memory_at(10) == 5100.0
    assert profile.memory_at(100) == 11000.0
    assert profile.largest_batch(6000.0) == 50  # (6000-1000)/100; (6000-5000)/10 = 100
    assert profile.largest_batch(4000.0) == 0  # the fixed 5000 B alone do not fit


def test_a_step_whose_memory_does_not_grow_with_the_batch_has_no_largest_batch() -> None:
    """A 1-row training split: both recordings hold the same bytes, every slope is 0."""
    op = OpLine("mm", "float32", 1, (1e9, 0.0), (0.0, 0.0))
    flat = _profile([op], batch=8, curve=((1000.0, 0.0), (5000.0, 0.0)))
    assert flat.largest_batch(6000.0) is None  # was 2**31, shown as 2147483648
    assert flat.largest_batch(4000.0) == 0
    advice = advise(lambda _p: flat, "fp32", [gpu_by_id("l4")])
    assert advice.gpus[0]["largest_batch"] is None and advice.gpus[0]["fits"] is True
    row = next(line for line in markdown(advice).splitlines() if line.startswith("| l4 "))
    assert "| no limit |" in row


def test_a_measured_runs_scales_multiply_the_host_or_the_device_part() -> None:
    op = OpLine("mm", "float32", 1, (1e12, 0.0), (0.0, 0.0))  # 0.1 s of FLOPs + 1 us latency
    profile = replace(_profile([op], host_ops=10, input_s=0.001), host_s=0.002)
    plain = step_time(profile, _device(), "fp32")
    scaled = step_time(profile, replace(_device(), host_scale=3.0, device_scale=2.0), "fp32")
    assert scaled.device_s == pytest.approx(2 * plain.device_s)  # rooflines and latencies
    assert scaled.dispatch_s == pytest.approx(3 * (0.002 + 2e-6))  # host step + 1 launch
    assert scaled.input_s == pytest.approx(0.003)
    assert scaled.step_s == pytest.approx(scaled.device_s)  # still the longer part
    h100 = gpu_device(gpu_by_id("h100-sxm"), {"host_scale": 1.5})
    assert (h100.host_scale, h100.device_scale) == (1.5, 1.0)


def test_energy_is_idle_plus_busy_share_of_tdp() -> None:
    op = OpLine("mm", "float32", 1, (1e12, 0.0), (0.0, 0.0))  # 0.1 s compute
    t = step_time(_profile([op], host_ops=0), _device(), "fp32", host_op_us=0.0)
    busy = 0.1 / t.step_s
    assert energy_j(t, 10.0, _device()) == pytest.approx(100.0 * (0.3 + 0.7 * busy) * 10.0)


def test_auto_precision_and_refusals_follow_the_catalogue() -> None:
    assert run_precision("auto", gpu_by_id("h100-sxm")) == ("bf16", None)
    assert run_precision("auto", gpu_by_id("t4")) == ("fp16", None)
    _, refusal = run_precision("bf16", gpu_by_id("v100"))
    assert refusal == "v100 has no bf16 (it has fp32, fp16)"


def test_advise_refuses_what_does_not_fit_and_ranks_the_rest() -> None:
    op = OpLine("mm", "bfloat16", 1, (0.0, 1e9), (0.0, 1e6))
    big = _profile([op], batch=64, curve=((1e9, 0.5e9),))  # 33 GB at batch 64
    result = advise(lambda _p: big, "auto", [gpu_by_id(g) for g in ("h100-sxm", "l4", "t4")])
    rows = {r["id"]: r for r in result.gpus}
    assert rows["h100-sxm"]["fits"] and rows["h100-sxm"]["refused"] is None
    assert rows["l4"]["refused"].startswith("does not fit: needs 33.5 GB of 24 GB at batch 64")
    assert rows["l4"]["largest_batch"] == 42  # (0.95 * 24 GB - 0.5 GB context - 1 GB) / 0.5 GB
    assert result.ranking["time"] == ["h100-sxm"]
    assert any("GEMM peak" in a for a in result.assumptions)


def test_measured_peaks_replace_the_datasheet_estimate() -> None:
    h100 = gpu_by_id("h100-sxm")
    assert gpu_device(h100).tflops["bf16"] == pytest.approx(989.4 * 0.7)
    measured = gpu_device(h100, {"tflops": {"bf16": 700.0}, "price_usd_h": 1.0})
    assert measured.tflops["bf16"] == 700.0 and measured.price_usd_h == 1.0
    assert measured.peak_source == "measured (--calibrate)"


def test_rank_orders_by_each_key() -> None:
    rows = [
        {"id": "a", "refused": None, "run_s": 1.0, "cost_usd": 3.0, "energy_kj": 2.0},
        {"id": "b", "refused": None, "run_s": 2.0, "cost_usd": 1.0, "energy_kj": 1.0},
        {"id": "c", "refused": "no bf16"},
        {"id": "d", "refused": None, "run_s": 1.0, "cost_usd": 2.0, "energy_kj": 3.0},
    ]
    assert rank(rows) == {
        "time": ["d", "a", "b"],  # a tie in time goes to the cheaper
        "cost": ["b", "d", "a"],
        "energy": ["b", "a", "d"],
    }


def test_host_time_is_calibrated_else_measured_else_assumed() -> None:
    measured = replace(_profile([], host_ops=100), host_s=0.004)
    assumed = _profile([], host_ops=100)
    assert host_dispatch_s(measured, 20.0) == pytest.approx(100 * 20e-6)  # --calibrate
    assert host_dispatch_s(measured) == pytest.approx(0.004)  # the meta-device step
    assert host_dispatch_s(assumed) == pytest.approx(100 * load_constants().host_op_us * 1e-6)


def test_a_cpu_op_class_runs_at_its_measured_share_of_the_roofline() -> None:
    conv = OpLine("convolution_backward", "float32", 1, (1e9, 0.0), (0.0, 0.0))
    pool = OpLine("max_pool2d_with_indices", "float32", 1, (0.0, 0.0), (1e8, 0.0))
    shares = {"convolution": 0.9, "convolution_backward": 0.5, "pooling": 0.25}
    cpu = cpu_device("cpu", {"fp32": 0.1}, 10.0, {**shares, "pooling_backward": 0.8})
    t = step_time(replace(_profile([conv, pool]), host_s=0.0), cpu, "fp32")
    assert t.compute_s == pytest.approx(1e9 / (0.1e12 * 0.5))  # 20 ms, not 10 (nor 11)
    assert t.memory_s == pytest.approx(1e8 / (10e9 * 0.25))  # 40 ms, not 10 (nor 12.5)


def test_a_convolution_share_is_read_at_its_depth_between_measured_points() -> None:
    shares = {"convolution": [[81, 0.5], [9, 0.1]], "pooling": 0.25}  # any order
    cpu = cpu_device("cpu", {"fp32": 0.1}, 10.0, shares)
    assert op_share(cpu, "convolution", 27) == pytest.approx(0.3)  # half way in log depth
    assert op_share(cpu, "convolution", 3) == pytest.approx(0.1)  # flat below the points
    assert op_share(cpu, "convolution", 900) == pytest.approx(0.5)  # and above them
    assert op_share(cpu, "max_pool2d_with_indices", 0) == 0.25  # a class of one share
    assert op_share(cpu, "mm", 0) == 1.0  # no class: the roofline
    conv = OpLine("convolution", "float32", 1, (1e9, 0.0), (0.0, 0.0), depth=27)
    t = step_time(replace(_profile([conv]), host_s=0.0), cpu, "fp32")
    assert t.compute_s == pytest.approx(1e9 / (0.1e12 * 0.3))


def test_a_curve_over_several_axes_is_read_log_linearly_on_each() -> None:
    # [[m, [[k, value]]]]: m 1 or 100, k 10 or 1000 (rows in any order)
    curve = [[100, [[10, 2.0], [1000, 4.0]]], [1, [[1000, 1.0], [10, 0.0]]]]
    assert curve_value(curve, (1.0, 100.0)) == pytest.approx(0.5)  # half way in log k
    assert curve_value(curve, (10.0, 100.0)) == pytest.approx(1.75)  # and in log m: 0.5..3
    assert curve_value(curve, (1e6, 1e6)) == pytest.approx(4.0)  # flat beyond both
    assert curve_value(0.25, (3.0, 7.0)) == 0.25


def test_a_matrix_product_runs_at_the_grid_figure_of_its_shape() -> None:
    grid = [[1, [[64, [[64, 0.01]]]]], [100, [[64, [[64, 0.1]]]]]]  # M 1 or 100: TFLOP/s
    cpu = cpu_device("cpu", {"fp32": 1.0}, 10.0, gemm_tflops={"fp32": grid})
    mm = OpLine("mm", "float32", 1, (2e9, 0.0), (0.0, 0.0), gemm=((10.0, 0.0), (64, 0), (64, 0)))
    assert op_seconds(mm, 1, cpu, "fp32")[0] == pytest.approx(2e9 / 0.055e12)  # M 10: mid-way
    conv = replace(mm, name="convolution", gemm=())  # not a product: the peak
    assert op_seconds(conv, 1, cpu, "fp32")[0] == pytest.approx(2e9 / 1e12)
    bf16 = replace(mm, dtype="bfloat16")  # no bf16 peak, no bf16 grid: not priced
    assert op_seconds(bf16, 1, cpu, "fp32")[0] == 0.0


def test_a_convolution_share_follows_its_layout_depth_image_size_and_bytes() -> None:
    # depth -> output positions per image -> bytes moved -> share
    curves = {
        "nchw-k3": [[9, [[784, [[1e6, 0.4], [1e8, 0.1]]], [64, 0.2]]], [90, 0.8]],
        "cl-k5": [[25, 0.6]],
        "nchw-k5-odd": [[25, 0.05]],
    }
    cpu = cpu_device("cpu", {"fp32": 0.1}, 10.0, {"convolution": curves})
    assert op_share(cpu, "convolution", 9, "nchw-k3", (784, 1e7)) == pytest.approx(0.25)
    assert op_share(cpu, "convolution", 9, "nchw-k5", (784, 1e7)) == pytest.approx(0.25)
    assert op_share(cpu, "convolution", 9, "nchw-k3", (224, 1e8)) == pytest.approx(0.15)
    assert op_share(cpu, "convolution", 900, "cl-k3", (1, 1e9)) == pytest.approx(0.6)
    # not measured: the same format, then the same channel alignment, then the kernel
    assert op_share(cpu, "convolution", 9, "nchw-k3-odd", (1, 1)) == pytest.approx(0.05)
    share = op_share(cpu, "convolution", 30, "nchw-k3", (784, 1e8))  # 0.52 of the way in log
    assert share == pytest.approx(0.1 + 0.7 * 0.523, abs=1e-3)


def test_a_cpu_op_moves_its_bytes_at_the_bandwidth_of_their_size_and_its_class() -> None:
    curve = [[1e6, 80.0], [1e8, 20.0]]  # GB/s: in the cache, then memory
    shares = {"random": 0.05, "foreach": 0.5}
    cpu = cpu_device("cpu", {"fp32": 0.1}, 25.0, shares, bandwidth_curve=curve)
    add = OpLine("add", "float32", 1, (0.0, 0.0), (1e7, 0.0))  # half way in log: 50 GB/s
    assert op_seconds(add, 1, cpu, "fp32")[1] == pytest.approx(1e7 / 50e9)
    assert op_seconds(replace(add, bytes=(1e9, 0.0)), 1, cpu, "fp32")[1] == pytest.approx(0.05)
    rng, adam = replace(add, name="bernoulli_"), replace(add, name="_foreach_addcdiv_")
    assert op_seconds(adam, 1, cpu, "fp32")[1] == pytest.approx(1e7 / (50e9 * 0.5))
    # random numbers are limited by their own work: a fixed rate, the one figure (25 GB/s)
    assert op_seconds(rng, 1, cpu, "fp32")[1] == pytest.approx(1e7 / (25e9 * 0.05))
    assert op_class("_fused_adamw_") == "fused_optimizer" and op_class("add") == ""
    flat = cpu_device("cpu", {"fp32": 0.1}, 25.0)  # no curve: the one figure
    assert op_seconds(add, 1, flat, "fp32")[1] == pytest.approx(1e7 / 25e9)


def test_an_epoch_scales_the_prepared_rows_to_the_whole_split() -> None:
    split = {"train_size": 384, "train_full_size": 14041}
    assert epoch_samples(384, split, None) == 14041
    assert epoch_samples(400, split, None) == round(400 * 14041 / 384)  # rows made 400
    assert epoch_samples(384, split, 1000) == 1000  # the spec's own limit_train
    assert epoch_samples(384, {}, None) == 384
