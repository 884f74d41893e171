"""The recorder: FLOPs as FlopCounterMode counts them, kernels, and the memory it sees held."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from tensorfab.advise.profile import fit_lines, memory_lines, record
from tensorfab.advise.record import OpRecorder, OpTimer, _tensors
from tensorfab.advise.workloads import fp32_step, tiny_mlp_step
from tensorfab.models import create_model


def _lenet_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    torch.nn.functional.cross_entropy(model(x), y).backward()


def test_flops_equal_flop_counter_mode_on_a_training_step() -> None:
    torch.manual_seed(0)
    model = create_model("lenet")
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    counter = FlopCounterMode(display=False)
    with counter:
        _lenet_step(model, x, y)
    recorder = OpRecorder()
    with recorder:
        _lenet_step(model, x, y)
    assert sum(op.flops for op in recorder.ops) == counter.get_total_flops() > 0


def test_views_launch_nothing_and_foreach_launches_per_chunk() -> None:
    a = torch.ones(8, 8)
    tensors = [torch.ones(2) for _ in range(50)]
    recorder = OpRecorder()
    with recorder:
        a.view(64)
        a.t()
        a.add(1)
        torch._foreach_add_(tensors, 1.0)
    by_name = {op.name: op for op in recorder.ops}
    assert by_name["view"].kernels == 0 and by_name["view"].bytes == 0
    assert by_name["t"].kernels == 0
    assert by_name["add"].kernels == 1
    assert by_name["add"].bytes == 2 * 64 * 4  # read 64 floats, write 64
    assert by_name["_foreach_add_"].kernels == 3  # 50 tensors, 24 per launch


def test_a_lookup_reads_the_rows_it_picks_not_the_whole_table() -> None:
    table = torch.zeros(1000, 16)  # 64,000 bytes, of which 3 rows are read
    ids = torch.tensor([1, 5, 5])  # 24 bytes (int64)
    recorder = OpRecorder()
    with recorder:
        torch.nn.functional.embedding(ids, table)
        table.index_select(0, ids)
    emb, sel = recorder.ops
    # the ids, 3 rows of 16 floats read (192 bytes) and the same written
    assert emb.name == "embedding" and emb.bytes == 24 + 2 * 3 * 16 * 4
    assert sel.name == "index_select" and sel.bytes == 24 + 2 * 3 * 16 * 4


def test_a_convolution_records_its_reduction_depth() -> None:
    conv = torch.nn.Conv2d(3, 8, 5)  # each output sums 3 channels x 25 kernel elements
    x = torch.rand(2, 3, 12, 12, requires_grad=True)
    recorder = OpRecorder()
    with recorder:
        conv(x).sum().backward()
    depths = {op.name: op.depth for op in recorder.ops}
    assert depths["convolution"] == depths["convolution_backward"] == 75
    assert depths["sum"] == 0


def test_matrix_products_record_m_n_k_and_convolutions_their_layout() -> None:
    linear = torch.nn.Linear(6, 5)  # addmm(bias, x[3, 6], W^T[6, 5]): M 3, N 5, K 6
    conv = torch.nn.Conv2d(16, 32, 5).to(memory_format=torch.channels_last)
    x = torch.rand(1, 16, 9, 9).contiguous(memory_format=torch.channels_last)
    q, k = torch.rand(7, 3, 8), torch.rand(7, 8, 2)
    recorder = OpRecorder()
    with recorder:
        linear(torch.rand(3, 6))
        torch.bmm(q, k)
        conv(x)
        torch.nn.functional.conv2d(torch.rand(1, 2, 9, 9), torch.rand(4, 2, 3, 3))
    ops = {op.name: op for op in recorder.ops}
    assert ops["addmm"].gemm == (3, 5, 6)
    assert ops["bmm"].gemm == ()  # batched: at the peak, not in the grid of single products
    convs = [op.layout for op in recorder.ops if op.name == "convolution"]
    assert convs == ["cl-k5", "nchw-k3-odd"]  # 2 -> 4 channels: no multiple of 16
    assert [op.pixels for op in recorder.ops if op.name == "convolution"] == [25, 49]
    assert ops["addmm"].layout == "" and ops["convolution"].gemm == ()


def test_a_products_shape_is_a_line_in_the_batch() -> None:
    linear = torch.nn.Linear(6, 5)
    recs = []
    for batch in (2, 3):  # [batch, 4 tokens, 6] -> M = 4 x batch rows
        recs.append(record(lambda b=batch: linear(torch.rand(b, 4, 6)), lambda: []))
    line = next(op for op in fit_lines(*recs, (2, 3)) if op.gemm)
    assert line.gemm_at(16) == pytest.approx((64.0, 5.0, 6.0))


def test_memory_held_rises_and_falls_with_storages() -> None:
    held = torch.zeros(1000)  # 4000 bytes, tracked from the start

    def step() -> None:
        a = held + 1  # +4000
        b = torch.cat([a, a])  # +8000: 16000 held
        del a  # -4000
        b.sum()  # +4 (a 0-dim result)

    rec = record(step, lambda: [held])
    assert rec.live_after == [8000, 16000, 12004]


def test_lines_through_two_batch_sizes() -> None:
    def make(n: int):
        w = torch.ones(10, 10)
        return record(lambda: torch.ones(n, 10) @ w, lambda: [w])

    a, b = make(2), make(3)
    lines = {line.name: line for line in fit_lines(a, b, (2, 3))}
    assert lines["mm"].flops == (0.0, 200.0)  # 2 * 10 * 10 per row
    # bytes: w (400) and the ones (40 per row) read, the product (40 per row) written
    assert lines["mm"].at(64) == (12800.0, 400.0 + 64 * 80.0)
    curve = memory_lines(a, b, (2, 3))
    assert max(f + p * 64 for f, p in curve) == 400 + 64 * 40 * 2  # w, the ones, the product


def test_tensors_are_found_in_pytree_order() -> None:
    a, b = torch.ones(2), torch.zeros(3)
    trees = [
        ((a, [b, 1, (a,)], {"x": b, "y": [a]}), {"out": b}),
        (1, 2.0, None, "s"),
        torch.max(torch.ones(2, 2), 0),  # a structseq: a tuple
    ]
    for tree in trees:
        expected = [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]
        found = _tensors(tree)
        assert len(found) == len(expected) and all(
            x is y for x, y in zip(found, expected, strict=True)
        )


def test_the_timer_times_the_ops_the_recorder_records_in_their_order() -> None:
    step = fp32_step("lenet-train", 4, 0)
    step()
    recorder, timer = OpRecorder(), OpTimer()
    with recorder:
        step()
    with timer:
        step()
    assert len(timer.seconds) == len(recorder.ops) > 10  # one time per recorded op
    assert all(s >= 0.0 for s in timer.seconds) and sum(timer.seconds) > 0.0


def test_the_host_reference_step_is_a_small_training_step() -> None:
    step = tiny_mlp_step()
    recorder = OpRecorder()
    with recorder:
        step()
    names = [op.name for op in recorder.ops]
    assert any("addmm" in n for n in names) and any("mse_loss" in n for n in names)
    assert sum(op.flops for op in recorder.ops) < 1e5  # all host work, no real compute


def test_the_batches_are_timed_on_one_thread_and_the_least_time_kept(monkeypatch) -> None:
    """The host-input time moved 0.4-5.5 ms between runs when the batches were made on two
    threads of a loaded 2-core machine: they are made under one, like the rest."""
    from tensorfab.advise import profile as profile_module

    ticks = iter([0.0, 0.004, 1.0, 1.001, 2.0, 2.003, 3.0])  # 4 ms, 1 ms, 3 ms; the end
    clock = SimpleNamespace(perf_counter=lambda: next(ticks))
    monkeypatch.setattr(profile_module, "time", clock)
    threads = []

    class Batches:
        def epoch(self, _epoch: int):
            for rows in (3, 1, 2):
                threads.append(torch.get_num_threads())
                yield (torch.zeros(rows, 4),)

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # what a 2-core machine runs by default
    try:
        batch, seconds = profile_module._representative(Batches())
        assert threads == [1, 1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seconds == pytest.approx(0.001)  # the least, not the median (0.003)
    assert batch[0].shape[0] == 2  # the median-sized batch
